"""``python -m cellcompare COMMAND ...``: the same as the ``cellcompare`` console script."""

import sys

from cellcompare.cli import main

if __name__ == "__main__":  # importing the module (pytest given this file, pydoc) runs nothing
    sys.exit(main())
