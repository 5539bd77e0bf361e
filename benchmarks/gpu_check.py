"""One prepared device check: training throughput, then a 2,000-site compare, in one command.

Stages, in order, each timed and recorded in ``gpu_check.json`` (status ``ok``, ``skipped`` with
its reason, or ``failed`` with the error):

1. ``synth``: synthetic Cell Painting sites (``datasets.synth.make_cellpainting``, PNGs).
2. ``crops``: the cell crops of some sites cut into a ``deep.crop_cache.CropCache``.
3. ``throughput`` per input (6 x 256² whole sites, 6 x 64² cell crops) and mode (eager, then
   ``torch.compile``): ResNet18 train steps through the project's own input path (PNG reader or
   crop cache -> ``ImageTensorDataset`` with augmentation -> ``make_loader`` -> ``train_one_epoch``
   with bf16 autocast and channels_last on CUDA) against the ceiling, the same loop on batches
   already on the device; GPU utilisation and ``torch.cuda.max_memory_allocated``.
4. ``compare``: ``comparison.run`` on the synthetic sites (plate-held-out folds; svm, xgboost when
   importable, resnet18 and smallcnn on crops), then the HTML report; stage times printed.
5. ``svm_gpu``: recorded as not done (``classical/scale.py``'s L-BFGS is not ported to torch).

``--budget-s`` is respected: a stage that would start past it is skipped with the reason.
Results go to ``--out`` (default ``$OUT`` when set): ``gpu_check.json``, ``gpu_check.md`` (a block
for ``benchmarks/RESULTS.md``), ``gpu_check.log`` and the compare's ``report.html`` and
``metrics.json``; the synthetic data and the run folder live in ``--work`` (a temporary folder
by default). ``--smoke`` runs the same code on CPU at tiny sizes (tests/test_gpu_check.py).

Example (device): ``python benchmarks/gpu_check.py --out $OUT``;
(CPU): ``python benchmarks/gpu_check.py --smoke --out /tmp/gpu_check``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deep_bench import GpuSampler, fresh_model  # noqa: E402  (the sibling benchmark's pieces)

logger = logging.getLogger("gpu_check")

#: H100 reference of issue 31 (ResNet18, 6 x 256², img/s) and the goal end to end / ceiling.
H100_REFERENCE = {"eager": 9300.0, "compiled": 11300.0}
GOAL_RATIO = 0.60
#: Third-party modules the compare imports that the H200 image lacks (wheels: KINDS.md, README).
COMPARE_NEEDS = ("cp_measure", "centrosome", "mahotas", "imagecodecs")


@dataclass(frozen=True)
class Plan:
    """Sizes of one check: ``FULL`` for the device, ``SMOKE`` for CPU CI."""

    classes: int = 4
    per_class: int = 250          # wells per class
    plates: int = 4
    sites_per_well: int = 2       # 4 x 250 x 2 = 2,000 sites
    site_size: int = 256
    site_input: int = 256         # whole-site input side (resize_pad)
    crop_size: int = 64
    crop_sites: int = 256         # sites whose crops feed the crop throughput
    batch_size: int = 256
    steps: int = 20               # timed train steps (after as many warm-up steps)
    arch: str = "resnet18"
    folds: int = 2                # plate-held-out: 2 plates per test fold
    epochs: int = 3
    cells_per_image: int = 16
    deep_arches: tuple[str, ...] = ("resnet18", "smallcnn")
    budget_s: float = 450.0
    compare_need_s: float = 150.0  # a compare is not started with less budget left
    compile_need_s: float = 90.0


FULL = Plan()
SMOKE = Plan(per_class=3, plates=2, sites_per_well=2, site_size=64, site_input=16, crop_size=16,
             crop_sites=8, batch_size=8, steps=2, folds=2, epochs=1, cells_per_image=4,
             deep_arches=("smallcnn",), budget_s=110.0, compare_need_s=20.0, compile_need_s=5.0)


class Budget:
    """Wall-clock budget of the whole check; :meth:`refuses` names why a stage may not start."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.perf_counter()

    def used(self) -> float:
        return time.perf_counter() - self.start

    def refuses(self, need_s: float) -> str | None:
        if self.used() + need_s > self.seconds:
            return (f"over budget: {self.used():.0f} s used of --budget-s {self.seconds:.0f}, "
                    f"the stage needs about {need_s:.0f} s")
        return None


