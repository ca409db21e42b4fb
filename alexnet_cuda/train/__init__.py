"""The trainer: ``python -m alexnet_cuda.train`` (``--help`` for the flags).

One concern per module: ``config`` (the settings, their defaults per dataset and the flags), ``inputs`` (input
statistics and loaders; the datasets themselves come from ``alexnet_cuda.data.sources``), ``state`` (checkpoints
and resume), ``loop`` (steps and epochs), ``log`` (what is printed and written), ``schedule`` (the learning rate),
``distributed`` (data-parallel ranks over MPI/NCCL) and ``run`` (:func:`run.train`, a config in and a summary out,
and the command line).
"""
