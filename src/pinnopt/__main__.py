"""``python -m pinnopt …`` (and ``torchrun … -m pinnopt solve …``): the command line."""

import sys

from pinnopt.cli import main

sys.exit(main())
