"""``python -m hulumed`` = the ``hulumed`` command."""

import sys

from .cli import main

sys.exit(main())
