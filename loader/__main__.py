"""``python -m loader`` is the same as the ``portable-loader`` command."""

import sys

from loader.cli import main

sys.exit(main())
