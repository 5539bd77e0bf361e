"""The MODEL_DIR format: ``serve.json`` plus the wrapped model's own files in ``model/``.

``serve.json``::

    {"format": 1, "kind": "classical"|"deep", "classes": [...], "version": "...",
     "created": "ISO-8601 UTC",
     "input": {"channels": [...], "dtype": "uint16", "min_size": 16, "max_size": 4096},
     "feature_config": {...},          # classical, and deep cell models (their segmentation)
     "granularity": "image"|"cell",    # classical; deep: "cell" = one crop per nucleus
     "channel_index": [0, 2] | null}   # deep only: input channels the model uses (deep.inputs)
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from cellcompare import atomic
from cellcompare.config import build
from cellcompare.serve.errors import ModelDirError

SPEC_FILE = "serve.json"
MODEL_SUBDIR = "model"
#: A classical head on embeddings: its network (``deep.embed.Embedder.save``).
EMBEDDER_SUBDIR = "embedder"
FORMAT = 1


@dataclass(frozen=True)
class InputSpec:
    """What images a served model accepts.

    Parameters
    ----------
    channels : tuple of str
        Channel names in model order; their count is the required ``C``.
    dtype : str or None
        dtype of the training images (informative; any integer/float dtype is scaled).
    min_size, max_size : int
        Smallest and largest accepted height/width in pixels.
    """

    channels: tuple[str, ...]
    dtype: str | None = None
    min_size: int = 16
    max_size: int = 4096

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | Path | None = None) -> "InputSpec":
        """Build from the ``input`` mapping of ``serve.json``."""
        return build(cls, data, where="input", source=source)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {"channels": list(self.channels), "dtype": self.dtype,
                "min_size": self.min_size, "max_size": self.max_size}


def _kind_of(model: Any) -> str:
    if hasattr(model, "save") and type(model).__name__ == "DeepClassifier":
        return "deep"
    if hasattr(model, "feature_names_in_"):
        return "classical"
    raise ModelDirError(f"cannot export {type(model).__name__}: expected a DeepClassifier or a "
                        "fitted classical estimator with feature_names_in_")


def export_model(model: Any, out_dir: str | Path, *, channels: tuple[str, ...] | list[str],
                 feature_config: Any = None, dtype: str | None = None, min_size: int = 16,
                 max_size: int = 4096, version: str = "1", train_table: Any = None,
                 channel_index: Sequence[int] | None = None, granularity: str = "image",
                 task: dict[str, Any] | None = None, embedder: Any = None,
                 embedding: dict[str, Any] | None = None) -> Path:
    """Write a fitted model as a MODEL_DIR that :func:`serve.load_predictor` reads.

    Parameters
    ----------
    model : DeepClassifier or classical estimator
        A fitted model (``classes_`` set).
    out_dir : str or Path
        Directory to create; the model's own files go to ``out_dir/model``.
    channels : sequence of str
        Channel names of the training images, in order: every served image must have them.
    feature_config : features.FeatureConfig, optional
        Required for classical models: how the training features were extracted.
    dtype, min_size, max_size, version :
        Recorded in the input spec / metadata.
    train_table : DataFrame, optional
        Passed to ``classical.save_model`` for its checksum.
    channel_index : sequence of int, optional
        Deep models only: positions (in ``channels``) of the channels the model was trained on,
        given to ``deep.inputs.sample_input`` when serving; ``None`` means all.
    granularity : {"image", "cell"}
        Deep models only: ``cell`` serves one crop per nucleus (``deep.crops.sample_crops``,
        segmented with ``feature_config``) and averages the cells' probabilities per image.
    task : dict, optional
        What the model classifies, kept as ``serve.json`` ``task``: a cell task's
        ``{"level": "cell", "positive": class, "leak_guard_channel": channel or None}``
        (``cellcompare score`` reads it; a classical model's served rows drop that channel's
        columns, as training did).
    embedder, embedding : deep.embed.Embedder and dict, optional
        A classical head on embeddings: the network (saved to ``out_dir/embedder``) and
        ``serve.json`` ``embedding`` (source, input, cells per image, seed, crop size and mask,
        channel positions), so a served image is embedded as comparison embedded it.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kind = _kind_of(model)
    spec = InputSpec(tuple(str(c) for c in channels), dtype, int(min_size), int(max_size))
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    meta: dict[str, Any] = {"format": FORMAT, "kind": kind,
                            "classes": [str(c) for c in model.classes_], "version": str(version),
                            "created": created, "input": spec.to_dict()}
    if kind == "deep":
        if channel_index is not None and any(not 0 <= int(c) < len(spec.channels) for c in channel_index):
            raise ModelDirError(f"channel_index {list(channel_index)} does not fit the "
                                f"{len(spec.channels)} channels {list(spec.channels)}")
        model.save(out / MODEL_SUBDIR)
        meta["channel_index"] = None if channel_index is None else [int(c) for c in channel_index]
        meta["granularity"] = str(granularity)
        if granularity == "cell":
            if feature_config is None:
                raise ModelDirError(f"export of a cell-crop deep model to {out} needs feature_config= "
                                    "(the segmentation its crops come from)")
            meta["feature_config"] = feature_config.to_dict()
    else:
        if feature_config is None:
            raise ModelDirError(f"export of a classical model to {out} needs feature_config=")
        from cellcompare import classical
        classical.save_model(model, out / MODEL_SUBDIR, train_table=train_table)
        meta["feature_config"] = feature_config.to_dict()
        meta["granularity"] = str(getattr(model, "granularity", "image"))
        if (embedder is None) != (embedding is None):
            raise ModelDirError(f"export of a head on embeddings to {out} needs both embedder= and embedding=")
        if embedder is not None:
            embedder.save(out / EMBEDDER_SUBDIR)
            meta["embedding"] = dict(embedding)
    if task is not None:
        meta["task"] = dict(task)
    atomic.write_json(out / SPEC_FILE, meta)
    return out


def read_spec(model_dir: str | Path) -> dict[str, Any]:
    """Read and validate ``MODEL_DIR/serve.json``."""
    path = Path(model_dir) / SPEC_FILE
    if not path.is_file():
        raise ModelDirError(f"{path} not found; expected a directory written by serve.export_model")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{path} is not valid JSON: {exc}") from exc
    missing = [k for k in ("kind", "classes", "input") if k not in meta]
    if missing:
        raise ModelDirError(f"{path} lacks keys {missing}")
    if meta["kind"] not in ("classical", "deep"):
        raise ModelDirError(f"{path}: kind {meta['kind']!r}; expected 'classical' or 'deep'")
    return meta
