"""Exceptions raised by :mod:`classical`; each subclasses ``ValueError`` so callers can act."""

from __future__ import annotations


class ClassicalError(ValueError):
    """Base class of every input error raised by :mod:`classical`."""


class SingleClassError(ClassicalError):
    """Training labels contain fewer than two classes."""


class TooFewMembersError(ClassicalError):
    """A class has fewer training members than the inner cross-validation needs."""


class EmptyFeatureTableError(ClassicalError):
    """The table has no usable feature column (none at all, or all NaN / constant)."""


class NonNumericFeatureError(ClassicalError):
    """A non-``Metadata_`` column is not numeric."""


class UnseenLabelError(ClassicalError):
    """Labels given at score time were not seen while fitting."""


class FeatureMismatchError(ClassicalError):
    """The table's feature columns differ from those the model was fitted on."""

    def __init__(self, missing: list[str], extra: list[str], where: str = "table") -> None:
        self.missing = list(missing)
        self.extra = list(extra)
        super().__init__(
            f"{where} does not match the model's feature columns: "
            f"{len(self.missing)} missing {_head(self.missing)}, "
            f"{len(self.extra)} extra {_head(self.extra)}"
        )


def _head(names: list[str], n: int = 10) -> str:
    shown = ", ".join(names[:n])
    more = f", ... (+{len(names) - n})" if len(names) > n else ""
    return f"[{shown}{more}]"


class MissingMetadataError(ClassicalError):
    """A ``Metadata_`` column needed by the configuration is absent."""


class NonFiniteFeaturesError(ClassicalError):
    """The model's input (cleaned, selected, normalised features) holds NaN or infinite values."""