class Check:
    """The stage records of one run, written as they come (a killed run keeps what finished)."""

    def __init__(self, out: Path, budget: Budget, info: dict) -> None:
        self.out, self.budget, self.info, self.stages = out, budget, info, []

    def stage(self, name: str, fn, *, need_s: float = 0.0, **labels):
        """Run ``fn()`` as stage ``name`` unless the budget refuses; returns its dict of values.

        Values whose key starts with ``_`` are returned but not recorded (objects, not results).
        """
        record = {"stage": name, **labels}
        reason = self.budget.refuses(need_s)
        if reason:
            record.update(status="skipped", reason=reason)
            logger.warning("%s %s skipped: %s", name, labels or "", reason)
            return self._add(record, None)
        start = time.perf_counter()
        try:
            values = fn()
        except Exception as exc:  # recorded and printed; the later stages still run
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                          traceback=traceback.format_exc(limit=6))
            logger.error("%s %s failed: %s\n%s", name, labels or "", record["error"], record["traceback"])
            values = None
        else:
            record.update(status="ok", **{k: v for k, v in values.items() if not k.startswith("_")})
        record["seconds"] = round(time.perf_counter() - start, 2)
        return self._add(record, values)

    def skip(self, name: str, reason: str, **labels) -> None:
        logger.warning("%s %s skipped: %s", name, labels or "", reason)
        self._add({"stage": name, **labels, "status": "skipped", "reason": reason}, None)

    def _add(self, record: dict, values):
        self.stages.append(record)
        self.write()
        return values

    def write(self) -> None:
        payload = {**self.info, "elapsed_s": round(self.budget.used(), 1), "stages": self.stages}
        (self.out / "gpu_check.json").write_text(json.dumps(payload, indent=2, default=str))


# -- data ---------------------------------------------------------------------------------------

def compare_config(plan: Plan, work: Path, device: torch.device, xgboost: dict | None):
    """The compare's ``CompareConfig``: plate-held-out folds, the classical and crop models."""
    from cellcompare.comparison.config import CompareConfig

    deep = {"weights": "none", "image_size": plan.crop_size, "cells_per_image": plan.cells_per_image,
            "normalize": "group", "epochs": plan.epochs, "batch_size": plan.batch_size, "lr": 0.003,
            "val_fraction": 0.0, "precise_bn_batches": 8, "augment": {"angle_step": 0},
            "progress": False, "device": device.type, "amp": True,
            "num_workers": 1 if device.type == "cpu" else None}
    models = [{"name": "svm", "params": {"normalize": "plate_robust"}}]
    if xgboost is not None:
        models.append({"name": "xgboost", "params": {"normalize": "plate_robust", **xgboost}})
    models += [{"name": arch, "granularity": "cell", "params": dict(deep)} for arch in plan.deep_arches]
    return CompareConfig.from_dict({
        "dataset": {"path": str(work / "data"), "layout": "rxrx1"},
        "features": {"preset": "minimal", "dna_channel": "DNA", "cyto_channel": "Actin"},
        "models": models, "folds": {"n_splits": plan.folds, "group_column": "group"},
        "top_k": 2, "seed": 0, "jobs": max(1, (os.cpu_count() or 1) if device.type == "cuda" else 1),
        "output": str(work / "compare"), "report": False})


def write_sites(plan: Plan, work: Path) -> dict:
    from cellcompare.datasets.synth import make_cellpainting

    jobs = os.cpu_count() or 1
    make_cellpainting(work / "data", classes=plan.classes, per_class=plan.per_class, seed=0,
                      size=plan.site_size, plates=plan.plates, sites_per_well=plan.sites_per_well,
                      jobs=jobs)
    return {"sites": plan.classes * plan.per_class * plan.sites_per_well, "size": plan.site_size,
            "classes": plan.classes, "plates": plan.plates, "jobs": jobs}


def cut_crops(plan: Plan, config, dataset) -> dict:
    from cellcompare.deep.crop_cache import CropCache

    ids = list(dataset.ids[:plan.crop_sites])
    cache = CropCache.build(Path(config.output).parent / "throughput_crops", dataset,
                            config.feature_config(), sample_ids=ids, crop_size=plan.crop_size,
                            progress=False)
    return {"_cache": cache, "crops": int(len(cache.cells)), "sites": len(ids)}


# -- throughput ---------------------------------------------------------------------------------

def input_cache_source() -> str:
    """Which decoded input the site throughput reads (issue 20's cache once it lands)."""
    if importlib.util.find_spec("cellcompare.deep.input_cache") is not None:
        return ("png (cellcompare.deep.input_cache exists but gpu_check does not read it yet: "
                "wire it in before the device run)")
    return "png (decoded input cache of issue 20 not landed)"


