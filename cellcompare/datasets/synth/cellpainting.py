"""Synthetic Cell Painting sites written in the RxRx1 layout (8-bit PNG per channel)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from PIL import Image

from cellcompare.progress import progress_bar

from .cells import CellStyle, draw_channels, place_cells
from .describe import ClassDifference, spread_factors, write_class_differences
from .shapes import acquire, illumination_field

__all__ = ["CELLPAINTING_SPREAD", "RXRX1_CELL_TYPES", "cellpainting_classes", "make_cellpainting",
           "make_rxrx1_like", "read_truth", "render_site"]

logger = logging.getLogger(__name__)

# relative spread of each parameter across classes: class values are evenly spaced in
# [1 - spread, 1 + spread] times the baseline, in a seeded random order per parameter
CELLPAINTING_SPREAD = {
    "nuclear_area": 0.2, "axis_ratio": 0.1, "chromatin_scale": 0.3, "er_scale": 0.3,
    "mito_size": 0.25, "mito_density": 0.3, "rna_intensity": 0.2, "golgi_intensity": 0.2,
    "actin_intensity": 0.2,
}
_ROWS = "BCDEFGHIJKLMNO"
#: Label and well type of the negative-control wells (RxRx1 marks them ``EMPTY``).
CONTROL_LABEL, CONTROL_WELL_TYPE = "EMPTY", "negative_control"
_COLS = range(2, 24)
#: RxRx1's four cell types; :func:`make_rxrx1_like` writes one experiment of each.
RXRX1_CELL_TYPES = ("HEPG2", "HUVEC", "RPE", "U2OS")


@dataclass(frozen=True)
class PlateEffect:
    """Batch effect of one plate: per-channel gain and offset, and its illumination field."""

    gain: np.ndarray
    offset: np.ndarray
    illumination: np.ndarray


def cellpainting_classes(classes: int, seed: int) -> dict[str, CellStyle]:
    """The per-class parameters of :func:`make_cellpainting` (``siRNA_0001`` ...)."""
    rng = np.random.default_rng([seed, 7])
    base = CellStyle()
    factors = {name: spread_factors(classes, spread, rng) for name, spread in CELLPAINTING_SPREAD.items()}
    return {f"siRNA_{k + 1:04d}": CellStyle(**{name: getattr(base, name) * float(factors[name][k])
                                               for name in CELLPAINTING_SPREAD})
            for k in range(classes)}


def _describe(name: str, style: CellStyle) -> ClassDifference:
    base = CellStyle()
    r = {k: getattr(style, k) / getattr(base, k) for k in CELLPAINTING_SPREAD}
    lines = (
        f"Nuclei: mean area x{r['nuclear_area']:.2f} of the average class, minor/major axis ratio "
        f"{style.axis_ratio:.2f} (average {base.axis_ratio:.2f}), chromatin texture scale x{r['chromatin_scale']:.2f}.",
        f"Cytoplasm texture: ER network scale x{r['er_scale']:.2f}, mitochondrial puncta size "
        f"x{r['mito_size']:.2f} and density x{r['mito_density']:.2f}.",
        f"Intensities: RNA nucleoli x{r['rna_intensity']:.2f}, Golgi x{r['golgi_intensity']:.2f}, "
        f"actin cell-edge x{r['actin_intensity']:.2f} relative to the average class.",
    )
    params = {k: round(float(v), 4) for k, v in asdict(style).items()}
    return ClassDifference(name=name, lines=lines, params=params)


def _plate_effect(seed: int, plate: int, size: int) -> PlateEffect:
    rng = np.random.default_rng([seed, 1000 + plate])
    return PlateEffect(gain=rng.lognormal(0, 0.12, 6).astype(np.float32),
                       offset=rng.uniform(0.01, 0.04, 6).astype(np.float32),
                       illumination=illumination_field((size, size), rng, strength=0.3))


#: Name of the optional 7th channel (``w7``): a mitosis marker (e.g. phospho-histone H3).
MARKER_CHANNEL = "Marker"


def mitotic_cells(layout, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Per-cell state: True for the ``fraction`` of cells drawn as mitotic (index = cell id - 1)."""
    return rng.random(int(layout.nuclei.max())) < fraction


