"""The paper's Figure 1, ReLU against tanh: ``python -m alexnet_cuda.figure1`` (``--help``)."""

import sys

from .analysis.figure1 import main

if __name__ == "__main__":
    sys.exit(main())
