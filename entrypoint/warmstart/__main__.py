"""``python -m warmstart`` is the ``warmstart`` command."""

import sys

from .cli import main

sys.exit(main())
