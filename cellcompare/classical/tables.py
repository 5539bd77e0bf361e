"""Splitting feature tables into features and metadata, and validating them once."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from collections.abc import Iterable

import numpy as np
import pandas as pd

from cellcompare.classical.errors import (
    EmptyFeatureTableError,
    NonNumericFeatureError,
    SingleClassError,
    TooFewMembersError,
)

METADATA_PREFIX = "Metadata_"
GROUP_COLUMN = "Metadata_group"
SAMPLE_COLUMN = "Metadata_sample_id"


def feature_columns(table: pd.DataFrame) -> list[str]:
    """Return the feature columns of ``table`` (every column not starting with ``Metadata_``)."""
    return [str(c) for c in table.columns if not str(c).startswith(METADATA_PREFIX)]


def validate_features(table: pd.DataFrame, *, where: str = "feature table") -> list[str]:
    """Check that ``table`` has numeric, not entirely NaN feature columns.

    Parameters
    ----------
    table : pandas.DataFrame
        Feature table following docs/CONTRACTS.md.
    where : str
        Name of the table used in error messages.

    Returns
    -------
    list of str
        The feature column names.

    Raises
    ------
    NonNumericFeatureError
        When a feature column has a non-numeric dtype.
    EmptyFeatureTableError
        When there are no rows, no feature columns, or every feature value is NaN.
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{where} must be a pandas DataFrame, found {type(table).__name__}")
    unnamed = [c for c in table.columns if not isinstance(c, str)]
    if unnamed:
        raise NonNumericFeatureError(
            f"{where} has {len(unnamed)} column name(s) that are not strings: {unnamed[:10]}; "
            f"feature tables name their columns (CellProfiler feature names, '{METADATA_PREFIX}*')"
        )
    cols = feature_columns(table)
    bad = [c for c in cols if not (pd.api.types.is_numeric_dtype(table[c])
                                   and not pd.api.types.is_bool_dtype(table[c]))]
    if bad:
        kinds = ", ".join(f"{c} ({table[c].dtype})" for c in bad[:10])
        raise NonNumericFeatureError(
            f"{where} has {len(bad)} non-numeric feature column(s): {kinds}; expected numeric "
            f"features (prefix metadata columns with '{METADATA_PREFIX}')"
        )
    if len(table) == 0 or not cols:
        raise EmptyFeatureTableError(
            f"{where} has {len(table)} rows and {len(cols)} feature columns; expected at least one of each"
        )
    if not table[cols].notna().to_numpy().any():
        raise EmptyFeatureTableError(
            f"{where}: all {len(cols)} feature columns are NaN in all {len(table)} rows"
        )
    return cols


def validate_labels(y: np.ndarray, *, min_members: int) -> None:
    """Require two or more classes with at least ``min_members`` members each.

    Raises
    ------
    SingleClassError
        Fewer than two distinct labels.
    TooFewMembersError
        A class smaller than ``min_members`` (the inner folds).
    """
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise SingleClassError(
            f"training labels hold {len(classes)} class(es) {list(classes)}; expected at least 2"
        )
    small = {str(c): int(n) for c, n in zip(classes, counts) if n < min_members}
    if small:
        raise TooFewMembersError(
            f"class(es) {small} have fewer than {min_members} training members, which the inner "
            f"stratified folds need; drop them or lower the inner folds"
        )


def table_sha256(table: pd.DataFrame) -> str:
    """Return a sha256 over the column names and row hashes of ``table``."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, table.columns)).encode())
    digest.update(pd.util.hash_pandas_object(table, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def feature_family(name: str) -> str:
    """Return the CellProfiler family of ``name`` (``Cells_Texture_...`` -> ``Texture``)."""
    parts = str(name).split("_")
    return parts[1] if len(parts) > 1 else ""


def channel_columns(columns: Iterable[str], channel: str) -> list[str]:
    """Feature columns that measure ``channel``: its name is one of their ``_``-separated parts.

    A cell task's leak guard drops them (the gate's channel) from training and serving alike.

    Examples
    --------
    >>> channel_columns(["Metadata_Marker", "Nuclei_Intensity_MeanIntensity_Marker",
    ...                  "Nuclei_AreaShape_Area", "Cells_Correlation_Correlation_DNA_Marker"], "Marker")
    ['Nuclei_Intensity_MeanIntensity_Marker', 'Cells_Correlation_Correlation_DNA_Marker']
    """
    return [c for c in columns if not str(c).startswith("Metadata_") and channel in str(c).split("_")]
