"""FastAPI service: ``POST /predict``, ``POST /predict/batch``, ``GET /health``, ``GET /model``.

Resources are bounded per request and in total: the body is counted while it streams (a
chunked upload without Content-Length cannot get past ``max_bytes``), an image's declared
pixels are checked from its header before decoding (``max_pixels``), a batch decodes one
image at a time and keeps only its model input, and at most ``workers`` predictions (single
or batch) run at once; a request beyond that gets 503 with ``Retry-After`` at once instead of
queueing memory. The stated bound, whatever the number of clients: the warm server (about
355 MB for a classical model, which imports no torch, once a first request has loaded the
feature kernels), plus at most 32 bytes per decoded pixel value for each running prediction
(512 MiB for a 4096² single-channel upload; a batch holds one image at a time), plus up to
100 MB the allocator keeps of freed buffers: 1.48 GB for 2 workers at 4096².
``benchmarks/serve_bench.py`` measures it (benchmarks/RESULTS.md).

With a token (``token=``), every route but ``/health`` needs ``Authorization: Bearer``
(``serve.access``); ``/docs`` and ``/openapi.json`` exist only with ``docs=True``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from cellcompare.serve.access import BearerToken
from cellcompare.serve.errors import InputSpecError, ServeError
from cellcompare.serve.model_dir import InputSpec
from cellcompare.serve.normalization import MIN_PLATE_IMAGES
from cellcompare.serve.predictor import Outcome, check_shape, load_predictor, top_pairs

logger = logging.getLogger(__name__)
#: Default most pixel values (C x H x W) one upload may declare: 4096 x 4096 x 1.
DEFAULT_MAX_PIXELS = 4096 * 4096
#: Default most files of one ``/predict/batch`` request (an RxRx1 plate holds 308 wells x 2 sites).
DEFAULT_MAX_FILES = 1024


def _decode(data: bytes, spec: InputSpec, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode uploaded bytes (PNG/JPEG/TIFF, multi-page/multi-channel) to ``(C, H, W)``.

    The header is probed first so that an image over ``spec``'s size or channel limits, or
    over ``max_pixels``, is refused before its pixels are decoded.
    """
    from cellcompare.datasets.imageio import check_pixel_limit, probe_image, read_image
    suffix = ".tif" if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+") else ".png"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"  # the client's file name never touches the disk
        path.write_bytes(data)
        del data
        try:
            shape, _ = probe_image(path)
            check_shape(shape, spec, "upload")
            try:
                check_pixel_limit(shape, "upload", max_pixels)
            except ValueError as exc:
                raise InputSpecError(str(exc).replace("raise dataset.options.max_pixels",
                                                      "the server's --max-pixels")) from exc
            return read_image(path, max_pixels=None)
        except ServeError:
            raise
        except Exception as exc:  # decoders raise many types; hide the server's temp path
            raise UploadError(str(exc).replace(str(path), "upload")) from exc


class UploadError(ValueError):
    """The upload is not a decodable image."""


class EmptyUploadError(ValueError):
    """The upload has no bytes."""


def status_of(error: Exception) -> tuple[int, str]:
    """HTTP status and message for an image's error (:class:`serve.predictor.Outcome`)."""
    if isinstance(error, EmptyUploadError):
        return 400, str(error)
    if isinstance(error, UploadError):
        return 415, f"not a readable image: {error}"
    if isinstance(error, ServeError):
        return 422, str(error)
    return 422, f"cannot predict this image: {type(error).__name__}: {error}"


