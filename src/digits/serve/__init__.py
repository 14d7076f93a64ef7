"""Serving digits over HTTP: the API and the drawing page, on the Recognizer and nothing else.

    digits serve --port 8000 --workers 2 --store corrections/

    settings.py   ServeConfig and Limits: where it listens, the model, workers and threads, what it accepts
    bodies.py     a request's body within its size limit, and the pictures in it (upload, raw, JSON base64)
    metrics.py    request counts and latencies in the Prometheus text format
    app.py        create_app(): the routes, the errors as JSON, the work on a thread pool within a time limit
    server.py     run(): uvicorn with N worker processes, each loading the model once
    adapting.py   Adapter: `digits adapt` in a process of its own after every N corrections (--adapt-every)
    static/       the drawing page (HTML, CSS, JavaScript; no CDN)

Imports only :mod:`digits.reading`, :mod:`digits.spec`, :mod:`digits.errors`, :mod:`digits.files` and
:mod:`digits.corrections` of digits (tests/test_layout.py checks it): no training code, no MNIST, and no torch
on the onnxruntime path. Importing this package imports nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from digits._lazy import lazy_exports

__all__ = ["Limits", "ServeConfig", "create_app", "run"]

_HOMES = {
    "Limits": "digits.serve.settings",
    "ServeConfig": "digits.serve.settings",
    "create_app": "digits.serve.app",
    "run": "digits.serve.server",
}

if TYPE_CHECKING:
    from digits.serve.app import create_app
    from digits.serve.server import run
    from digits.serve.settings import Limits, ServeConfig

__getattr__ = lazy_exports(__name__, _HOMES)