def site_dataset(plan: Plan, dataset, repeat: int, images=None):
    """Whole sites as the deep arm trains on them: PNGs read on access (or ``images``, e.g. a
    ``deep.input_cache.CachedImages`` of the same sites), default augmentation."""
    from cellcompare.deep.augment import build_augmentation
    from cellcompare.deep.config import AugmentConfig
    from cellcompare.deep.data import ImageTensorDataset, channel_stats
    from cellcompare.deep.inputs import SampleImages

    images = SampleImages(dataset) if images is None else images
    mean, std = channel_stats(images, range(min(32, len(images))), progress=False)
    labels = np.arange(len(images)) % plan.classes
    indices = np.resize(np.arange(len(images)), repeat)
    return ImageTensorDataset(images, labels, mean=mean, std=std, image_size=plan.site_input,
                              indices=indices, transform=build_augmentation(AugmentConfig()))


def crop_dataset(plan: Plan, cache, dataset, repeat: int):
    """Cell crops as ``DeepClassifier.fit_cells`` reads them: cache memmap, plate scaling."""
    from cellcompare.deep.augment import build_augmentation
    from cellcompare.deep.cells import CellInputs
    from cellcompare.deep.config import AugmentConfig
    from cellcompare.deep.data import ImageTensorDataset, channel_stats

    group_of = dict(zip(map(str, dataset.ids), map(str, dataset.groups)))
    cells = CellInputs(cache.crops, np.arange(len(cache.cells)), cache.image_ids,
                       np.array([group_of[s] for s in cache.image_ids], dtype=str))
    view = cells.scaled("group")
    mean, std = channel_stats(view, range(min(512, len(view))), progress=False)
    labels = np.arange(len(view)) % plan.classes
    return ImageTensorDataset(view, labels, mean=mean, std=std, image_size=plan.crop_size,
                              indices=np.resize(np.arange(len(view)), repeat),
                              transform=build_augmentation(AugmentConfig(angle_step=0)))


def timed_epoch(model, batches, optimizer, device: torch.device) -> tuple[float, float | None, float | None]:
    """One warm-up pass (compilation, workers, autotuning), then one timed ``train_one_epoch``.

    Returns images/s, mean GPU utilisation (%) and ``max_memory_allocated`` (MiB) of the timed pass.
    """
    from torch import nn

    from cellcompare.deep.train import train_one_epoch, warmup_cosine

    criterion = nn.CrossEntropyLoss()
    scheduler = warmup_cosine(optimizer, 0, 10 ** 9)
    common = dict(amp=True, epoch=0, progress=False)
    train_one_epoch(model, batches, criterion, optimizer, scheduler, device, **common)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with GpuSampler(device) as util:
        record = train_one_epoch(model, batches, criterion, optimizer, scheduler, device, **common)
    memory = torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else None
    return record["images_per_s"], util.mean(), memory


def throughput(plan: Plan, dataset, device: torch.device, *, compiled: bool, workers: int | None) -> dict:
    """End to end (loader) and ceiling (device-resident batches) img/s of one input and mode."""
    from cellcompare.deep.train import _to_device, make_loader

    loader = make_loader(dataset, batch_size=plan.batch_size, shuffle=True, device=device,
                         num_workers=workers, seed=0, drop_last=True)
    channels = dataset.mean.shape[0]
    spec = argparse.Namespace(arch=plan.arch, channels=channels, classes=plan.classes, compile=compiled)
    model, optimizer = fresh_model(spec, device)
    e2e, e2e_util, e2e_mem = timed_epoch(model, loader, optimizer, device)
    pool = []
    for images, labels in loader:  # the same batches, moved to the device once
        pool.append((_to_device(images, device), labels.to(device)))
        if len(pool) == 4:
            break
    batches = [pool[i % len(pool)] for i in range(plan.steps)]
    ceiling, ceiling_util, ceiling_mem = timed_epoch(model, batches, optimizer, device)
    na = "n/a (cpu)" if device.type == "cpu" else "n/a (no pynvml or nvidia-smi)"
    return {"end_to_end_img_s": round(e2e, 1), "ceiling_img_s": round(ceiling, 1),
            "ratio": round(e2e / ceiling, 3), "goal_ratio": GOAL_RATIO,
            "gpu_util_end_to_end": e2e_util if e2e_util is not None else na,
            "gpu_util_ceiling": ceiling_util if ceiling_util is not None else na,
            "max_memory_allocated_mib": {"end_to_end": e2e_mem, "ceiling": ceiling_mem}
            if device.type == "cuda" else na,
            "workers": loader.num_workers, "pin_memory": loader.pin_memory, "batch_size": plan.batch_size,
            "steps": plan.steps, "input_shape": [channels, dataset.image_size, dataset.image_size]}


