"""Compare CellProfiler features + SVM/XGBoost with ResNet18 on identical folds.

``python compare.py`` runs the embedded demo (``configs/demo.yaml``: a synthetic Cell Painting
dataset written to ``demo_data/`` when absent); ``python compare.py --config FILE`` runs yours.
The same as ``cellcompare compare``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cellcompare.cli import main

if __name__ == "__main__":
    demo = Path(__file__).resolve().parent / "configs" / "demo.yaml"
    sys.exit(main(["compare", *sys.argv[1:]], prog="compare.py", default_config=demo))
