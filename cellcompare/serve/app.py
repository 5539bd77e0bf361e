"""FastAPI service: ``POST /predict``, ``GET /health``, ``GET /model``."""

from __future__ import annotations

import logging
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from cellcompare.serve.errors import ServeError
from cellcompare.serve.model_dir import InputSpec
from cellcompare.serve.predictor import check_shape, load_predictor, top_pairs

logger = logging.getLogger(__name__)


def _decode(data: bytes, spec: InputSpec) -> np.ndarray:
    """Decode uploaded bytes (PNG/JPEG/TIFF, multi-page/multi-channel) to ``(C, H, W)``.

    The header is probed first so that an image over ``spec``'s size or channel limits is
    refused before its pixels are decoded.
    """
    from cellcompare.datasets.imageio import probe_image, read_image
    suffix = ".tif" if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+") else ".png"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"  # the client's file name never touches the disk
        path.write_bytes(data)
        try:
            shape, _ = probe_image(path)
            check_shape(shape, spec, "upload")
            return read_image(path)
        except ServeError:
            raise
        except Exception as exc:  # decoders raise many types; hide the server's temp path
            raise UploadError(str(exc).replace(str(path), "upload")) from exc


class UploadError(ValueError):
    """The upload is not a decodable image."""


def create_app(model_dir: str | Path, *, max_bytes: int = 64 * 2**20, k: int = 3) -> FastAPI:
    """Build the app; the model is loaded once in the lifespan."""
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["predictor"] = load_predictor(model_dir)
        yield
        state.clear()

    app = FastAPI(title="cellcompare serve", lifespan=lifespan)

    @app.middleware("http")
    async def limit_size(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and int(length) > max_bytes:
            return JSONResponse({"detail": f"request of {length} bytes exceeds limit {max_bytes}"},
                                status_code=413)
        return await call_next(request)

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
        image = _decode(data, state["predictor"].input_spec)
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
        try:
            return await run_in_threadpool(_predict, data, max(1, top))
        except ServeError as exc:
            raise HTTPException(422, str(exc)) from exc
        except UploadError as exc:
            raise HTTPException(415, f"not a readable image: {exc}") from exc

    return app
