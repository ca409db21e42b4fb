"""Variant study: ``python -m alexnet_cuda.study`` (``--help``)."""

import sys

from .analysis.study import main

if __name__ == "__main__":
    sys.exit(main())
