"""``python -m alexnet_cuda.train``: see :mod:`alexnet_cuda.train.run`."""

import sys

from .run import main

sys.exit(main())
