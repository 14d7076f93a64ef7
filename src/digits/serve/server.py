"""Run the app under uvicorn: ``run(ServeConfig(...))``, what ``digits serve`` calls.

One worker is uvicorn in this process. Several are processes of their own, each listening on its own socket
bound to the same address with SO_REUSEPORT, so that the kernel deals the connections out among them.
(uvicorn's own workers share one listening socket, and whichever wakes first takes a whole burst of
connections: under load with keep-alive clients, one worker did all the work while the other sat idle.) The
kernel deals by a hash, not in turn, so a worker holding more than its share of the open connections closes
some (``balanced_protocol``) until the workers hold equal shares.
Each worker builds the app from the same config and loads the model once, in the app's start-up; a worker
that dies is started again. What the server will accept is printed before it starts.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import multiprocessing
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from digits.errors import ConfigError, DigitsError
from digits.serve.settings import ServeConfig

__all__ = ["app_from_environment", "run", "startup_lines"]

CONFIG_VARIABLE = "DIGITS_SERVE_CONFIG"
STARTUP_FAILURE = 3  # uvicorn's exit status for an app that failed to start
log = logging.getLogger("digits.serve")


def app_from_environment() -> Any:
    """The app of one worker process, from the config ``run`` put in the environment (uvicorn's factory, used
    for several workers where SO_REUSEPORT does not exist)."""
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
    if config.adapt_every:
        lines.append(
            f"  adapting: after every {config.adapt_every} new corrections; the accepted model is "
            f"{config.store}/models/current"
        )
    if not _is_loopback(config.host):
        lines.append(f"  note: listening on {config.host}, so other machines can reach it; there is no authentication")
    return lines


def _options(config: ServeConfig, log_level: str, access_log: bool) -> dict[str, Any]:
    return {
        "host": config.host,
        "port": config.port,
        "log_level": log_level,
        "access_log": access_log,
        "timeout_keep_alive": 5,
        "backlog": 2048,
        # A timed-out request answers at once; what is still running is dropped at shutdown after this long.
        "timeout_graceful_shutdown": max(1, int(config.limits.timeout_s)),
    }


def run(config: ServeConfig, *, out: TextIO = sys.stdout, log_level: str = "info", access_log: bool = False) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM) with ``config.workers`` worker processes."""
    import uvicorn

    from digits.reading import find_model

    find_model(config.model, config.backend)  # a model that is not there is an error now, not in every worker
    if config.workers > 1 and hasattr(socket, "SO_REUSEPORT"):
        placeholder = _reuse_port_socket(config.host, config.port)  # holds the port; finds one for port 0
        try:
            if config.port == 0:
                config = dataclasses.replace(config, port=_port(placeholder))
            _print(startup_lines(config), out)
            _supervise(config, _options(config, log_level, access_log))
        finally:
            placeholder.close()
        return
    _print(startup_lines(config), out)
    if config.workers == 1:
        from digits.serve.app import create_app

        uvicorn.run(create_app(config=config), **_options(config, log_level, access_log))
        return
    os.environ[CONFIG_VARIABLE] = config.to_json()
    options = _options(config, log_level, access_log)
    uvicorn.run("digits.serve.server:app_from_environment", factory=True, workers=config.workers, **options)


def _print(lines: list[str], out: TextIO) -> None:
    for line in lines:
        print(line, file=out, flush=True)


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) that other sockets of this user may bind too (SO_REUSEPORT); not yet
    listening: uvicorn listens once its worker's app has started, so no connection waits on a loading model."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise ConfigError(f"cannot listen on {host!r}: {e}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}); is another server there? Use --port") from e
    return sock


def _port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def _worker(config_json: str, options: dict[str, Any], connections: Any, index: int) -> None:
    """One worker process: its own socket on the shared port, the app, uvicorn until SIGTERM or SIGINT.
    ``connections``: every worker's count of open connections (shared memory); this one is ``index``."""
    import uvicorn

    from digits.serve.app import create_app

    config = ServeConfig.from_json(config_json)
    sock = _reuse_port_socket(config.host, config.port)
    http = balanced_protocol(connections, index)
    uvicorn.Server(uvicorn.Config(create_app(config=config), http=http, **options)).run(sockets=[sock])


def over_share(own: int, counts: Sequence[int]) -> bool:
    """Does a worker holding ``own`` open connections hold more than its share of all of them (``counts``, a
    number per worker, its own included)?"""
    return own > math.ceil(sum(counts) / len(counts))


def balanced_protocol(connections: Any, index: int) -> Any:
    """uvicorn's HTTP protocol (httptools) for worker ``index``, which keeps its share of the connections.

    The kernel deals new connections out among the workers' sockets by a hash, so 32 keep-alive clients
    may come as 19 to one worker and 13 to the other, and the first one's clients wait half as long
    again for every answer. A worker that holds more than its share of all the workers' open connections
    (``connections``, one count each, in shared memory) answers the next request on one with
    ``Connection: close``; the client connects again and the kernel deals that one out afresh.
    Without httptools: "auto", uvicorn's own choice, unbalanced.
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    leaving: set[Any] = set()  # connections told to close whose end has not come yet: no longer counted

    def publish(protocol: Any) -> int:
        held = len(protocol.connections) - len(leaving & protocol.connections)
        connections[index] = held
        return held

    class Balanced(HttpToolsProtocol):  # type: ignore[misc]
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            publish(self)

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            leaving.discard(self)
            publish(self)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            if self.cycle is None or self in leaving:
                return
            if over_share(publish(self), connections[:]):
                self.cycle.keep_alive = False  # this answer says Connection: close
                leaving.add(self)
                publish(self)

    return Balanced


def _supervise(config: ServeConfig, options: dict[str, Any]) -> None:
    """Start the workers, start again one that dies, stop them all on SIGINT or SIGTERM."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no state copied from this one
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}

    connections = context.RawArray("i", config.workers)  # each worker's open connections

    def start(i: int) -> Any:
        connections[i] = 0
        process = context.Process(
            target=_worker, args=(config.to_json(), options, connections, i), name=f"digits-serve-{i}"
        )
        process.start()
        return process

    workers = [start(i) for i in range(config.workers)]
    failed = False
    try:
        while not stop.wait(0.5):
            for i, process in enumerate(workers):
                if process.is_alive():
                    continue
                if process.exitcode == STARTUP_FAILURE:
                    failed = True
                    stop.set()
                    break
                log.warning("worker %d (process %d) stopped with %s; starting again", i, process.pid, process.exitcode)
                workers[i] = start(i)
    finally:
        for process in workers:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes what it is answering, then stops
        for process in workers:
            process.join(timeout=float(options["timeout_graceful_shutdown"]) + 5)
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed:
        raise DigitsError("a worker could not start the app (see its error above); the server stopped")


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
