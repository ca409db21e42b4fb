"""Run report: ``python -m alexnet_cuda.report RUN_DIR`` (``--help``)."""

import sys

from .analysis.report import main

if __name__ == "__main__":
    sys.exit(main())