# -- compare ------------------------------------------------------------------------------------

def xgboost_params() -> tuple[dict | None, str]:
    """xgboost's params for this machine, or None and why it is left out (never silently)."""
    if importlib.util.find_spec("xgboost") is None:
        return None, "xgboost is not importable here (the H200 image has none; carry xgboost-cpu's wheel)"
    import xgboost

    cuda = bool(xgboost.build_info().get("USE_CUDA")) and torch.cuda.is_available()
    return ({"device": "cuda" if cuda else "cpu", "n_jobs": os.cpu_count() or 1},
            f"xgboost {xgboost.__version__} on {'cuda' if cuda else 'cpu'} (build USE_CUDA="
            f"{xgboost.build_info().get('USE_CUDA')})")


def compare(config) -> dict:
    """``comparison.run`` then ``reports.build_report``; stage times from the run's records."""
    from cellcompare.comparison import run
    from cellcompare.features.warmup import compile_kernels
    from cellcompare.reports import build_report

    times = {"kernels": compile_kernels()}
    start = time.perf_counter()
    out = run(config)
    times["run"] = time.perf_counter() - start
    start = time.perf_counter()
    report = build_report(out)
    times["report"] = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    extraction = (metrics.get("features") or {}).get("extraction") or {}
    times["features"] = extraction.get("seconds")
    models = {}
    for label, entry in metrics["models"].items():
        folds = [f for f in entry["folds"] if f["fold"] >= 0]
        models[label] = {"accuracy": entry["summary"]["accuracy"]["mean"],
                         "fit_s": round(sum(f["fit_seconds"] for f in folds), 2),
                         "predict_s": round(sum(f["predict_seconds"] for f in folds), 2),
                         "folds": len(folds), "notes": entry.get("notes", [])}
    return {"sites": metrics["dataset"].get("n_samples", metrics["dataset"].get("n_images")),
            "classes": len(metrics["classes"]), "folds": config.folds.n_splits,
            "group_column": config.folds.group_column, "models": models,
            "stage_seconds": {k: None if v is None else round(v, 2) for k, v in times.items()},
            "report": str(report), "results": str(out)}


# -- main ---------------------------------------------------------------------------------------

