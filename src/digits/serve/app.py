"""The HTTP API and the drawing page, on one :class:`~digits.reading.Recognizer`: ``create_app(...)``.

    POST /v1/predict         one digit: a file upload, the picture as the body, or JSON {"image": base64 or
                             a canvas's data URL}; the fields of ``digits predict --json`` and the 28x28 the
                             model saw (``image28``, a base64 PNG)
    POST /v1/read            every digit of a picture: the fields of ``digits read --json``
    POST /v1/predict/batch   many pictures in one multipart upload; ``?prepared=true`` for 28x28 digits that
                             already look like MNIST's (the model only, as ``Recognizer.classify``)
    GET|POST /v1/corrections whether corrections are kept; keep one ("it is a 7") in the --store folder
    GET  /v1/model           the model: name, accuracy, the checksums of the data it learned from
    GET  /healthz, /readyz   alive; the model loaded and warmed
    GET  /metrics            Prometheus text: requests by route and status, latency histogram
    GET  /docs               the routes, rendered from /openapi.json;  GET /  the drawing page

Every picture goes through the Recognizer's one pipeline (:mod:`digits.reading`); the answers are built by the
same ``to_dict`` as the command line's ``--json``. The work runs on a small thread pool, never on the event
loop, and within the request's time limit. Every failure is JSON ``{"error": {"code", "message"}}`` with a
4xx status that says whose it is; no input makes the server answer 500, nor stop serving.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from digits.corrections import CorrectionStore
from digits.errors import DigitsError, ImageError, WriteError
from digits.reading import FileResult, Recognizer, load_image
from digits.serve.adapting import Adapter
from digits.serve.bodies import ApiError, Part, image_parts, read_body, single_image
from digits.serve.metrics import Metrics, MetricsMiddleware
from digits.serve.settings import ServeConfig
from digits.spec import IMAGE_SIZE, NUM_CLASSES, PIXEL_SCALE

__all__ = ["create_app"]

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("digits.serve")
# How often a worker that adapts looks whether another model was accepted (or rolled back).
WATCH_S = 1.0
T = TypeVar("T")

_PICTURE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}}}
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "description": "base64, or a data URL (canvas.toDataURL())"}
                    },
                }
            },
        },
    }
}
_TOP_K: dict[str, Any] = {
    "name": "top_k",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 10},
    "description": "also list the k most probable digits (top)",
}
_PICTURE_BODY["parameters"] = [_TOP_K]
_BATCH_BODY: dict[str, Any] = {
    "parameters": [
        _TOP_K,
        {
            "name": "prepared",
            "in": "query",
            "required": False,
            "schema": {"type": "boolean"},
            "description": "the pictures are MNIST-style 28x28 digits already: the model only",
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"images": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                }
            }
        },
    },
}
_CORRECTION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["image", "label"],
                    "properties": {
                        "image": {"type": "string", "description": "base64 or a data URL, as for /v1/predict"},
                        "label": {"type": "integer", "minimum": 0, "maximum": 9},
                        "source": {"type": "string"},
                    },
                }
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}, "label": {"type": "integer"}},
                }
            },
        },
    }
}


class Service:
    """One worker's model, thread pool, correction store and counters, and how a request's work is run."""

    def __init__(self, config: ServeConfig, recognizer: Recognizer | None) -> None:
        self.config = config
        self.limits = config.limits
        self.recognizer = recognizer
        self.ready = False
        self.metrics = Metrics()
        self.executor: ThreadPoolExecutor | None = None
        self.store = CorrectionStore(config.store) if config.store is not None else None
        self.adapter = (
            Adapter(self.store, config.adapt_every, config.model, config.adapt_command)
            if self.store is not None and config.adapt_every
            else None
        )
        self.serving: Path | None = None  # the adapted model in use (None: config.model)
        self.model: dict[str, Any] = {}
        self._stopped = threading.Event()

    def start(self) -> None:
        """Load the model (once for this worker), warm it with one picture, open the thread pool."""
        threads = self.config.worker_threads
        if self.recognizer is None:
            self.serving = self.adapter.serving() if self.adapter is not None else None
            self.recognizer = self._load(self.serving)
        else:
            _warm(self.recognizer)
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="digits-infer")
        self.model = _describe_model(self.recognizer)
        gc.freeze()  # what start-up made lives as long as the worker: later collections need not walk it
        self.ready = True
        log.info("worker %d: %s ready (%d threads)", os.getpid(), self.model.get("name"), threads)
        if self.adapter is not None:
            threading.Thread(target=self._watch, daemon=True, name="digits-watch").start()

    def _load(self, adapted: Path | None) -> Recognizer:
        """The Recognizer of ``adapted`` (else the configured model), warmed with one picture."""
        # One onnxruntime thread a call: the worker's threads run calls side by side, so N workers use
        # N x threads cores, never more.
        recognizer = Recognizer.load(
            str(adapted) if adapted is not None else self.config.model,
            backend=self.config.backend,
            threshold=self.config.threshold,
            find_pages=self.config.find_pages,
            threads=1,
        )
        _warm(recognizer)
        return recognizer

    def _watch(self) -> None:
        """Swap in the model ``STORE/models/current`` leads to whenever it changes (accepted, or rolled back).

        The new model is loaded and warmed here, off the request path; then one assignment replaces the old:
        a request holds the Recognizer it started with to the end, so none is dropped or mixes two models."""
        assert self.adapter is not None
        while not self._stopped.wait(WATCH_S):
            wanted = self.adapter.serving()
            if wanted == self.serving:
                continue
            try:
                recognizer = self._load(wanted)
            except DigitsError as e:  # a model that cannot be loaded is not served; the one in use stays
                log.warning("worker %d: not swapping in %s: %s", os.getpid(), wanted or self.config.model, e)
                self.serving = wanted
                continue
            self.recognizer, self.model, self.serving = recognizer, _describe_model(recognizer), wanted
            log.info("worker %d: now serving %s", os.getpid(), wanted or self.config.model or "the shipped model")

    def stop(self) -> None:
        self.ready = False
        self._stopped.set()
        if self.adapter is not None:
            self.adapter.stop()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, started: float, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` on the thread pool, within what is left of the request's time limit."""
        if self.executor is None:
            raise ApiError(503, "not_ready", "the model is still loading; try again in a moment")
        loop = asyncio.get_running_loop()
        left = self.limits.timeout_s - (loop.time() - started)
        future = loop.run_in_executor(self.executor, work, *args)
        try:
            return await asyncio.wait_for(future, timeout=max(left, 0.0))
        except asyncio.TimeoutError:
            raise ApiError(
                503,
                "timeout",
                f"the request took longer than the limit of {self.limits.timeout_s:g} s; the server is busy or the "
                "picture is very large: try again, or send a smaller picture",
                headers={"Retry-After": "1"},
            ) from None

    async def body(self, request: Request, started: float) -> bytes:
        """The request's body (:func:`read_body`), within the request's time limit."""
        left = self.limits.timeout_s - (asyncio.get_running_loop().time() - started)
        try:
            return await asyncio.wait_for(read_body(request, self.limits.max_body_bytes), max(left, 0.0))
        except asyncio.TimeoutError:
            raise ApiError(
                408, "timeout", f"the request body did not arrive within {self.limits.timeout_s:g} s"
            ) from None

    # -- the work, on the thread pool --------------------------------------------------------------------

    def gray(self, part: Part, notes: list[str] | None = None) -> np.ndarray:
        """The picture decoded by digits.reading (within the pixel limit), or the 4xx that says why it can't be;
        what the user should know of how it was read (only a GIF's first frame) is added to ``notes``."""
        if not part.data:
            raise ApiError(400, "empty_body", f"{part.name} is empty (0 bytes); send the contents of an image file")
        try:
            return load_image(part.data, max_pixels=self.limits.max_pixels, notes=notes)
        except ImageError as e:
            raise _image_error(e) from None

    @property
    def reader(self) -> Recognizer:
        assert self.recognizer is not None, "the service is started before it answers"
        return self.recognizer

    def predict(self, request: Request, body: bytes, top_k: int | None) -> dict[str, Any]:
        part = single_image(request, body)
        notes: list[str] = []
        prediction = self.reader.predict(self.gray(part, notes))
        self.metrics.count_digits("/v1/predict", prediction.digit is not None)
        answer = FileResult(part.name, prediction, notes=tuple(notes)).to_dict(top_k)
        return {**answer, "image28": _png_base64(prediction.image28)}

    def read(self, request: Request, body: bytes) -> dict[str, Any]:
        part = single_image(request, body)
        notes: list[str] = []
        reading = self.reader.read(self.gray(part, notes))
        self.metrics.count_digits("/v1/read", sum(d.digit is not None for d in reading.digits))
        return FileResult(part.name, reading, notes=tuple(notes)).to_dict()

    def batch(self, request: Request, body: bytes, top_k: int | None, prepared: bool) -> dict[str, Any]:
        parts = image_parts(request, body, many=True, limit=self.limits.max_batch)
        if prepared:
            results = self._classify(parts, top_k)
        else:
            pictures: list[Any] = []
            errors: list[str | None] = []
            for part in parts:
                try:
                    pictures.append(self.gray(part))
                    errors.append(None)
                except ApiError as e:
                    pictures.append(None)
                    errors.append(e.message)
            read = iter(self.reader.predict_batch([p for p in pictures if p is not None]))
            results = []
            for part, err in zip(parts, errors):
                done = next(read) if err is None else FileResult(part.name, None, err)
                results.append(FileResult(part.name, done.result, done.error).to_dict(top_k))
        self.metrics.count_digits("/v1/predict/batch", sum(r.get("digit") is not None for r in results))
        return {"results": results}

    def _classify(self, parts: list[Part], top_k: int | None) -> list[dict[str, Any]]:
        """Pictures that are MNIST-style 28x28 digits already (light ink on black, centred): the model only."""
        images: list[np.ndarray] = []
        errors: list[str | None] = []
        for part in parts:
            try:
                gray = self.gray(part)
            except ApiError as e:
                errors.append(e.message)
                continue
            if gray.shape != (IMAGE_SIZE, IMAGE_SIZE):
                h, w = gray.shape
                errors.append(
                    f"a prepared digit is {IMAGE_SIZE}x{IMAGE_SIZE} pixels, this picture is {w}x{h}; "
                    "send it without ?prepared=true to have it found and normalised"
                )
                continue
            images.append(np.rint(gray * np.float32(PIXEL_SCALE)).astype(np.uint8))
            errors.append(None)
        found = iter(self.reader.classify(np.stack(images)) if images else [])
        return [
            (FileResult(part.name, next(found)) if err is None else FileResult(part.name, None, err)).to_dict(top_k)
            for part, err in zip(parts, errors)
        ]

    def correct(self, request: Request, body: bytes) -> dict[str, Any]:
        if self.store is None:
            raise _corrections_off()
        part = single_image(request, body)
        label = _label(part.fields.get("label"))
        prediction = self.reader.predict(self.gray(part))
        if prediction.image28 is None:
            raise ApiError(
                422,
                "no_digit",
                "no digit was found in the picture, so there is nothing to learn from; draw it larger or darker",
            )
        source = part.fields.get("source") or "api"
        try:
            correction = self.store.add(
                part.data,
                prediction.image28,
                label=label,
                predicted=prediction.digit,
                confidence=prediction.confidence,
                source=source[:40],
            )
        except WriteError as e:
            raise ApiError(507, "store_failed", str(e)) from None
        if self.adapter is not None:
            self.adapter.note_correction()
        return correction.to_dict()


