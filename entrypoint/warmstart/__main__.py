"""``python -m warmstart`` is the ``warmstart`` command.

Stop signals raise ``Interrupted`` from the first line on, so a Ctrl-C while the command's
modules import (torch's and the ALE's take a while) is one line too, not a traceback.
"""

import sys

from . import signals

signals.install()
try:
    from .cli import main
except signals.Interrupted as stop:
    sys.exit(signals.say_stopped(stop))

sys.exit(main())
