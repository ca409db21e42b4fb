"""What a user looks at after training: the report of a run (curves, conv1's kernels, the confusion matrix), variant
studies and the paper's Figure 1, and the plots and log readers behind them. Built on the trainer and ``evaluate``;
nothing below imports from here."""