def create_app(recognizer: Recognizer | None = None, config: ServeConfig | None = None) -> FastAPI:
    """The API and the page as an ASGI app. ``recognizer``: one already loaded (else ``config.model`` is loaded
    once, when the app starts); ``config``: the limits, threads and correction store (default: ServeConfig())."""
    config = config or ServeConfig()
    service = Service(config, recognizer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        yield
        service.stop()

    from digits import __version__

    app = FastAPI(
        title="digits",
        version=__version__,
        summary="Handwritten digits read from pictures by a convnet trained on MNIST.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's Swagger UI loads from a CDN; /docs below needs nothing from elsewhere
        redoc_url=None,
    )
    app.state.service = service
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)
    _add_error_handlers(app)

    index = (STATIC / "index.html").read_text(encoding="utf-8")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(index)

    docs = (STATIC / "docs.html").read_text(encoding="utf-8")

    @app.get("/docs", include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        return HTMLResponse(docs)

    @app.get("/healthz", summary="The server is alive")
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz", summary="The model is loaded and warmed")
    async def readyz() -> Response:
        if not service.ready:
            raise ApiError(503, "not_ready", "the model is still loading")
        return _json({"status": "ready", "model": service.model.get("name")})

    @app.get("/v1/model", summary="The model: name, version, accuracy, the checksums of its training data")
    async def model() -> Response:
        if not service.ready:
            raise ApiError(503, "not_ready", "the model is still loading")
        return _json(service.model | {"limits": _limits(config), "corrections": service.store is not None})

    @app.post("/v1/predict", summary="The one digit in a picture", openapi_extra=_PICTURE_BODY)
    async def predict(request: Request) -> Response:
        started = asyncio.get_running_loop().time()
        top_k = _int_param(request, "top_k", 1, NUM_CLASSES)
        body = await service.body(request, started)
        return _json(await service.run(started, service.predict, request, body, top_k))

    @app.post(
        "/v1/read",
        summary="Every digit of a picture, and the numbers they make",
        openapi_extra={"requestBody": _PICTURE_BODY["requestBody"]},
    )
    async def read(request: Request) -> Response:
        started = asyncio.get_running_loop().time()
        body = await service.body(request, started)
        return _json(await service.run(started, service.read, request, body))

    @app.post("/v1/predict/batch", summary="One digit in each of many pictures", openapi_extra=_BATCH_BODY)
    async def batch(request: Request) -> Response:
        started = asyncio.get_running_loop().time()
        top_k = _int_param(request, "top_k", 1, NUM_CLASSES)
        prepared = _bool_param(request, "prepared")
        body = await service.body(request, started)
        return _json(await service.run(started, service.batch, request, body, top_k, prepared))

    @app.get("/v1/corrections", summary="Whether this server keeps corrections, and how many it has")
    async def corrections() -> Response:
        if service.store is None:
            return _json({"enabled": False, "count": 0})
        count = await service.run(asyncio.get_running_loop().time(), len, service.store)
        adapter = service.adapter
        adapting = {"adapt_every": adapter.every, "adapting": adapter.running} if adapter is not None else {}
        return _json({"enabled": True, "count": count, **adapting})

    @app.post(
        "/v1/corrections",
        status_code=201,
        summary="Keep a correction: the picture and the digit it really is",
        openapi_extra=_CORRECTION_BODY,
    )
    async def correct(request: Request) -> Response:
        started = asyncio.get_running_loop().time()
        if service.store is None:
            raise _corrections_off()
        body = await service.body(request, started)
        return _json(await service.run(started, service.correct, request, body), status=201)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


# -- answers -------------------------------------------------------------------------------------------------


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")), status_code=status, media_type="application/json", headers=headers
    )


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": {"code": code, "message": message}}, status, headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type"}


