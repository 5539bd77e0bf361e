"""Predictors: load a MODEL_DIR once, predict class probabilities for batches of images.

A batch is a sequence of ``(name, load)`` pairs and an optional plate name (``group``). Each
image is loaded, checked and turned into its model input (feature rows, cell crops, or a deep
image model's probabilities) one at a time, so a batch holds one decoded image at most; an
image that fails gets its own :class:`Outcome` with the error and the others are still
predicted. The batch is then normalised as one plate (``serve.normalization``) and each
outcome says which statistics were used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import pandas as pd

from cellcompare.proba import align_columns, top_k
from cellcompare.serve.errors import InputSpecError
from cellcompare.serve.model_dir import EMBEDDER_SUBDIR, MODEL_SUBDIR, SPEC_FILE, InputSpec, read_spec
from cellcompare.serve.normalization import MIN_PLATE_IMAGES, Normalization, choose

logger = logging.getLogger(__name__)

#: Errors of one image that fail its outcome, not the batch (the package's errors subclass
#: ValueError; decoders raise OSError and RuntimeError).
IMAGE_ERRORS = (ValueError, OSError, RuntimeError)


@dataclass(frozen=True)
class Outcome:
    """One image's result in a batch.

    Attributes
    ----------
    name : str
        The image as the caller named it (a file name, a path, a sample id).
    proba : np.ndarray or None
        ``(n_classes,)`` probabilities in the predictor's ``classes`` order; None on error.
    error : Exception or None
        Why nothing was predicted.
    normalization : Normalization or None
        The statistics the image was normalised by.
    shape : tuple of int
        ``(C, H, W)`` of the image, once read.
    paths : tuple of str
        Files the image was read from (``Sample.paths``).
    """

    name: str
    proba: np.ndarray | None = None
    error: Exception | None = None
    normalization: Normalization | None = None
    shape: tuple[int, ...] = ()
    paths: tuple[str, ...] = ()


class Predictor(Protocol):
    """What serve/ needs from a loaded model."""

    classes: tuple[str, ...]
    input_spec: InputSpec
    meta: dict[str, Any]

    def predict_batch(self, items: Iterable[tuple[str, Callable[[], Any]]], *,
                      group: str | None = None,
                      min_plate_images: int = MIN_PLATE_IMAGES) -> list[Outcome]:
        """One :class:`Outcome` per ``(name, load)`` item, in order."""


def check_image(image: np.ndarray, spec: InputSpec, source: str) -> None:
    """Raise :class:`InputSpecError` when ``image`` ``(C, H, W)`` does not fit ``spec``."""
    if image.ndim != 3:
        raise InputSpecError(f"{source}: image has shape {image.shape}; expected (C, H, W)")
    check_shape(tuple(image.shape), spec, source)


def check_shape(shape: tuple[int, ...], spec: InputSpec, source: str) -> None:
    """Raise :class:`InputSpecError` when a ``(C, H, W)`` shape does not fit ``spec``."""
    c, h, w = shape
    if c != len(spec.channels):
        raise InputSpecError(f"{source}: image has {c} channel(s); model expects "
                             f"{len(spec.channels)} ({', '.join(spec.channels)})")
    if min(h, w) < spec.min_size or max(h, w) > spec.max_size:
        raise InputSpecError(f"{source}: image is {h}x{w} px; model accepts sides "
                             f"{spec.min_size}..{spec.max_size}")


def _settled(outcome: Outcome, proba: np.ndarray, normalization: Normalization) -> Outcome:
    """``outcome`` with its probabilities, or an error where the model gave no finite ones."""
    outcome = replace(outcome, normalization=normalization)
    if not np.isfinite(proba).all():
        return replace(outcome, error=InputSpecError(
            f"{outcome.name}: the model gave no finite probabilities (nothing it can measure, "
            "e.g. a blank image)"))
    return replace(outcome, proba=proba)


class _Base:
    """Loads each image, measures it (``_measure``), then predicts the batch (``_predict``)."""

    def __init__(self, model_dir: Path, meta: dict[str, Any]) -> None:
        self.meta = meta
        self.classes = tuple(str(c) for c in meta["classes"])
        self.input_spec = InputSpec.from_dict(meta["input"], source=Path(model_dir) / SPEC_FILE)

    def _check(self, image: np.ndarray, source: str) -> None:
        check_image(image, self.input_spec, source)
        if image.dtype.kind == "f" and not np.isfinite(image).all():
            raise InputSpecError(f"{source}: image holds {int((~np.isfinite(image)).sum())} "
                                 "NaN or infinite pixel values")

    def predict_batch(self, items: Iterable[tuple[str, Callable[[], Any]]], *,
                      group: str | None = None,
                      min_plate_images: int = MIN_PLATE_IMAGES) -> list[Outcome]:
        """Predict a batch of images of one plate ``group`` (``None``: no plate named).

        Parameters
        ----------
        items : iterable of (str, callable)
            ``(name, load)``: ``load()`` returns the ``datasets.Sample``; it is called when the
            image's turn comes, and the image is dropped once measured.
        group : str, optional
            The plate of every image of the batch (see ``serve.normalization``).
        min_plate_images : int
            Fewest images of an unseen plate normalised by their own statistics.

        Returns
        -------
        list of Outcome
            In ``items`` order; a failed image has ``error`` set, the others ``proba``.
        """
        outcomes, parts = self._measure_all(items, group)
        if not parts:
            return outcomes
        try:
            results = self._predict(parts, group, min_plate_images)
        except IMAGE_ERRORS as exc:  # the batch's normalisation or model failed: every image
            logger.warning("cannot predict the batch of %d images: %s", len(parts), exc)
            return [o if o.error else replace(o, error=exc) for o in outcomes]
        for position, (proba, normalization) in results.items():
            outcomes[position] = _settled(outcomes[position], proba, normalization)
        return outcomes

    def _measure_all(self, items: Iterable[tuple[str, Callable[[], Any]]],
                     group: str | None) -> tuple[list[Outcome], dict[int, Any]]:
        """Load, check and measure each image in turn: its outcome and its model input."""
        outcomes: list[Outcome] = []
        parts: dict[int, Any] = {}
        for position, (name, load) in enumerate(items):
            try:
                sample = load()
                image = np.asarray(sample.image)
                self._check(image, str(name))
                outcomes.append(Outcome(str(name), shape=tuple(image.shape), paths=tuple(sample.paths)))
                del image
                parts[position] = self._measure(replace(sample, id=str(position)), str(name), group)
                del sample  # only its model input is kept
            except IMAGE_ERRORS as exc:
                logger.debug("cannot predict %s: %s: %s", name, type(exc).__name__, exc)
                if len(outcomes) == position:
                    outcomes.append(Outcome(str(name)))
                outcomes[position] = replace(outcomes[position], error=exc)
        return outcomes, parts

    def predict_cells(self, items: Iterable[tuple[str, Callable[[], Any]]], *,
                      group: str | None = None, min_plate_images: int = MIN_PLATE_IMAGES
                      ) -> tuple[list[Outcome], dict[int, pd.DataFrame]]:
        """Every cell's probabilities, for a cell model (``granularity: cell``): one plate.

        The images are measured and normalised as :meth:`predict_batch` does; each outcome's
        ``proba`` is its image's (the mean of its cells').

        Returns
        -------
        outcomes : list of Outcome
            In ``items`` order, as :meth:`predict_batch`.
        cells : dict
            ``{position: DataFrame}`` for each image predicted: ``Metadata_ObjectNumber``,
            ``Metadata_Location_Center_X/Y`` and ``proba_<class>`` (the predictor's classes)
            per cell.
        """
        if self.meta.get("granularity") != "cell":
            raise InputSpecError("this model classifies whole images (granularity: image); "
                                 "only a cell model scores cells")
        outcomes, parts = self._measure_all(items, group)
        if not parts:
            return outcomes, {}
        try:
            tables = self._cell_rows(parts, group, min_plate_images)
        except IMAGE_ERRORS as exc:
            logger.warning("cannot score the batch of %d images: %s", len(parts), exc)
            return [o if o.error else replace(o, error=exc) for o in outcomes], {}
        cells: dict[int, pd.DataFrame] = {}
        for position, (table, normalization) in tables.items():
            proba = table[[f"proba_{c}" for c in self.classes]].to_numpy()
            outcomes[position] = _settled(outcomes[position], proba.mean(axis=0), normalization)
            if outcomes[position].error is None:
                cells[position] = table
        return outcomes, cells

    def _cells_frame(self, objects: pd.DataFrame, proba: np.ndarray) -> pd.DataFrame:
        """``objects``' object number and centre beside the ``proba_<class>`` columns."""
        keep = ["Metadata_ObjectNumber", "Metadata_Location_Center_X", "Metadata_Location_Center_Y"]
        frame = objects[keep].reset_index(drop=True)
        for i, c in enumerate(self.classes):
            frame[f"proba_{c}"] = proba[:, i]
        return frame

    def predict_proba(self, samples: Sequence[Any]) -> tuple[tuple[str, ...], np.ndarray]:
        """``(classes, proba (n, n_classes))`` of in-memory samples, each plate a batch.

        The plate of a sample is ``sample.group``. Raises the first image's error, if any.
        """
        proba: list[np.ndarray | None] = [None] * len(samples)
        by_group: dict[Any, list[int]] = {}
        for i, s in enumerate(samples):
            by_group.setdefault(getattr(s, "group", None), []).append(i)
        for group, members in by_group.items():
            items = [(str(samples[i].id), (lambda s=samples[i]: s)) for i in members]
            for i, outcome in zip(members, self.predict_batch(items, group=group)):
                if outcome.error is not None:
                    raise outcome.error
                proba[i] = outcome.proba
        return self.classes, np.stack(proba) if proba else np.zeros((0, len(self.classes)))

    def _aligned(self, proba: np.ndarray, model_classes: Sequence) -> np.ndarray:
        return align_columns(np.asarray(proba, dtype=float), model_classes, self.classes)

    def _measure(self, sample: Any, name: str, group: str | None) -> Any:
        raise NotImplementedError

    def _predict(self, parts: dict[int, Any], group: str | None,
                 min_images: int) -> dict[int, tuple[np.ndarray, Normalization]]:
        raise NotImplementedError

    def _cell_rows(self, parts: dict[int, Any], group: str | None,
                   min_images: int) -> dict[int, tuple[pd.DataFrame, Normalization]]:
        raise NotImplementedError


class ClassicalPredictor(_Base):
    """Feature extraction with the stored ``FeatureConfig`` + a classical estimator."""

    def __init__(self, model_dir: Path, meta: dict[str, Any]) -> None:
        super().__init__(model_dir, meta)
        from cellcompare import classical
        from cellcompare.features import FeatureConfig
        self.estimator = classical.load_model(model_dir / MODEL_SUBDIR)
        self.feature_config = FeatureConfig.from_record(meta["feature_config"],
                                                      source=Path(model_dir) / SPEC_FILE)
        self.granularity = meta.get("granularity", "image")
        self.scaler = self.estimator.pipeline_.named_steps["scale"]

    def normalization_info(self) -> dict[str, Any]:
        """The model's normalisation, its stored training plates and reference statistics."""
        method = self.scaler.method
        plates = self.estimator.reference_plates()
        return {"method": method, "training_plates": plates, "reference_statistics": bool(plates)}

    def _measure(self, sample: Any, name: str, group: str | None) -> pd.DataFrame:
        """The sample's feature rows (``classical.inputs.sample_features``)."""
        from cellcompare.classical.inputs import sample_features
        table = sample_features(sample, self.feature_config, channel_names=self.input_spec.channels,
                                granularity=self.granularity)
        guarded = (self.meta.get("task") or {}).get("leak_guard_channel")
        if guarded:  # a cell task's leak guard: the gate channel's columns were never seen
            from cellcompare.classical.tables import channel_columns
            table = table.drop(columns=channel_columns(table.columns, guarded))
        empty = len(table) == 0 if self.granularity == "cell" else \
            int(table["Metadata_Object_Count"].iloc[0]) == 0
        if empty:
            raise InputSpecError(f"no cells segmented in {name} (blank or out-of-focus image?); "
                                 "cannot measure features to predict")
        return table

    def _plan(self, table: pd.DataFrame, group: str | None,
              min_images: int) -> tuple[pd.DataFrame, dict[str, Normalization]]:
        """The table with each row's plate as the scaler will read it, and each image's
        normalisation: rows left to the reference statistics get no plate."""
        from cellcompare.classical.preprocess import (
            GROUP_COLUMN,
            MIN_CONTROLS,
            NEGATIVE_CONTROL,
            PLATE_COLUMN,
            WELL_TYPE_COLUMN,
        )
        scaler, method = self.scaler, self.scaler.method
        table = table.assign(**{GROUP_COLUMN: group})
        keys = scaler.plate_keys(table)  # a controls model reads Metadata_Plate when all rows have it
        table = table.drop(columns=[PLATE_COLUMN], errors="ignore")
        images = table["Metadata_sample_id"].astype(str).to_numpy()
        well_types = (table[WELL_TYPE_COLUMN].astype(str).to_numpy()
                      if WELL_TYPE_COLUMN in table.columns else np.full(len(table), ""))
        known = set(self.estimator.reference_plates())
        plans: dict[str, Normalization] = {}
        for key in dict.fromkeys(keys):
            rows = np.array([k == key for k in keys])
            controls = int((well_types[rows] == NEGATIVE_CONTROL).sum())  # a plate by its controls
            own = scaler.unseen_groups == "self" and (method == "plate_robust"
                                                      or controls >= MIN_CONTROLS)
            plan = choose(method, group_dependent=method != "standard", group=key,
                          n_images=len(set(images[rows])), known=known, own_possible=own,
                          min_images=min_images)
            plans.update(dict.fromkeys(images[rows], plan))
            if key is not None and plan.statistics == "reference":
                keys = np.where(rows, None, keys)
        return table.assign(**{GROUP_COLUMN: keys}), plans

    def _predict(self, parts: dict[int, pd.DataFrame], group: str | None,
                 min_images: int) -> dict[int, tuple[np.ndarray, Normalization]]:
        from cellcompare.proba import mean_by
        table, proba, plans = self._row_proba(parts, group, min_images)
        ids = table["Metadata_sample_id"].astype(str).to_numpy()
        if self.granularity == "cell":  # the cell mean, as TableClassifier.predict_image_proba
            ids, proba = mean_by(ids, proba)
        proba = self._aligned(proba, self.estimator.classes_)
        row = {str(k): i for i, k in enumerate(ids)}
        return {p: (proba[row[str(p)]], plans[str(p)]) for p in parts}

    def _row_proba(self, parts: dict[int, pd.DataFrame], group: str | None,
                   min_images: int) -> tuple[pd.DataFrame, np.ndarray, dict[str, Normalization]]:
        """The batch's rows, each row's probabilities (model classes) and each image's plan."""
        from cellcompare.classical.tables import GROUP_COLUMN
        table, plans = self._plan(pd.concat(parts.values(), ignore_index=True), group, min_images)
        est = self.estimator
        reference = table[GROUP_COLUMN].isna().to_numpy() & (self.scaler.method != "standard")
        proba = np.empty((len(table), len(est.classes_)))
        if (~reference).any():
            proba[~reference] = est.predict_proba(table[~reference])
        if reference.any():
            proba[reference] = est.predict_reference_proba(table[reference])
        return table, proba, plans

    def _cell_rows(self, parts: dict[int, pd.DataFrame], group: str | None,
                   min_images: int) -> dict[int, tuple[pd.DataFrame, Normalization]]:
        table, proba, plans = self._row_proba(parts, group, min_images)
        proba = self._aligned(proba, self.estimator.classes_)
        ids = table["Metadata_sample_id"].astype(str).to_numpy()
        return {p: (self._cells_frame(table[ids == str(p)], proba[ids == str(p)]), plans[str(p)])
                for p in parts}


class EmbeddingPredictor(ClassicalPredictor):
    """A classical head on a network's embeddings (``representation: embeddings:<source>``).

    Each image is embedded as comparison embedded it (``serve.json`` ``embedding``): its cells
    segmented with the stored ``FeatureConfig``, cut at the run's crop size, the same seeded
    ``cells_per_image`` kept (``deep.cells.CellInputs.bounded``), the stored network applied and
    the rows built by ``features.embedding_tables``; or the whole image. The head then reads
    these rows as a classical model reads its features (plates and reference statistics alike).
    ``device`` places the network.
    """

    def __init__(self, model_dir: Path, meta: dict[str, Any], device: str = "cpu") -> None:
        super().__init__(model_dir, meta)
        from cellcompare.deep.embed import Embedder
        self.embedder = Embedder.load(Path(model_dir) / EMBEDDER_SUBDIR, device=device)
        self.embedding = dict(meta["embedding"])

    def normalization_info(self) -> dict[str, Any]:
        return {**super().normalization_info(), "embedding": self.embedding["source"]}

    def _measure(self, sample: Any, name: str, group: str | None) -> pd.DataFrame:
        """The sample's embedding rows (one per image, or one per kept cell)."""
        from cellcompare.deep.cells import CellInputs
        from cellcompare.deep.inputs import sample_input
        from cellcompare.features.embedding_tables import embedding_tables, index_metadata

        spec, channels = self.embedding, self.embedding.get("channel_index")
        metadata = index_metadata(pd.DataFrame([{"sample_id": str(sample.id), "label": sample.label,
                                                 "group": group, **dict(sample.metadata)}]))
        if spec["input"] == "image":
            values = self.embedder.embed([sample_input(sample, channels)], batch_size=1)
            image, cells = embedding_tables(values, None, metadata, spec["source"], [str(sample.id)])
        else:
            crops = CellInputs.of_sample(sample, self.feature_config, crop_size=int(spec["crop_size"]),
                                         channels=channels, mask=bool(spec["crop_mask"]),
                                         channel_names=self.input_spec.channels, group=group)
            if self.granularity != "cell" or not self.meta.get("task"):  # an image task's bound
                crops = crops.bounded(spec["cells_per_image"], int(spec["seed"]))
            if not len(crops):
                raise InputSpecError(f"no cells segmented in {name} (blank or out-of-focus image?); "
                                     "cannot embed its cells to predict")
            values = self.embedder.embed(crops.scaled(spec.get("normalize", "none")),
                                         batch_size=int(spec["batch_size"]))
            objects = crops.objects.reset_index(drop=True).assign(Metadata_sample_id=str(sample.id))
            image, cells = embedding_tables(values, objects, metadata, spec["source"], [str(sample.id)])
        return cells if self.granularity == "cell" else image


class DeepPredictor(_Base):
    """A ``deep.DeepClassifier`` on ``deep.inputs.sample_input`` (image) or cell crops.

    ``device`` (``cpu``, ``cuda``, ``auto``) is where the network runs. A cell model of an image
    task with ``cells_per_image`` predicts an image from the cells comparison's bounded crop
    cache holds (``CellInputs.bounded``); the cell door predicts every cell.
    """

    def __init__(self, model_dir: Path, meta: dict[str, Any], device: str = "cpu") -> None:
        super().__init__(model_dir, meta)
        from cellcompare.deep import DeepClassifier
        self.model = DeepClassifier.load(model_dir / MODEL_SUBDIR, device=device)
        index = meta.get("channel_index")
        self.channel_index = None if index is None else [int(c) for c in index]
        self.cell = meta.get("granularity") == "cell"
        if self.cell:
            from cellcompare.features import FeatureConfig
            self.feature_config = FeatureConfig.from_record(meta["feature_config"],
                                                          source=Path(model_dir) / SPEC_FILE)

    def normalization_info(self) -> dict[str, Any]:
        """The model's normalisation, its stored training plates and reference statistics."""
        method = self.model.config.normalize if self.cell else "training channel mean and std"
        return {"method": method, "training_plates": sorted(self.model.group_means_ or {}),
                "reference_statistics": bool(self.model.group_means_)}

    def _measure(self, sample: Any, name: str, group: str | None) -> Any:
        """An image model's probabilities (no plate statistics), or a cell model's crops."""
        from cellcompare.deep.inputs import sample_input
        if not self.cell:
            return self.model.predict_proba([sample_input(sample, self.channel_index)])[0]
        from cellcompare.deep.cells import CellInputs
        cfg = self.model.config
        crops = CellInputs.of_sample(sample, self.feature_config, crop_size=int(cfg.crop_size),
                                     channels=self.channel_index, mask=cfg.crop_mask,
                                     channel_names=self.input_spec.channels, group=group)
        if not len(crops):
            raise InputSpecError(f"no cells segmented in {name}; cannot predict")
        return crops

    def _predict(self, parts: dict[int, Any], group: str | None,
                 min_images: int) -> dict[int, tuple[np.ndarray, Normalization]]:
        if not self.cell:
            plan = Normalization("training channel mean and std", "fixed", group, len(parts))
            return {p: (self._aligned(proba[None], self.model.classes_)[0], plan)
                    for p, proba in parts.items()}
        cfg = self.model.config
        if not self.meta.get("task"):  # an image task: its prediction is the mean of the bounded cells
            parts = {p: c.bounded(cfg.cells_per_image, cfg.seed) for p, c in parts.items()}
        cells, plan, means = self._plan_cells(parts, group, min_images)
        if plan.statistics == "reference":
            ids, proba = self.model.predict_reference_image_proba(cells)
        else:
            ids, proba = self.model.predict_image_proba(cells, means=means)
        proba = self._aligned(proba, self.model.classes_)
        row = {str(k): i for i, k in enumerate(ids)}
        return {p: (proba[row[str(p)]], plan) for p in parts}

    def _plan_cells(self, parts: dict[int, Any], group: str | None,
                    min_images: int) -> tuple[Any, Normalization, dict | None]:
        """The batch's crops joined, their normalisation, and the stored plate means it uses
        (``None``: the crops' own means, or the reference statistics)."""
        from cellcompare.deep.cells import CellInputs
        cfg = self.model.config
        cells = CellInputs.join(list(parts.values()), int(cfg.crop_size))
        known = self.model.group_means_ or {}
        plan = choose(cfg.normalize, group_dependent=cfg.normalize == "group", group=group,
                      n_images=len(parts), known=known, own_possible=True, min_images=min_images)
        means = {str(group): known[str(group)]} if plan.statistics == "training_plate" else None
        return cells, plan, means

    def _cell_rows(self, parts: dict[int, Any], group: str | None,
                   min_images: int) -> dict[int, tuple[pd.DataFrame, Normalization]]:
        cells, plan, means = self._plan_cells(parts, group, min_images)
        if plan.statistics == "reference":  # each training plate's means in turn, averaged
            keys = np.unique(cells.groups)
            proba = np.mean([self.model.predict_cell_proba(cells, means=dict.fromkeys(keys, mean))
                             for mean in self.model.group_means_.values()], axis=0)
        else:
            proba = self.model.predict_cell_proba(cells, means=means)
        proba = self._aligned(proba, self.model.classes_)
        return {p: (self._cells_frame(parts[p].objects, proba[cells.images == str(p)]), plan)
                for p in parts}


def load_predictor(model_dir: str | Path, *, device: str = "cpu") -> Predictor:
    """Load the model of a MODEL_DIR written by :func:`serve.export_model`.

    ``device`` (``cpu``, ``cuda``, ``auto``) places a deep model's network; a classical model
    runs on the CPU.

    Raises
    ------
    ModelDirError
        ``serve.json`` missing, invalid or of an unknown kind.
    """
    model_dir = Path(model_dir)
    meta = read_spec(model_dir)
    logger.info("loading %s model from %s", meta["kind"], model_dir)
    if meta["kind"] == "classical":
        if device != "cpu" and not meta.get("embedding"):
            logger.warning("device %r ignored: a classical model predicts on the CPU", device)
        if meta.get("embedding"):
            return EmbeddingPredictor(model_dir, meta, device=device)
        return ClassicalPredictor(model_dir, meta)
    return DeepPredictor(model_dir, meta, device=device)


def top_pairs(classes: Sequence[str], proba: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    """Per row, the ``k`` most probable ``(class, probability)`` pairs (``proba.top_k``)."""
    labels, probs = top_k(proba, classes, k)
    return [[(str(c), float(p)) for c, p in zip(lrow, prow)] for lrow, prow in zip(labels, probs)]
