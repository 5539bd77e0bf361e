"""Which statistics normalise a served batch: its own plate's, a training plate's, or the reference.

A model trained with a group-dependent normalisation (classical ``plate_robust``,
``controls``, ``controls_robust``; deep ``normalize: group``) scales each image by statistics
of its plate. Serving, the plate is what the batch says (``POST /predict/batch``'s ``group``,
``cellcompare predict --group``, a dataset folder's plates):

* a training plate's name: the statistics stored for that plate at training;
* an unseen plate with at least ``min_images`` images in the batch, where the model can use
  a batch's own statistics: the batch's (what comparison did for a test plate);
* otherwise (a lone image, no plate, too few images, controls without control wells): the
  reference statistics stored with the model, those of every training plate: the image is
  normalised by each in turn and its probabilities averaged, so the unknown plate effect is
  marginalised over the plates seen in training
  (``classical.TableClassifier.predict_reference_proba``,
  ``deep.DeepClassifier.predict_reference_image_proba``).

:func:`choose` is that rule; every response says which applied (its ``normalization``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

__all__ = ["MIN_PLATE_IMAGES", "Normalization", "STATISTICS", "choose"]

#: Fewest images of an unseen plate in one batch for its own statistics (median/MAD or channel
#: means of fewer images describe those images, not their plate).
MIN_PLATE_IMAGES = 8
#: Where a batch's normalisation statistics come from.
STATISTICS = ("fixed", "training_plate", "batch", "reference")


@dataclass(frozen=True)
class Normalization:
    """How one image was normalised: the ``normalization`` field of a prediction.

    Parameters
    ----------
    method : str
        The model's normalisation (classical ``normalize``: ``standard``, ``plate_robust``,
        ``controls``, ``controls_robust``; deep ``normalize``: ``none``, ``group``, ``image``).
    statistics : {"fixed", "training_plate", "batch", "reference"}
        ``fixed``: the method needs no plate; ``training_plate``: the stored statistics of
        training plate ``group``; ``batch``: the batch's own images of plate ``group``;
        ``reference``: the stored statistics of every training plate, the probabilities
        averaged over them.
    group : str or None
        The plate the batch named (``None``: none).
    n_images : int
        Images of that plate in the batch.
    reference_plates : int
        Training plates averaged over (``reference`` only).

    Examples
    --------
    >>> Normalization("plate_robust", "reference", None, 1, reference_plates=3).describe()
    'plate_robust: no plate statistics of its own; averaged over the 3 training plates'
    """

    method: str
    statistics: str
    group: str | None
    n_images: int
    reference_plates: int = 0

    def __post_init__(self) -> None:
        if self.statistics not in STATISTICS:
            raise ValueError(f"statistics must be one of {STATISTICS}, found {self.statistics!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {"method": self.method, "statistics": self.statistics, "group": self.group,
                "n_images": self.n_images, "reference_plates": self.reference_plates}

    def describe(self) -> str:
        """One line for a CSV cell or a log."""
        what = {"fixed": "no plate statistics needed",
                "training_plate": f"statistics of training plate {self.group}",
                "batch": f"statistics of the {self.n_images} images of plate {self.group} in this batch",
                "reference": "no plate statistics of its own; averaged over the "
                             f"{self.reference_plates} training plates"}[self.statistics]
        return f"{self.method}: {what}"


def choose(method: str, *, group_dependent: bool, group: str | None, n_images: int,
           known: Collection[str], own_possible: bool,
           min_images: int = MIN_PLATE_IMAGES) -> Normalization:
    """The normalisation of a batch of ``n_images`` images of plate ``group``.

    Parameters
    ----------
    method : str
        The model's normalisation.
    group_dependent : bool
        Whether ``method`` needs a plate's statistics.
    group : str or None
        The plate the batch names.
    n_images : int
        Images of the batch that belong to ``group``.
    known : collection of str
        Plates whose statistics the model stored at training (the reference averages over
        them).
    own_possible : bool
        Whether the model can normalise a batch by its own statistics (e.g. not ``controls``
        without control wells, not ``unseen_groups="global"``).
    min_images : int
        Fewest images for the batch's own statistics.

    Returns
    -------
    Normalization

    Examples
    --------
    >>> choose("plate_robust", group_dependent=True, group=None, n_images=1, known={"P1"},
    ...        own_possible=True).statistics
    'reference'
    >>> choose("plate_robust", group_dependent=True, group="P1", n_images=1, known={"P1"},
    ...        own_possible=True).statistics
    'training_plate'
    >>> choose("group", group_dependent=True, group="P9", n_images=12, known={"P1"},
    ...        own_possible=True).statistics
    'batch'
    """
    if not group_dependent:
        statistics = "fixed"
    elif group is None:
        statistics = "reference"
    elif str(group) in known:
        statistics = "training_plate"
    elif own_possible and n_images >= min_images:
        statistics = "batch"
    else:
        statistics = "reference"
    return Normalization(method, statistics, None if group is None else str(group), int(n_images),
                         len(known) if statistics == "reference" else 0)
