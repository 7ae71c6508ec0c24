"""``python -m swa_landscape``: the command line (e.g. under ``torchrun``)."""

import sys

from .cli import main

sys.exit(main())
