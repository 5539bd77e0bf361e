"""``DeepClassifier``: a torch image classifier with the scikit-learn face used by comparison/."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from cellcompare import atomic
from cellcompare.proba import mean_by, top_k

from .augment import build_augmentation
from .cells import CellInputs, per_image
from .crops import crop_means, means_by_key
from .config import DeepConfig
from .data import ImageTensorDataset, as_chw, channel_stats
from .errors import ImageInputError, NotFittedError
from .models import build_model
from .train import (
    fit_model,
    make_loader,
    predict_probabilities,
    resolve_device,
    seed_everything,
)
from .tune import random_search

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
META_FILE = "deep_model.json"


def inner_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, validation) indices; no validation when it cannot hold every class.

    Stratification needs at least 2 images per class and a validation set of at least one image
    per class; otherwise all images are used for training (early stopping is then off).
    """
    indices = np.arange(len(y))
    n_classes = len(np.unique(y))
    n_val = int(round(fraction * len(y)))
    counts = np.bincount(y)
    if fraction <= 0 or n_val < n_classes or counts.min() < 2 or len(y) - n_val < n_classes:
        if fraction > 0:
            logger.warning("inner validation split skipped: %d images, %d classes, smallest class %d",
                           len(y), n_classes, counts.min())
        return indices, indices[:0]
    train, val = train_test_split(indices, test_size=n_val, stratify=y, random_state=seed)
    return np.sort(train), np.sort(val)


def class_weights(encoded: np.ndarray, classes: np.ndarray, spec: Any) -> np.ndarray | None:
    """Loss weight per class index from ``DeepConfig.class_weight``.

    ``"balanced"`` gives ``n / (k * n_c)`` (scikit-learn's rule); a mapping gives its value per
    class (classes it leaves out weigh 1).

    Raises
    ------
    ImageInputError
        The mapping names a class absent from the training labels.
    """
    if spec is None:
        return None
    if spec == "balanced":
        counts = np.bincount(encoded, minlength=len(classes)).astype(float)
        return len(encoded) / (len(classes) * np.maximum(counts, 1.0))
    unknown = sorted(set(map(str, spec)) - set(map(str, classes)))
    if unknown:
        raise ImageInputError(f"class_weight names classes {unknown} absent from the training labels "
                              f"{[str(c) for c in classes]}")
    named = {str(k): float(v) for k, v in spec.items()}
    return np.array([named.get(str(c), 1.0) for c in classes])


