"""How a ``datasets.Sample`` becomes a classical model's input: CellProfiler feature rows.

A classical model reads the rows ``features.extract_sample`` computes with the run's stored
``FeatureConfig``: one per-image row (``granularity="image"``) or one row per cell
(``"cell"``). A comparison run computes them for the whole dataset with the batch job
(``features.run_extraction``, which calls ``extract_sample`` per image) and its adapters select
them with :func:`feature_rows`; serve computes them for one new image with
:func:`sample_features`. Both paths therefore give a model the same numbers for the same image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

__all__ = ["GRANULARITIES", "feature_rows", "sample_features"]

#: Table a classical model reads: per-image rows or per-cell rows.
GRANULARITIES = ("image", "cell")


def feature_rows(table: pd.DataFrame, sample_ids: Sequence[str]) -> pd.DataFrame:
    """The rows of ``table`` that belong to ``sample_ids`` (table order, index reset).

    Parameters
    ----------
    table : pd.DataFrame
        A per-image or per-cell feature table with ``Metadata_sample_id``.
    sample_ids : sequence of str
        The images wanted.

    Returns
    -------
    pd.DataFrame
    """
    wanted = {str(s) for s in sample_ids}
    keep = table["Metadata_sample_id"].astype(str).isin(wanted)
    return table[keep].reset_index(drop=True)


def sample_features(sample: Any, feature_config: Any, *, channel_names: Sequence[str],
                    granularity: str = "image", image_number: int = 1) -> pd.DataFrame:
    """Segment and measure one sample as the training images were.

    Parameters
    ----------
    sample : datasets.Sample
        The image ``(C, H, W)``.
    feature_config : features.FeatureConfig
        The stored settings of the model's training features.
    channel_names : sequence of str
        The names of the sample's channels, in order (the model's input spec): features are
        named and channels selected by them.
    granularity : {"image", "cell"}
        Which table the model reads.
    image_number : int
        ``Metadata_ImageNumber`` of the rows.

    Returns
    -------
    pd.DataFrame
        One per-image row, or one row per segmented cell (possibly none).
    """
    from cellcompare.features import extract_sample

    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, found {granularity!r}")
    named = replace(sample, metadata={**dict(sample.metadata), "channel_names": list(channel_names)})
    cells, image_row = extract_sample(named, feature_config, image_number=image_number)
    return cells if granularity == "cell" else image_row
