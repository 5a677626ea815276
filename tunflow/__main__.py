"""``python -m tunflow``: the ``tunflow`` command."""

import sys

from .cli import main

sys.exit(main())
