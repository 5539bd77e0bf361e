"""``python -m cellcompare COMMAND ...``: the same as the ``cellcompare`` console script."""

import sys

from cellcompare.cli import main

sys.exit(main())
