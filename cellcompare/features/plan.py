"""The segmentation settings of a dataset, chosen once from a seeded sample of its images.

What a user leaves unset (the nucleus and cytoplasm channels, the typical diameter) is chosen
here, logged and recorded, so that every image of a run, its crops and its exported model use
the same settings. Warnings name a configured nucleus channel that is nearly empty and files
whose signal sits in one channel (an RGB TIFF holding one stain).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import FeatureConfig
from .estimate import CYTO_NAME, channel_signal, estimate_diameter, nucleus_channel_by_name, weak_channels
from .segmentation import diameter_range

__all__ = ["ESTIMATE_IMAGES", "plan_dataset", "plan_extraction", "resolve_segmentation", "sample_positions"]

log = logging.getLogger(__name__)

#: Images read to choose the channels and estimate the diameter (a seeded sample).
ESTIMATE_IMAGES = 8
_SEED = 0


def sample_positions(n: int, k: int = ESTIMATE_IMAGES, seed: int = _SEED) -> list[int]:
    """``k`` dataset positions of ``n``, drawn without replacement with ``seed``, sorted.

    >>> from cellcompare.features.plan import sample_positions
    >>> sample_positions(3), len(sample_positions(100)), sample_positions(100) == sample_positions(100)
    ([0, 1, 2], 8, True)
    """
    if n <= k:
        return list(range(n))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n, size=k, replace=False))


def _choose_dna(images: Sequence[np.ndarray], names: tuple[str, ...]) -> tuple[str, str, dict]:
    signal = {name: round(float(np.median([channel_signal(im[c]) for im in images])), 2)
              for c, name in enumerate(names)}
    named = nucleus_channel_by_name(names)
    if len(named) == 1:
        return named[0], "name", signal
    weak = [weak_channels(im, names) for im in images]
    # a nearly empty channel's specks stand out from its flat zero background: never the nuclei
    pool = named or [n for n in names if 2 * sum(n in w for w in weak) < len(images)] or list(names)
    return max(pool, key=lambda n: signal[n]), ("name and signal" if named else "signal"), signal


def _choose_cyto(names: tuple[str, ...], dna: str) -> tuple[str, str]:
    others = [n for n in names if n != dna]
    if not others:
        return dna, "only channel"
    named = [n for n in others if CYTO_NAME.search(n)]
    return (named[0], "name") if named else (others[0], "first other channel")


def _warnings(images: Sequence[np.ndarray], names: tuple[str, ...], dna: str,
              configured: bool, ids: Sequence[str]) -> list[str]:
    out = []
    weak = [weak_channels(im, names) for im in images]
    if len(names) > 1:
        empty_dna = [sid for sid, w in zip(ids, weak) if dna in w]
        if empty_dna and 2 * len(empty_dna) >= len(ids):
            how = "configured" if configured else "chosen"
            out.append(f"the {how} nucleus channel {dna!r} is nearly empty (under a tenth of the "
                       f"strongest channel's range) in {len(empty_dna)} of {len(ids)} sampled "
                       f"images, e.g. {empty_dna[0]!r}; set features.dna_channel")
        single = [sid for sid, w in zip(ids, weak) if len(w) == len(names) - 1]
        if single and 2 * len(single) >= len(ids):
            strong = [n for n in names if n not in weak[ids.index(single[0])]]
            out.append(f"the signal of {len(single)} of {len(ids)} sampled images sits in one "
                       f"channel ({strong[0]!r}) of {len(names)}; the others are nearly empty "
                       f"(an RGB file holding one stain?), e.g. {single[0]!r}")
    return out


def plan_extraction(dataset: Any, config: FeatureConfig, folder: str | Path) -> tuple[FeatureConfig, dict]:
    """:func:`plan_dataset`, or the choices of the extraction already in ``folder``.

    An extraction resumed with the settings it was started with keeps the channels and the
    diameter it chose then (recorded in ``manifest.json``), even when images were added or
    changed since, so that its old and new parts are segmented alike.
    """
    path = Path(folder) / "manifest.json"
    if path.is_file():
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            manifest = {}
        given = json.loads(json.dumps(config.to_dict(), default=str))
        if manifest.get("user_config") == given and isinstance(manifest.get("config"), dict):
            record = dict(manifest.get("segmentation") or {})
            log.info("segmentation settings of %s kept (chosen when it was started)", path.parent)
            return FeatureConfig.from_record(manifest["config"]), record
    return plan_dataset(dataset, config)


def plan_dataset(dataset: Any, config: FeatureConfig) -> tuple[FeatureConfig, dict]:
    """:func:`resolve_segmentation` on a seeded sample of a dataset's images.

    Reads the :data:`ESTIMATE_IMAGES` images of :func:`sample_positions` (none in
    whole-object mode, or when the channels and sizes are all set).
    """
    names = tuple(str(n) for n in (getattr(dataset, "channel_names", None) or ()))
    settled = config.dna_channel is not None and config.cyto_channel is not None and (
        config.diameter is not None or config.min_area is not None or config.masks)
    if config.whole_object or len(dataset) == 0 or settled:
        return resolve_segmentation([], names, config)
    samples = [dataset[i] for i in sample_positions(len(dataset))]
    return resolve_segmentation([np.asarray(s.float_image) for s in samples], names, config,
                                ids=[str(s.id) for s in samples])


def resolve_segmentation(images: Sequence[np.ndarray], names: Sequence[str], config: FeatureConfig,
                         *, ids: Sequence[str] | None = None) -> tuple[FeatureConfig, dict]:
    """Fill the unset nucleus/cytoplasm channels and diameter of ``config`` from images.

    Parameters
    ----------
    images : sequence of np.ndarray
        ``(C, H, W)`` float images, a sample of the dataset (:func:`plan_dataset` draws it).
    names : sequence of str
        The ``C`` channel names (``C1``, ``C2`` ... when empty).
    config : FeatureConfig
        The user's settings; set values are kept.
    ids : sequence of str, optional
        The images' sample ids, named in warnings.

    Returns
    -------
    config : FeatureConfig
        With ``dna_channel``, ``cyto_channel`` and ``diameter`` set (unchanged in whole-object
        mode, with bring-your-own masks, or with ``min_area`` fixing the sizes by hand).
    record : dict
        What was chosen and how, for ``metrics.json`` and the report: ``dna_channel``,
        ``cyto_channel`` (``name``, ``chosen_by``), ``channel_signal``, ``diameter``
        (``range``, ``typical``, ``chosen_by``, ``per_image``), ``sampled`` ids and
        ``warnings``.

    Examples
    --------
    >>> import numpy as np
    >>> from skimage.draw import disk
    >>> from cellcompare.features import FeatureConfig
    >>> from cellcompare.features.plan import resolve_segmentation
    >>> image = np.zeros((2, 96, 96), np.float32)
    >>> image[0] += np.linspace(0.1, 0.6, 96)                            # a diffuse "Cells" channel
    >>> for r, c in [(24, 24), (24, 72), (72, 48)]:
    ...     image[1][disk((r, c), 8)] = 1.0                              # nuclei in "C2"
    >>> resolved, record = resolve_segmentation([image], ("Cells", "C2"), FeatureConfig())
    >>> resolved.dna_channel, record["dna_channel"]["chosen_by"], resolved.cyto_channel
    ('C2', 'signal', 'Cells')
    >>> resolved.diameter, record["warnings"]
    ((8.0, 32.0), [])
    """
    record: dict[str, Any] = {"warnings": []}
    if config.whole_object:
        return config, {**record, "mode": "whole_object"}
    images = [np.asarray(im) for im in images]
    ids = [str(i) for i in ids] if ids is not None else [f"image {k + 1}" for k in range(len(images))]
    names = tuple(str(n) for n in names)
    if images and len(names) != images[0].shape[0]:
        names = tuple(f"C{i + 1}" for i in range(images[0].shape[0]))
    record["sampled"] = ids
    if not images:                        # everything set by the user: nothing to choose
        record["dna_channel"] = {"name": config.dna_channel, "chosen_by": "config"}
        record["cyto_channel"] = {"name": config.cyto_channel, "chosen_by": "config"}
        record["diameter"] = ({"range": list(config.diameter), "chosen_by": "config"} if config.diameter
                              else {"chosen_by": "masks" if config.masks else "min_area"})
        return config, record
    changes: dict[str, Any] = {}
    if config.dna_channel is None:
        dna, how, signal = _choose_dna(images, names)
        changes["dna_channel"] = dna
        record["channel_signal"] = signal
    else:
        dna, how = config.dna_channel, "config"
    record["dna_channel"] = {"name": dna, "chosen_by": how}
    if config.cyto_channel is None:
        cyto, cyto_how = _choose_cyto(names, dna)
        changes["cyto_channel"] = cyto
    else:
        cyto, cyto_how = config.cyto_channel, "config"
    record["cyto_channel"] = {"name": cyto, "chosen_by": cyto_how}
    if dna in names:
        record["warnings"] = _warnings(images, names, dna, config.dna_channel is not None, ids)
    if config.masks:
        record["diameter"] = {"chosen_by": "masks"}
    elif config.diameter is not None:
        record["diameter"] = {"range": list(config.diameter), "chosen_by": "config"}
    elif config.min_area is not None:
        record["diameter"] = {"chosen_by": "min_area", "min_area": config.min_area}
    elif dna in names:
        c = names.index(dna)
        per_image = [estimate_diameter(im[c]) for im in images]
        found = [d for d in per_image if d]
        if found:
            typical = float(np.median(found))
            changes["diameter"] = diameter_range(typical)
            record["diameter"] = {"range": list(changes["diameter"]), "typical": round(typical, 1),
                                  "chosen_by": "estimated",
                                  "per_image": [None if d is None else round(d, 1) for d in per_image]}
        else:
            record["diameter"] = {"chosen_by": "none", "per_image": per_image}
            record["warnings"].append(f"no object of 9 pixels or more in channel {dna!r} of the "
                                      f"{len(ids)} sampled images; the diameter is estimated per image")
    resolved = dataclasses.replace(config, **changes) if changes else config
    _log(record)
    return resolved, record


def _log(record: dict) -> None:
    dna, cyto, diameter = record["dna_channel"], record["cyto_channel"], record.get("diameter", {})
    log.info("nucleus channel %r (by %s), cytoplasm channel %r (by %s)", dna["name"], dna["chosen_by"],
             cyto["name"], cyto["chosen_by"])
    if diameter.get("chosen_by") == "estimated":
        log.info("typical nucleus diameter %.1f px estimated from %d images: range %s px",
                 diameter["typical"], len(record["sampled"]), diameter["range"])
    for text in record["warnings"]:
        log.warning("%s", text)
