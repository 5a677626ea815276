"""``python -m tunflow.cli``."""

import sys

from . import main

sys.exit(main())