def _add_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error(exc.status, exc.code, exc.message, exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "bad_request" if exc.status_code < 500 else "server_error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"there is nothing at {request.url.path}; the API is under /v1 (see /docs)"
        return _error(exc.status_code, code, message, dict(exc.headers or {}))

    async def validation_error(request: Request, exc: Exception) -> Response:
        return _error(400, "bad_request", str(exc))

    async def unexpected(request: Request, exc: Exception) -> Response:
        # A bug in digits, never the client's doing: logged with its traceback, answered without one.
        log.exception("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "server_error", f"the server failed ({type(exc).__name__}); this is a bug in digits")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)


def _image_error(e: ImageError) -> ApiError:
    """The 4xx for a picture digits.reading could not read, told by its kind (its message says the rest)."""
    status, code = _IMAGE_ERRORS.get(e.kind, (422, "corrupt_image"))
    return ApiError(status, code, str(e))


# ImageError.kind -> (status, code); any other kind (corrupt, no pixels at all) is 422 corrupt_image.
_IMAGE_ERRORS = {
    "too_big": (413, "too_many_pixels"),
    "not_an_image": (415, "not_an_image"),
    "unsupported": (415, "unsupported_image"),
}


def _corrections_off() -> ApiError:
    return ApiError(
        403,
        "corrections_off",
        "this server keeps no corrections; start it with `digits serve --store DIR` to keep them in DIR",
    )


def _label(value: str | None) -> int:
    text = (value or "").strip()
    if len(text) != 1 or not text.isdigit():
        raise ApiError(422, "bad_label", f"a correction's label is one digit from 0 to 9, not {value!r}")
    return int(text)


def _int_param(request: Request, name: str, low: int, high: int) -> int | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    if not value.isdigit() or not low <= int(value) <= high:
        raise ApiError(400, "bad_parameter", f"{name} is a whole number from {low} to {high}, not {value!r}")
    return int(value)


def _bool_param(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ApiError(400, "bad_parameter", f"{name} is true or false, not {value!r}")
    return value in ("true", "1", "yes")


def _png_base64(image28: np.ndarray | None) -> str | None:
    """A 28x28 uint8 digit as a base64 PNG (what a browser shows with data:image/png;base64,...)."""
    if image28 is None:
        return None
    ok, png = cv2.imencode(".png", image28)  # half the time of Pillow's encoder on so small a picture
    if not ok:
        raise ValueError(f"could not encode a {image28.dtype} {image28.shape} digit as PNG")
    return base64.b64encode(png.tobytes()).decode("ascii")


def _limits(config: ServeConfig) -> dict[str, Any]:
    limits = config.limits
    return {
        "max_body_bytes": limits.max_body_bytes,
        "max_pixels": limits.max_pixels,
        "max_batch": limits.max_batch,
        "timeout_s": limits.timeout_s,
    }


def _warm(recognizer: Recognizer) -> None:
    """Run the whole pipeline and the model once, so the first request does not pay for their start."""
    one = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    one[4:24, 13:16] = 255  # a 1
    recognizer.predict(one)


def _describe_model(recognizer: Recognizer) -> dict[str, Any]:
    """What /v1/model says: the model's name and options, accuracy, training data checksums, file and version."""
    from digits import __version__

    meta = recognizer.metadata
    source = Path(recognizer.source)
    try:
        digest = hashlib.sha256(source.read_bytes()).hexdigest() if source.is_file() else None
    except OSError:
        digest = None
    return {
        "name": meta.get("model"),
        "version": digest[:12] if digest else None,
        "digits_version": __version__,
        "file": source.name,
        "sha256": digest,
        "backend": recognizer.backend,
        "model_options": meta.get("model_options", {}),
        "test_accuracy": meta.get("test_accuracy"),
        "temperature": recognizer.temperature,
        "threshold": recognizer.threshold,
        "shape_check": recognizer.shapes is not None,
        "int8": bool(meta.get("int8", False)),
        "data_sha256": meta.get("data_sha256"),
        "adapted_from": (meta.get("parent") or {}).get("path"),  # None: not a model adapted to corrections
        "corrections_sha256": meta.get("corrections_sha256"),
    }