def run_check(plan: Plan, out: Path, work: Path, *, workers: int | None, device: torch.device) -> Check:
    """Every stage in order; returns the :class:`Check` (also written to ``out``)."""
    from cellcompare.comparison.prepare import prepare_dataset
    from cellcompare.comparison.results import environment

    xgb, xgb_note = xgboost_params()
    info = {"smoke": plan is SMOKE, "plan": dataclasses.asdict(plan), "device": device_name(device),
            "torch": torch.__version__, "cuda": torch.version.cuda, "environment": environment(),
            "xgboost": xgb_note, "site_source": input_cache_source(),
            "h100_reference_img_s": H100_REFERENCE}
    check = Check(out, Budget(plan.budget_s), info)
    logger.info("device %s, torch %s; %s; sites from %s", info["device"], torch.__version__, xgb_note,
                info["site_source"])
    if check.stage("synth", lambda: write_sites(plan, work)) is None:
        return check
    config = compare_config(plan, work, device, xgb)
    dataset = prepare_dataset(config)
    crops = check.stage("crops", lambda: cut_crops(plan, config, dataset))
    inputs = {"sites": lambda: site_dataset(plan, dataset, plan.steps * plan.batch_size)}
    if crops is not None:
        inputs["crops"] = lambda: crop_dataset(plan, crops["_cache"], dataset, plan.steps * plan.batch_size)
    for compiled in (False, True):
        mode = "compiled" if compiled else "eager"
        for name, make in inputs.items():
            if compiled and device.type != "cuda":
                check.skip("throughput", "torch.compile runs on CUDA only here (as deep.train.fit_model "
                           "and deep_bench compile only there)", input=name, mode=mode)
                continue
            check.stage("throughput", lambda: throughput(plan, make(), device, compiled=compiled,
                                                         workers=workers),
                        need_s=plan.compile_need_s if compiled else 0.0, input=name, mode=mode)
    missing = [m for m in COMPARE_NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        check.skip("compare", f"missing modules {missing}: carry their wheels (cp-measure, centrosome, "
                   "mahotas, imagecodecs; see /work/notes/31.md)")
    else:
        check.stage("compare", lambda: compare(config), need_s=plan.compare_need_s)
    check.skip("svm_gpu", "not done: classical/scale.py's one-vs-rest L-BFGS is not ported to torch; "
               "the svm runs on the CPU")
    return check


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _row(s: dict) -> str:
    """One throughput stage as a table row."""
    if s["status"] != "ok":
        return f"| {s['input']} | {s['mode']} | {s['status']}: {s.get('reason') or s.get('error')} | | | | | |"
    channels, side = s["input_shape"][0], s["input_shape"][1]
    mem = s["max_memory_allocated_mib"]
    mem = mem if isinstance(mem, str) else f"{mem['end_to_end']:.0f} / {mem['ceiling']:.0f}"
    util = " / ".join(u if isinstance(u, str) else f"{u:.0f} %"
                      for u in (s["gpu_util_end_to_end"], s["gpu_util_ceiling"]))
    ref = f"{H100_REFERENCE[s['mode']]:,.0f}" if s["input"] == "sites" else ""
    return (f"| {s['input']} {channels}×{side}², batch {s['batch_size']} | {s['mode']} "
            f"| {s['end_to_end_img_s']:,.1f} | {s['ceiling_img_s']:,.1f} | {100 * s['ratio']:.0f} % "
            f"| {util} | {mem} | {s['workers']} | {ref} |")


def markdown(check: Check) -> str:
    """A block for ``benchmarks/RESULTS.md``: throughput rows, ratio vs goal, compare stage times."""
    info = check.info
    label = "SMOKE RUN on CPU at tiny sizes, not GPU figures" if info["smoke"] else "device run"
    lines = [f"`benchmarks/gpu_check.py{' --smoke' if info['smoke'] else ''}` ({label}), "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {info['device']}, torch {info['torch']} "
             f"(CUDA {info['cuda']}), sites from {info['site_source']}; {info['xgboost']}.", "",
             "| input | mode | end to end img/s | ceiling img/s | ratio (goal 60 %) | GPU util e2e / ceiling "
             "| max memory MiB e2e / ceiling | workers | H100 ref img/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [_row(s) for s in check.stages if s["stage"] == "throughput"]
    lines.append("")
    for s in check.stages:
        if s["stage"] == "compare" and s["status"] == "ok":
            models = ", ".join(f"{k} {v['accuracy']:.3f} (fit {v['fit_s']:.1f} s)" for k, v in s["models"].items())
            times = ", ".join(f"{k} {v:.1f} s" for k, v in s["stage_seconds"].items() if v is not None)
            lines.append(f"- `compare`: {s['sites']} sites, {s['classes']} classes, {s['folds']} plate-held-out "
                         f"folds; accuracy {models}; stage times {times}.")
        elif s["stage"] != "throughput":
            why = f": {s.get('reason') or s.get('error')}" if s["status"] != "ok" else ""
            lines.append(f"- `{s['stage']}` {s['status']} ({s.get('seconds', 0)} s){why}")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes (CI)")
    parser.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None,
                        help="results folder (default: $OUT)")
    parser.add_argument("--work", type=Path, default=None,
                        help="data and run folder (default: a temporary folder, removed at the end)")
    parser.add_argument("--budget-s", type=float, default=None, help="wall-clock budget (full 450, smoke 110)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers (default: the project's, min(8, cpus) on CUDA, 0 on CPU)")
    args = parser.parse_args(argv)
    if args.out is None:
        parser.error("--out is required when $OUT is not set")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    if args.budget_s is not None:
        plan = dataclasses.replace(plan, budget_s=args.budget_s)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        handlers=[logging.StreamHandler(), logging.FileHandler(args.out / "gpu_check.log")])
    device = torch.device("cpu") if args.smoke else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.smoke:
        logger.warning("no CUDA device: the full plan runs on the CPU (hours); use --smoke for a check")
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        check = run_check(plan, args.out, work, workers=args.workers, device=device)
        for stage in check.stages:
            if stage["stage"] == "compare" and stage["status"] == "ok":
                for name in ("report.html", "metrics.json"):
                    shutil.copyfile(Path(stage["results"]) / name, args.out / name)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    text = markdown(check)
    (args.out / "gpu_check.md").write_text(text)
    print(text)
    failed = [f"{s['stage']} {s.get('input', '')} {s.get('mode', '')}".strip()
              for s in check.stages if s["status"] == "failed"]
    if failed:
        logger.error("failed stages: %s", failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
