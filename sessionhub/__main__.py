"""``python -m sessionhub``: the same as the ``sessionhub`` command."""

import sys

from sessionhub.cli import main

sys.exit(main())
