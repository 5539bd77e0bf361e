"""cellcompare: CellProfiler-style features + SVM/XGBoost against ResNet18, on the same folds.

The data path is the package layout::

    cellcompare.datasets -> cellcompare.features -> cellcompare.classical
    cellcompare.datasets -> cellcompare.deep
    both -> cellcompare.comparison -> cellcompare.reports;   cellcompare.serve applies a model

``cellcompare.config`` (the one configuration loader), ``cellcompare.atomic`` (the one atomic
write), ``cellcompare.proba`` (class-probability tables: ``top_k``, column alignment) and
``cellcompare.progress`` (progress bars, drawn on a terminal only) are shared by every step;
``cellcompare.cli`` is the ``cellcompare`` command.
"""

__version__ = "0.1.0"
