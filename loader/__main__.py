"""``python -m loader`` is the same as the ``portable-loader`` command."""

import sys

from loader.app.cli import main

sys.exit(main())
