"""Request counts and latencies in the Prometheus text format, kept by a small ASGI middleware.

Each worker process counts the requests it answered (a server started with several workers has several
sets; each sample is labelled with its worker's process id, so a scraper can add them up). The route label
is the route's template ("/v1/predict"), never the raw path, so unknown paths cannot grow the label set;
they count as "other". Written by hand: the format is a few lines of text.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Metrics", "MetricsMiddleware"]

# Upper bounds of the latency histogram's buckets, in seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Counters of requests by (method, route, status) and a latency histogram by route."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.digits: dict[str, int] = defaultdict(int)  # digits read, by route
        self.started = time.time()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1
            counts = self.buckets[route]
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            self.sums[route] += seconds
            self.counts[route] += 1

    def count_digits(self, route: str, n: int) -> None:
        with self._lock:
            self.digits[route] += n

    def render(self) -> str:
        """Everything counted so far, as Prometheus text (version 0.0.4)."""
        pid = os.getpid()
        lines = [
            "# HELP digits_http_requests_total Requests answered, by method, route and status.",
            "# TYPE digits_http_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), n in sorted(self.requests.items()):
                labels = f'method="{method}",route="{route}",status="{status}",pid="{pid}"'
                lines.append(f"digits_http_requests_total{{{labels}}} {n}")
            lines += [
                "# HELP digits_http_request_duration_seconds Time from a request's arrival to its answer's end.",
                "# TYPE digits_http_request_duration_seconds histogram",
            ]
            for route in sorted(self.buckets):
                for bound, n in zip(BUCKETS, self.buckets[route]):
                    lines.append(
                        f'digits_http_request_duration_seconds_bucket{{route="{route}",le="{bound:g}",pid="{pid}"}} {n}'
                    )
                labels = f'route="{route}",pid="{pid}"'
                lines.append(
                    f'digits_http_request_duration_seconds_bucket{{route="{route}",le="+Inf",pid="{pid}"}} '
                    f"{self.counts[route]}"
                )
                lines.append(f"digits_http_request_duration_seconds_sum{{{labels}}} {self.sums[route]:.6f}")
                lines.append(f"digits_http_request_duration_seconds_count{{{labels}}} {self.counts[route]}")
            lines += [
                "# HELP digits_digits_read_total Digits the model read, by route.",
                "# TYPE digits_digits_read_total counter",
            ]
            for route, n in sorted(self.digits.items()):
                lines.append(f'digits_digits_read_total{{route="{route}",pid="{pid}"}} {n}')
        lines += [
            "# HELP digits_process_start_time_seconds When this worker started, in seconds since the epoch.",
            "# TYPE digits_process_start_time_seconds gauge",
            f'digits_process_start_time_seconds{{pid="{pid}"}} {self.started:.3f}',
        ]
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """Times every HTTP request from its arrival to the end of its answer and counts it by route and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app fails before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.observe(scope["method"], _route(scope), status, time.perf_counter() - start)


def _route(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return "/static" if scope.get("path", "").startswith("/static/") else "other"