class BodyLimit:
    """ASGI middleware: 413 when the request body exceeds ``max_bytes``.

    A declared Content-Length over the limit is refused before anything is read; otherwise
    the bytes are counted as they arrive, so a chunked upload is cut off at the limit.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            response = JSONResponse({"detail": f"request of {length.decode(errors='replace')} "
                                               f"bytes exceeds limit {self.max_bytes}"}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # raised inside the route: FastAPI answers 413
                    raise HTTPException(413, f"request body exceeds limit {self.max_bytes} bytes")
            return message

        await self.app(scope, counted, send)


def _answer(outcome: Outcome, classes: tuple[str, ...], top: int) -> dict[str, Any]:
    """The JSON of one predicted image (``outcome.error`` is None)."""
    return {"top": [{"class": c, "probability": p}
                    for c, p in top_pairs(classes, outcome.proba[None], top)[0]],
            "shape": list(outcome.shape), "normalization": outcome.normalization.to_dict()}


def create_app(model_dir: str | Path, *, max_bytes: int = 64 * 2**20, k: int = 3,
               max_pixels: int | None = DEFAULT_MAX_PIXELS, workers: int | None = None,
               token: str | None = None, docs: bool = False, max_files: int = DEFAULT_MAX_FILES,
               min_plate_images: int = MIN_PLATE_IMAGES, device: str = "cpu") -> FastAPI:
    """Build the app; the model is loaded once in the lifespan.

    Parameters
    ----------
    model_dir : str or Path
        A MODEL_DIR written by :func:`serve.export_model`.
    max_bytes : int
        Largest request body (413 above it, counted while streaming).
    k : int
        Default number of classes returned.
    max_pixels : int or None
        Largest image (C x H x W pixel values declared in its header; 422 above it).
    workers : int, optional
        Predictions running at once (default: the CPU cores available); 503 when all are busy.
    token : str, optional
        Bearer token required on every route but ``/health`` (401 without it).
    docs : bool
        Serve ``/docs``, ``/redoc`` and ``/openapi.json``.
    max_files : int
        Most files of one ``/predict/batch`` request (413 above it).
    min_plate_images : int
        Fewest images of an unseen plate in a batch normalised by their own statistics
        (``serve.normalization``).
    device : str
        Where a deep model's network runs (``cpu``, ``cuda``, ``auto``).
    """
    state: dict[str, Any] = {}
    workers = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else os.cpu_count() or 1)
    slots = threading.BoundedSemaphore(workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["predictor"] = load_predictor(model_dir, device=device)
        yield
        state.clear()

    app = FastAPI(title="cellcompare serve", lifespan=lifespan, docs_url="/docs" if docs else None,
                  redoc_url="/redoc" if docs else None, openapi_url="/openapi.json" if docs else None)
    app.add_middleware(BodyLimit, max_bytes=max_bytes)
    if token is not None:
        app.add_middleware(BearerToken, token=token)  # added last: runs first

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model")
    async def model() -> dict[str, Any]:
        p = state["predictor"]
        return {"kind": p.meta["kind"], "classes": list(p.classes), "input": p.input_spec.to_dict(),
                "version": p.meta.get("version"), "created": p.meta.get("created"),
                "normalization": p.normalization_info()}

    def _loader(upload: UploadFile, position: int):
        def load():
            from cellcompare.datasets import Sample
            upload.file.seek(0)
            data = upload.file.read()
            if not data:
                raise EmptyUploadError("empty upload")
            return Sample(id=f"upload{position}", image=_decode(data, state["predictor"].input_spec,
                                                                max_pixels))
        return load

    def _predict(uploads: list[UploadFile], group: str | None) -> list[Outcome]:
        items = [(u.filename or f"file{i}", _loader(u, i)) for i, u in enumerate(uploads)]
        return state["predictor"].predict_batch(items, group=group, min_plate_images=min_plate_images)

    async def _run(uploads: list[UploadFile], group: str | None) -> list[Outcome]:
        if not slots.acquire(blocking=False):  # before any upload is read
            raise HTTPException(503, f"all {workers} prediction workers are busy; retry later",
                                headers={"Retry-After": "1"})
        try:  # the thread cannot be abandoned, so the slot is held until the work is done
            return await run_in_threadpool(_predict, uploads, group or None)
        finally:
            slots.release()

    @app.post("/predict")
    async def predict(file: UploadFile = File(...), group: str | None = Form(None),
                      top: int = k) -> dict[str, Any]:
        """Top classes of one image; ``group`` names its plate (else reference statistics)."""
        outcome = (await _run([file], group))[0]
        if outcome.error is not None:
            status, detail = status_of(outcome.error)
            raise HTTPException(status, detail)
        return _answer(outcome, state["predictor"].classes, max(1, top))

    @app.post("/predict/batch")
    async def predict_batch(files: list[UploadFile] = File(...), group: str | None = Form(None),
                            top: int = k) -> dict[str, Any]:
        """Top classes of each image of one plate, normalised together (``serve.normalization``).

        Each result names its file; a file that cannot be predicted gets its own status and
        detail while the others are answered. 422 when none could be.
        """
        if len(files) > max_files:
            raise HTTPException(413, f"batch of {len(files)} files exceeds limit {max_files}")
        outcomes = await _run(files, group)
        results = []
        for outcome in outcomes:
            if outcome.error is None:
                results.append({"file": outcome.name, "status": 200,
                                **_answer(outcome, state["predictor"].classes, max(1, top))})
            else:
                status, detail = status_of(outcome.error)
                results.append({"file": outcome.name, "status": status, "detail": detail})
        failed = [r for r in results if r["status"] != 200]
        if len(failed) == len(results):
            raise HTTPException(422, "no file of the batch could be predicted: " +
                                "; ".join(f"{r['file']}: {r['detail']}" for r in failed))
        return {"group": group or None, "n_files": len(results), "n_failed": len(failed),
                "results": results}

    return app