class DeepClassifier:
    """Image classifier (ResNet18 or a small CNN) with ``fit`` / ``predict_proba``.

    Parameters
    ----------
    config : DeepConfig, optional
        Model, training, augmentation and tuning settings.

    Attributes
    ----------
    classes_ : np.ndarray
        Sorted class labels; column order of :meth:`predict_proba`.
    weights_info_ : dict
        ``{"source": "imagenet"|"path"|"none", "path": ..., "sha256": ...}``.
    best_params_ : dict
        ``{"lr", "batch_size"}`` used for the final training (tuned or from the config).
    tuning_trials_ : list of dict
        Every tuning trial (empty without tuning).
    history_ : list of dict
        Per-epoch training record of the final training.
    channel_mean_, channel_std_ : np.ndarray
        Normalisation statistics ``(C,)`` computed on the training images.
    group_means_ : dict or None
        Cell models with ``normalize: group``: ``{group: (C,) channel means}`` of each training
        group's crops, the statistics :meth:`fit_cells` divided them by, stored with the model
        (:meth:`predict_reference_image_proba`; ``means=`` of :meth:`predict_cell_proba`).

    Examples
    --------
    >>> import numpy as np
    >>> from cellcompare.deep import DeepClassifier, DeepConfig
    >>> images = [np.full((1, 8, 8), v, np.float32) for v in (0.1, 0.2, 0.8, 0.9)]
    >>> clf = DeepClassifier(DeepConfig(arch="smallcnn", weights="none", image_size=8, epochs=1,
    ...                                 batch_size=4, val_fraction=0.0, device="cpu", amp=False,
    ...                                 progress=False))
    >>> proba = clf.fit(images, ["dim", "dim", "bright", "bright"]).predict_proba(images)
    >>> proba.shape, clf.classes_.tolist(), bool(np.allclose(proba.sum(1), 1))
    ((4, 2), ['bright', 'dim'], True)
    """

    def __init__(self, config: DeepConfig | None = None) -> None:
        self.config = config if config is not None else DeepConfig()
        self.model_: torch.nn.Module | None = None
        self.group_means_: dict[str, np.ndarray] | None = None

    def fit(self, images: Sequence, y: Sequence, *, unlabeled: Sequence | None = None,
            ssl_key: str | None = None, ssl_folder: str | Path | None = None) -> "DeepClassifier":
        """Train on ``images`` (each ``(C, H, W)``, read on access) with labels ``y``.

        With ``weights: ssl`` the network is first pretrained without labels (``deep.ssl``) on
        ``images``, and on ``unlabeled`` too when ``ssl.use_test_images`` (transductive), then
        fine-tuned; ``ssl_key`` and ``ssl_folder`` cache the backbone (``deep.ssl.pretrain``).
        """
        cfg = self.config
        y = np.asarray(y)
        if len(y) != len(images):
            raise ImageInputError(f"got {len(images)} images but {len(y)} labels")
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ImageInputError(f"need at least 2 classes, found {list(self.classes_)}")
        self.n_channels_ = as_chw(images[0], 0).shape[0]
        device = resolve_device(cfg.device)
        # weights first: a missing weight file must fail before every image is read for statistics
        seed_everything(cfg.seed)
        if cfg.weights == "ssl":
            model, self.weights_info_ = self._pretrained(images, unlabeled, ssl_key, ssl_folder)
        else:
            model, self.weights_info_ = build_model(cfg.arch, self.n_channels_, len(self.classes_), cfg.weights)
        train_idx, val_idx = inner_split(encoded, cfg.val_fraction, cfg.seed)
        self.channel_mean_, self.channel_std_ = channel_stats(images, progress=cfg.progress)
        common = {"mean": self.channel_mean_, "std": self.channel_std_, "image_size": cfg.image_size,
                  "resize": cfg.resize}
        train_ds = ImageTensorDataset(images, encoded, indices=train_idx,
                                transform=build_augmentation(cfg.augment), **common)
        val_ds = ImageTensorDataset(images, encoded, indices=val_idx, **common) if len(val_idx) else None
        self.best_params_ = {"lr": cfg.lr, "batch_size": cfg.batch_size}
        self.tuning_trials_: list[dict[str, Any]] = []
        if cfg.tune.enabled:
            self.best_params_, self.tuning_trials_ = random_search(model, train_ds, val_ds, cfg, device)
            logger.info("tuned parameters: %s", self.best_params_)
        seed_everything(cfg.seed)
        start = time.perf_counter()
        self.history_ = fit_model(model, train_ds, val_ds, cfg, lr=self.best_params_["lr"],
                                  batch_size=min(self.best_params_["batch_size"], len(train_ds)),
                                  epochs=cfg.epochs, device=device, checkpoint_dir=cfg.checkpoint_dir,
                                  class_weight=class_weights(encoded, self.classes_, cfg.class_weight))
        self.fit_seconds_ = time.perf_counter() - start
        self.model_ = model.eval()
        return self

    def _pretrained(self, images: Sequence, unlabeled: Sequence | None, key: str | None,
                    folder: str | Path | None) -> tuple[torch.nn.Module, dict[str, Any]]:
        """The SSL backbone with a new head, and its weights record (loss curve left out)."""
        from .ssl import backbone, pretrain

        cfg = self.config
        seen = images
        if cfg.ssl.use_test_images and unlabeled is not None and len(unlabeled):
            seen = _Joined(images, unlabeled)
        pre = pretrain(seen, cfg, key=key, folder=folder, n_channels=self.n_channels_)
        info = {k: v for k, v in pre.info.items() if k != "loss"}
        info.update(final_loss=pre.info["loss"][-1], unlabeled=len(seen) - len(images))
        seed_everything(cfg.seed)
        return backbone(pre, len(self.classes_)), info

    def predict_proba(self, images: Sequence) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` in ``classes_`` order (TTA-averaged if configured)."""
        model = self._check_fitted()
        cfg = self.config
        device = next(model.parameters()).device
        dataset = ImageTensorDataset(images, None, mean=self.channel_mean_, std=self.channel_std_,
                               image_size=cfg.image_size, resize=cfg.resize)
        if len(dataset) == 0:
            return np.zeros((0, len(self.classes_)), dtype=np.float32)
        loader = make_loader(dataset, batch_size=cfg.batch_size, shuffle=False, device=device,
                             num_workers=cfg.num_workers, seed=0)
        return predict_probabilities(model, loader, device, amp=cfg.amp, tta=cfg.tta, progress=cfg.progress)

    def fit_cells(self, cells: CellInputs, y: Sequence, *, unlabeled: CellInputs | None = None,
                  ssl_key: str | None = None, ssl_folder: str | Path | None = None) -> "DeepClassifier":
        """Train on single-cell crops, normalised as ``config.normalize`` says.

        Parameters
        ----------
        cells : deep.cells.CellInputs
            The training crops with their images and groups; the group (or image) means are
            taken over all of them, then at most ``config.cells_per_image`` crops per image are
            kept (drawn once with ``config.seed``).
        y : sequence of str
            ``(len(cells),)`` the label of each crop (its image's, or its own in a cell task).
        """
        cfg = self.config
        y = np.asarray(y)
        if len(y) != len(cells):
            raise ImageInputError(f"got {len(cells)} cell crops but {len(y)} labels")
        keep = per_image(cells.images, cfg.cells_per_image, cfg.seed)
        logger.info("training on %d cell crops", len(keep))
        pretraining: dict[str, Any] = {}  # only weights: ssl reads these; other fits are called as before
        if cfg.weights == "ssl":
            pretraining = {"ssl_key": ssl_key, "ssl_folder": ssl_folder}
            if unlabeled is not None and cfg.ssl.use_test_images:  # normalised alike, bounded alike
                pretraining["unlabeled"] = unlabeled.scaled(cfg.normalize).subset(
                    per_image(unlabeled.images, cfg.cells_per_image, cfg.seed))
        self.fit(cells.scaled(cfg.normalize).subset(keep), y[keep], **pretraining)
        if cfg.normalize == "group":  # stored with the model: a served crop may lack its plate
            self.group_means_ = means_by_key(crop_means(cells.crops, cells.rows), cells.groups)
        return self

    def predict_cell_proba(self, cells: CellInputs, *,
                           means: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Probabilities ``(len(cells), n_classes)`` of each crop, normalised as in training.

        ``means`` (``normalize: group``): ``{group: (C,) channel means}`` for groups to divide
        by stored statistics (:attr:`group_means_`) instead of the means of their crops here
        (see ``deep.cells.CellInputs.scaled``).
        """
        view = cells.scaled(self.config.normalize, means=means)
        return np.asarray(self.predict_proba(view), dtype=float)

    def predict_image_proba(self, cells: CellInputs, *,
                            means: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities per image: the mean of its cells' (``proba.mean_by``); ``means`` as in
        :meth:`predict_cell_proba`.

        Returns
        -------
        sample_ids : np.ndarray
            Sorted ids of the images that have crops.
        proba : np.ndarray
            ``(n_images, n_classes)`` in ``classes_`` order.
        """
        return mean_by(cells.images, self.predict_cell_proba(cells, means=means))

    def predict_reference_image_proba(self, cells: CellInputs) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities per image of crops without a plate of their own (``normalize: group``).

        The crops are divided by each training group's stored means (:attr:`group_means_`) in
        turn and the image probabilities averaged: the unknown plate is marginalised over the
        training plates, as ``classical.TableClassifier.predict_reference_proba`` does.

        Raises
        ------
        NotFittedError
            The model stored no group means (not ``normalize: group``, or saved before they
            were kept).
        """
        if not self.group_means_:
            raise NotFittedError("this cell model stored no training group means (normalize="
                                 f"{self.config.normalize!r}, or saved before they were kept)")
        keys = np.unique(cells.groups)
        runs = [self.predict_image_proba(cells, means=dict.fromkeys(keys, mean))
                for mean in self.group_means_.values()]
        return runs[0][0], np.mean([proba for _, proba in runs], axis=0)

    def predict(self, images: Sequence) -> np.ndarray:
        """Most probable class label per image."""
        return self.classes_[self.predict_proba(images).argmax(1)]

    def top_k(self, images: Sequence, k: int = 3) -> np.ndarray:
        """The ``k`` most probable labels per image, ``(n, k)``, most probable first."""
        labels, _ = top_k(self.predict_proba(images), self.classes_, k)
        return labels.astype(self.classes_.dtype)

    def save(self, directory: str | Path) -> Path:
        """Write ``model.pt`` (state dict) and ``deep_model.json`` (config, classes, statistics,
        and a ``normalize: group`` cell model's training group means)."""
        model = self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(directory / MODEL_FILE) as tmp:
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
        meta = {"config": self.config.to_dict(), "classes": self.classes_.tolist(),
                "n_channels": self.n_channels_, "channel_mean": self.channel_mean_.tolist(),
                "channel_std": self.channel_std_.tolist(), "weights_info": self.weights_info_,
                "best_params": self.best_params_, "tuning_trials": self.tuning_trials_,
                "history": self.history_}
        if self.group_means_ is not None:
            meta["group_means"] = {k: np.asarray(v).tolist() for k, v in self.group_means_.items()}
        atomic.write_json(directory / META_FILE, meta)
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> "DeepClassifier":
        """Rebuild a classifier written by :meth:`save` (no pretrained weight file needed)."""
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise NotFittedError(f"{meta_path} not found; expected a directory written by DeepClassifier.save")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        clf = cls(DeepConfig.from_dict(meta["config"]))
        clf.classes_ = np.asarray(meta["classes"])
        clf.n_channels_ = meta["n_channels"]
        clf.channel_mean_ = np.asarray(meta["channel_mean"], dtype=np.float32)
        clf.channel_std_ = np.asarray(meta["channel_std"], dtype=np.float32)
        clf.weights_info_ = meta["weights_info"]
        clf.best_params_ = meta["best_params"]
        clf.tuning_trials_ = meta["tuning_trials"]
        clf.history_ = meta["history"]
        if "group_means" in meta:  # float64 JSON round-trips exactly
            clf.group_means_ = {k: np.asarray(v, dtype=np.float64)
                                for k, v in meta["group_means"].items()}
        model, _ = build_model(clf.config.arch, clf.n_channels_, len(clf.classes_), "none")
        state = torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        clf.model_ = model.to(resolve_device(device)).eval()
        return clf

    def _check_fitted(self) -> torch.nn.Module:
        if self.model_ is None:
            raise NotFittedError("DeepClassifier is not fitted; call fit() or DeepClassifier.load()")
        return self.model_


class _Joined(Sequence):
    """Two sequences read as one (training images, then unlabeled ones)."""

    def __init__(self, first: Sequence, second: Sequence) -> None:
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    def __getitem__(self, i: int) -> Any:  # type: ignore[override]
        n = len(self.first)
        return self.first[i] if i < n else self.second[i - n]