def _paint_mitosis(signal: np.ndarray, layout, mitotic: np.ndarray) -> np.ndarray:
    """Condense the DNA of mitotic cells and add the marker channel (returns ``(7, H, W)``).

    A mitotic nucleus is drawn as a round, bright chromatin disk (radius 0.8 x its equivalent
    radius, 1.8 x brighter than an interphase nucleus); the rest of its old outline goes dim.
    The marker is bright (0.6) in mitotic nuclei and faint (0.04) elsewhere in nuclei.
    """
    from scipy import ndimage as ndi

    nuclei = layout.nuclei
    ids = np.arange(1, len(mitotic) + 1)[mitotic]
    dna = signal[0].copy()
    rr, cc = np.indices(nuclei.shape)
    marker = np.where(nuclei > 0, 0.04, 0.0).astype(np.float32)
    for k in ids:
        own = nuclei == k
        if not own.any():
            continue
        cy, cx = rr[own].mean(), cc[own].mean()
        radius = 0.8 * np.sqrt(own.sum() / np.pi)
        core = (rr - cy) ** 2 + (cc - cx) ** 2 <= radius ** 2
        peak = float(dna[own].max())
        dna[own] *= 0.15
        dna[core] = 1.8 * peak
        marker[own | core] = 0.6
    marker = ndi.gaussian_filter(marker, 0.8) + 0.01
    return np.concatenate([np.stack([ndi.gaussian_filter(dna, 0.5)]), signal[1:], marker[None]])


