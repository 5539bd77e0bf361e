"""FastAPI service: ``POST /predict``, ``GET /health``, ``GET /model``.

Resources are bounded per request and in total: the body is counted while it streams (a
chunked upload without Content-Length cannot get past ``max_bytes``), an image's declared
pixels are checked from its header before decoding (``max_pixels``), and at most ``workers``
predictions run at once; a request beyond that gets 503 at once instead of queueing memory.
So the server's memory is about its baseline plus ``workers`` times the cost of one image of
``max_pixels``, whatever the number of clients.
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
from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from cellcompare.serve.errors import InputSpecError, ServeError
from cellcompare.serve.model_dir import InputSpec
from cellcompare.serve.predictor import check_shape, load_predictor, top_pairs

logger = logging.getLogger(__name__)
#: Default most pixel values (C x H x W) one upload may declare: 4096 x 4096 x 1.
DEFAULT_MAX_PIXELS = 4096 * 4096


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


def create_app(model_dir: str | Path, *, max_bytes: int = 64 * 2**20, k: int = 3,
               max_pixels: int | None = DEFAULT_MAX_PIXELS, workers: int | None = None) -> FastAPI:
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
    """
    state: dict[str, Any] = {}
    workers = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else os.cpu_count() or 1)
    slots = threading.BoundedSemaphore(workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["predictor"] = load_predictor(model_dir)
        yield
        state.clear()

    app = FastAPI(title="cellcompare serve", lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=max_bytes)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model")
    async def model() -> dict[str, Any]:
        p = state["predictor"]
        return {"kind": p.meta["kind"], "classes": list(p.classes), "input": p.input_spec.to_dict(),
                "version": p.meta.get("version"), "created": p.meta.get("created")}

    def _predict(data: bytes, top: int) -> dict[str, Any]:
        from cellcompare.datasets import Sample
        image = _decode(data, state["predictor"].input_spec, max_pixels)
        classes, proba = state["predictor"].predict_proba([Sample(id="upload", image=image)])
        return {"top": [{"class": c, "probability": p} for c, p in top_pairs(classes, proba, top)[0]],
                "shape": list(image.shape)}

    @app.post("/predict")
    async def predict(file: UploadFile = File(...), top: int = k) -> dict[str, Any]:
        data = await file.read()
        if len(data) > max_bytes:
            raise HTTPException(413, f"upload of {len(data)} bytes exceeds limit {max_bytes}")
        if not data:
            raise HTTPException(400, "empty upload")
        if not slots.acquire(blocking=False):
            raise HTTPException(503, f"all {workers} prediction workers are busy; retry later",
                                headers={"Retry-After": "1"})
        try:  # the thread cannot be abandoned, so the slot is held until the work is done
            return await run_in_threadpool(_predict, data, max(1, top))
        except ServeError as exc:
            raise HTTPException(422, str(exc)) from exc
        except UploadError as exc:
            raise HTTPException(415, f"not a readable image: {exc}") from exc
        except ValueError as exc:  # the model cannot use this image (e.g. nothing to measure)
            logger.warning("cannot predict upload: %s", exc)
            raise HTTPException(422, f"cannot predict this image: {type(exc).__name__}: {exc}") from exc
        finally:
            slots.release()

    return app
