"""``python -m app serve`` is ``chorus serve``."""

import sys

from app.cli import main

sys.exit(main())