def render_site(style: CellStyle, effect: PlateEffect, rng: np.random.Generator,
                size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one site: ``(image (6, H, W) uint8, nuclei, cells)`` (see :func:`render_site_state`)."""
    return render_site_state(style, effect, rng, size)[:3]


def render_site_state(style: CellStyle, effect: PlateEffect, rng: np.random.Generator, size: int,
                      mitotic_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                              np.ndarray | None]:
    """Draw one site.

    Parameters
    ----------
    style : CellStyle
        Class parameters.
    effect : PlateEffect
        Plate batch effect.
    rng : np.random.Generator
        Source of randomness for this site.
    size : int
        Side of the square site.
    mitotic_fraction : float
        With a value > 0, that share of cells is drawn mitotic (:func:`_paint_mitosis`) and a
        7th channel, the marker, is added.

    Returns
    -------
    image : np.ndarray
        uint8 ``(6, size, size)`` (DNA, ER, Actin, RNA, Mito, Golgi), ``(7, ...)`` with the marker.
    nuclei, cells : np.ndarray
        uint16 ``(size, size)`` true label images (same id for a nucleus and its cell).
    mitotic : np.ndarray or None
        bool ``(n_cells,)``, entry ``k - 1`` for cell ``k`` (None without ``mitotic_fraction``).
    """
    layout = place_cells(size, style, rng)
    signal = draw_channels(layout, style, rng)
    gain, offset = effect.gain, effect.offset
    mitotic = None
    if mitotic_fraction > 0:
        mitotic = mitotic_cells(layout, mitotic_fraction, rng)
        signal = _paint_mitosis(signal, layout, mitotic)
        gain, offset = np.append(gain, np.float32(1.0)), np.append(offset, np.float32(0.01))
    site_light = effect.illumination * np.float32(rng.uniform(0.95, 1.05))
    signal = signal * site_light * gain[:, None, None] + offset[:, None, None]
    image = acquire(signal, rng, photons=250.0, read_noise=0.006, max_value=255)
    return image, layout.nuclei, layout.cells, mitotic


def _plan(classes: list[str], per_class: int, plates: int, seed: int, controls: int = 0) -> list[dict]:
    """Assign class replicates to plates (round robin) and wells (shuffled per plate).

    ``controls`` negative-control wells per plate follow the treated wells of that plate.
    """
    rng = np.random.default_rng([seed, 11])
    wells = [f"{r}{c:02d}" for r in _ROWS for c in _COLS]
    plan = []
    for plate in range(1, plates + 1):
        items = [(k, rep) for rep in range(per_class) for k in range(len(classes))
                 if rep % plates == plate - 1]
        if len(items) + controls > len(wells):
            raise ValueError(f"{len(items) + controls} wells needed on plate {plate}; "
                             f"a plate has {len(wells)}")
        order = rng.permutation(len(items))
        for well, idx in zip(wells, order):
            k, rep = items[idx]
            plan.append({"class_index": k, "sirna": classes[k], "plate": plate, "well": well, "rep": rep})
        for rep, well in enumerate(wells[len(items):len(items) + controls]):
            plan.append({"class_index": len(classes), "sirna": CONTROL_LABEL, "plate": plate,
                         "well": well, "rep": rep, "well_type": CONTROL_WELL_TYPE})
    return plan


def _save_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, compress_level=1)


def read_truth(root: str | Path, site_id: str) -> tuple[np.ndarray, np.ndarray]:
    """True label images of one site written by :func:`make_cellpainting`.

    Returns
    -------
    nuclei, cells : np.ndarray
        uint16 ``(H, W)`` label images; cell ``k`` contains nucleus ``k``.
    """
    truth = Path(root) / "truth"
    with Image.open(truth / f"{site_id}_nuclei.png") as nuclei, \
            Image.open(truth / f"{site_id}_cells.png") as cells:
        return np.asarray(nuclei).astype(np.uint16), np.asarray(cells).astype(np.uint16)


def _write_site(out: Path, item: dict, style: CellStyle, effect: PlateEffect, *, seed: int,
                size: int, experiment: str, cell_type: str, mitotic_fraction: float = 0.0) -> dict:
    """Render one site, write its channel PNGs and truth masks; return its metadata row.

    With ``mitotic_fraction`` > 0 the marker is written as ``w7`` and the per-cell truth as
    ``truth/{site_id}_cells.csv`` (``object, y, x, state``; state ``mitotic`` or ``interphase``).
    """
    folder = out / "images" / experiment / f"Plate{item['plate']}"
    folder.mkdir(parents=True, exist_ok=True)
    # one generator per site, keyed by its identity, so any subset renders identically
    rng = np.random.default_rng([seed, item["class_index"], item["plate"], item["rep"], item["site"]])
    image, nuclei, cells, mitotic = render_site_state(style, effect, rng, size, mitotic_fraction)
    well, site = item["well"], item["site"]
    for c in range(len(image)):
        _save_png(folder / f"{well}_s{site}_w{c + 1}.png", image[c])
    site_id = f"{experiment}_{item['plate']}_{well}_{site}"
    if mitotic is not None:
        from scipy import ndimage as ndi

        ids = np.unique(nuclei[nuclei > 0]).astype(int)
        centers = np.array(ndi.center_of_mass(np.ones_like(nuclei), nuclei, ids)).reshape(-1, 2)
        pd.DataFrame({"object": ids, "y": centers[:, 0], "x": centers[:, 1],
                      "state": np.where(mitotic[ids - 1], "mitotic", "interphase")}).to_csv(
            out / "truth" / f"{site_id}_cells.csv", index=False)
    _save_png(out / "truth" / f"{site_id}_nuclei.png", nuclei)
    _save_png(out / "truth" / f"{site_id}_cells.png", cells)
    return {"site_id": site_id, "well_id": f"{experiment}_{item['plate']}_{well}",
            "cell_type": cell_type, "dataset": "train", "experiment": experiment,
            "plate": item["plate"], "well": well, "site": site,
            "well_type": item.get("well_type", "treatment"),
            "sirna": item["sirna"], "sirna_id": item["class_index"]}


def make_cellpainting(out: str | Path, *, classes: int = 4, per_class: int = 8, seed: int = 0,
                      size: int = 512, plates: int = 3, sites_per_well: int = 1,
                      cell_type: str = "HEPG2", controls_per_plate: int = 0,
                      mitotic_fraction: float = 0.0, jobs: int = 1) -> Path:
    """Write a synthetic Cell Painting dataset in the RxRx1 layout.

    Parameters
    ----------
    out : str or Path
        Output folder (created).
    classes : int
        Number of siRNA classes (``siRNA_0001`` ...).
    per_class : int
        Wells per class, spread round robin over the plates.
    seed : int
        Seed; the same arguments give byte-identical files.
    size : int
        Side of a site in pixels (cells shrink with ``size**0.4`` so small sites keep ~15-40 nuclei).
    plates : int
        Plates ``1..plates`` of experiment ``{cell_type}-01``; each adds a batch effect.
    sites_per_well : int
        Sites per well, each one sample.
    cell_type : str
        Written to the ``cell_type`` column and the experiment name.
    controls_per_plate : int
        Negative-control wells on every plate: untreated morphology (the average class,
        ``CellStyle()``), label ``EMPTY``, ``well_type`` ``negative_control`` as in RxRx1.
    mitotic_fraction : float
        Share of cells drawn mitotic (rounder, condensed bright DNA, marker-positive); > 0 adds
        a 7th channel ``w7`` (:data:`MARKER_CHANNEL`; open with ``channel_names=`` listing it) and
        per-cell truth ``truth/{site_id}_cells.csv``.
    jobs : int
        Worker processes (joblib) rendering sites; each site has its own generator keyed by its
        identity, so any ``jobs`` writes byte-identical files.

    Returns
    -------
    Path
        ``out``, holding ``metadata.csv``, ``images/``, ``truth/``, ``CLASS_DIFFERENCES.md`` and
        ``class_differences.json``.
    """
    if controls_per_plate < 0:
        raise ValueError(f"controls_per_plate must be >= 0, got {controls_per_plate}")
    if classes < 1 or per_class < 1 or plates < 1 or sites_per_well < 1 or size < 32:
        raise ValueError(f"need classes, per_class, plates, sites_per_well >= 1 and size >= 32; got "
                         f"{classes=}, {per_class=}, {plates=}, {sites_per_well=}, {size=}")
    out = Path(out)
    styles = cellpainting_classes(classes, seed)
    names = list(styles)
    experiment = f"{cell_type}-01"
    (out / "truth").mkdir(parents=True, exist_ok=True)
    effects = {p: _plate_effect(seed, p, size) for p in range(1, plates + 1)}
    plan = [dict(w, site=s) for w in _plan(names, per_class, plates, seed, controls_per_plate)
            for s in range(1, sites_per_well + 1)]
    drawn = {**styles, CONTROL_LABEL: CellStyle()}  # controls are untreated: the average class
    write = partial(_write_site, out, seed=seed, size=size, experiment=experiment,
                    cell_type=cell_type, mitotic_fraction=mitotic_fraction)
    if jobs > 1:
        rows = Parallel(n_jobs=jobs)(delayed(write)(item, drawn[item["sirna"]], effects[item["plate"]])
                                     for item in plan)
    else:
        rows = [write(item, drawn[item["sirna"]], effects[item["plate"]])
                for item in progress_bar(plan, desc="cellpainting sites", leave=False)]
    pd.DataFrame(rows).to_csv(out / "metadata.csv", index=False)
    write_class_differences(out, [_describe(n, s) for n, s in styles.items()],
                            "True differences between the synthetic Cell Painting classes")
    logger.info("wrote %d sites to %s", len(rows), out)
    return out


def make_rxrx1_like(out: str | Path, *, sites: int, classes: int,
                    cell_types: tuple[str, ...] = RXRX1_CELL_TYPES, sites_per_well: int = 2,
                    plates: int = 4, size: int = 512, seed: int = 0) -> Path:
    """Write ``sites`` synthetic sites shaped like RxRx1: its cell types, plates, wells and sites.

    Each cell type is one experiment ``{cell_type}-01`` holding every class, with up to
    ``plates`` plates (each its own batch effect; a class's well replicates go round robin over
    the plates as in :func:`make_cellpainting`) and ``sites_per_well`` sites per well. Enough
    wells per class are laid out for ``sites`` sites, and the first ``sites`` are written in
    layers (replicate, site, cell type, class), so the classes and cell types stay balanced. The
    class morphologies (:func:`cellpainting_classes`) are shared by the cell types.

    Parameters
    ----------
    out : str or Path
        Output folder: ``metadata.csv`` (experiment, plate, well, site, cell_type, sirna, ...),
        ``images/{experiment}/Plate{p}/{well}_s{site}_w{1..6}.png``, ``truth/``.
    sites, classes : int
        Sites written and siRNA classes (``siRNA_0001`` ...).
    cell_types : tuple of str
        One experiment each.
    sites_per_well, plates : int
        As RxRx1 (2 sites per well, 4 plates per experiment).
    size : int
        Side of a site in pixels (RxRx1: 512).
    seed : int
        Seed; the same arguments give byte-identical files.

    Returns
    -------
    Path
        ``out``.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> root = make_rxrx1_like(tempfile.mkdtemp(), sites=10, classes=2, size=48)
    >>> meta = pd.read_csv(root / "metadata.csv")
    >>> len(meta), sorted(meta.cell_type.unique()), sorted(meta.sirna.unique())
    (10, ['HEPG2', 'HUVEC', 'RPE', 'U2OS'], ['siRNA_0001', 'siRNA_0002'])
    >>> sorted((root / "images" / "HEPG2-01" / "Plate1").iterdir())[0].name
    'B02_s1_w1.png'
    """
    if sites < 1 or classes < 1 or not cell_types:
        raise ValueError(f"need sites, classes >= 1 and a cell type; got {sites=}, {classes=}, "
                         f"{cell_types=}")
    out = Path(out)
    per_type = -(-sites // len(cell_types))
    per_class = max(1, -(-per_type // (classes * sites_per_well)))  # wells per class and experiment
    n_plates = min(plates, per_class)
    styles = cellpainting_classes(classes, seed)
    plan, effects = [], {}
    for e, cell_type in enumerate(cell_types):
        experiment, exp_seed = f"{cell_type}-01", seed * 100 + e
        effects.update({(experiment, p): _plate_effect(exp_seed, p, size)
                        for p in range(1, n_plates + 1)})
        plan += [dict(w, site=s, experiment=experiment, cell_type=cell_type, seed=exp_seed, order=e)
                 for w in _plan(list(styles), per_class, n_plates, exp_seed)
                 for s in range(1, sites_per_well + 1)]
    plan.sort(key=lambda w: (w["rep"], w["site"], w["order"], w["class_index"]))
    (out / "truth").mkdir(parents=True, exist_ok=True)
    rows = [_write_site(out, item, styles[item["sirna"]], effects[item["experiment"], item["plate"]],
                        seed=item["seed"], size=size, experiment=item["experiment"],
                        cell_type=item["cell_type"])
            for item in progress_bar(plan[:sites], desc="rxrx1-like sites", leave=False)]
    pd.DataFrame(rows).to_csv(out / "metadata.csv", index=False)
    write_class_differences(out, [_describe(n, st) for n, st in styles.items()],
                            "True differences between the synthetic Cell Painting classes")
    logger.info("wrote %d sites of %d classes over %d cell types to %s", len(rows), classes,
                len(cell_types), out)
    return out
