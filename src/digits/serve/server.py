"""Run the app under uvicorn: ``run(ServeConfig(...))``, what ``digits serve`` calls.

Each worker is a process of its own that builds the app from the same config (passed to it as JSON in an
environment variable, the way uvicorn's workers are told anything) and loads the model once, in the app's
start-up. What the server will accept is printed before it starts.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any, TextIO

from digits.serve.settings import ServeConfig

__all__ = ["app_from_environment", "run", "startup_lines"]

CONFIG_VARIABLE = "DIGITS_SERVE_CONFIG"


def app_from_environment() -> Any:
    """The app of one worker process, from the config ``run`` put in the environment (uvicorn's factory)."""
    from digits.serve.app import create_app

    text = os.environ.get(CONFIG_VARIABLE)
    return create_app(config=ServeConfig.from_json(text) if text else ServeConfig())


def startup_lines(config: ServeConfig) -> list[str]:
    """What the server says before it starts: where, which model, how many workers, its limits, corrections."""
    url = f"http://{_url_host(config.host)}:{config.port}"
    lines = [
        f"digits serve: the drawing page at {url}/ and the API under {url}/v1 (described at {url}/docs)",
        f"  model: {config.model or 'the shipped model'} (backend {config.backend}, threshold {config.threshold:g})",
        f"  workers: {config.workers}, {config.worker_threads} inference thread(s) each",
        f"  limits: {config.limits.describe()}",
        "  corrections: "
        + (f"kept in {config.store}" if config.store else "off (start with --store DIR to keep them)"),
    ]
    if not _is_loopback(config.host):
        lines.append(f"  note: listening on {config.host}, so other machines can reach it; there is no authentication")
    return lines


def run(config: ServeConfig, *, out: TextIO = sys.stdout, log_level: str = "info", access_log: bool = False) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM): uvicorn with ``config.workers`` processes."""
    import uvicorn

    for line in startup_lines(config):
        print(line, file=out, flush=True)
    os.environ[CONFIG_VARIABLE] = config.to_json()
    uvicorn.run(
        "digits.serve.server:app_from_environment",
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers,
        log_level=log_level,
        access_log=access_log,
        timeout_keep_alive=5,
        backlog=2048,
        # A timed-out request answers at once; what is still running is dropped at shutdown after this long.
        timeout_graceful_shutdown=max(1, int(config.limits.timeout_s)),
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host
