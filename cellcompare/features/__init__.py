"""Segmentation and CellProfiler-parity per-cell features, as a batch job.

The measurements are the project's own numba kernels (one module per family: ``shape``,
``intensity``, ``texture``, ``correlation``, ``granularity``, ``radial``, ``zernike``,
``neighbors``), tested against cp_measure: every value equals cp_measure's to 1e-6 relative
(``tests/test_features_*.py``). ``Neighbors``, which cp_measure lacks, follows CellProfiler's
MeasureObjectNeighbors. The kernels compile on first use and are cached in ``__pycache__``.

Examples
--------
One synthetic site segmented and measured in memory, then the whole two-site dataset as a
resumable batch job whose tables are read back:

>>> import tempfile
>>> from cellcompare.datasets import open_dataset
>>> from cellcompare.datasets.synth import make_cellpainting
>>> from cellcompare.features import FeatureConfig, extract_sample, load_table, run_extraction
>>> root = make_cellpainting(tempfile.mkdtemp(), classes=2, per_class=1, size=64, plates=1)
>>> config = FeatureConfig(preset="minimal", objects=("Nuclei",))
>>> cells, image_row = extract_sample(open_dataset(root)[0], config)
>>> len(cells), image_row["Metadata_Object_Count"].tolist()
(13, [13])
>>> cells["Nuclei_AreaShape_Area"].tolist()[:3]
[127.0, 85.0, 106.0]
>>> out = run_extraction(root, tempfile.mkdtemp(), config)
>>> load_table(out)["Metadata_Object_Count"].tolist()
[13, 13]
>>> len(load_table(out, "cell")), len(load_table(out, "cell", cells_per_image=3))
(26, 6)
"""

from .batch import (
    DatasetOptionsMismatchError,
    FeatureConfigMismatchError,
    load_table,
    run_extraction,
)
from .config import FAMILIES, PRESETS, FeatureConfig, FeatureConfigError
from .extract import ChannelConfigError, aggregate, extract_sample, object_centroids, segment_sample
from .resume import DatasetChangedError
from .segmentation import (
    SegmentationError,
    cytoplasm,
    segment_cells,
    segment_nuclei,
    segment_whole_object,
)

__all__ = [
    "DatasetChangedError",
    "DatasetOptionsMismatchError",
    "FeatureConfigMismatchError",
    "FAMILIES", "PRESETS", "ChannelConfigError", "FeatureConfig", "FeatureConfigError",
    "SegmentationError", "aggregate", "cytoplasm", "extract_sample", "load_table", "object_centroids",
    "run_extraction", "segment_cells", "segment_nuclei", "segment_sample", "segment_whole_object",
]
