"""Load on `digits serve`: concurrent clients on loopback for a bounded time, good and bad requests mixed.

Starts `digits serve --workers W` on a free loopback port, then runs each phase for ``--duration`` seconds:

* predict:        ``--clients`` (32) clients each POST one 28x28 digit PNG after another to /v1/predict; one
                  request in ten is bad (not an image, empty, wrong content type, malformed JSON, a truncated
                  PNG) and must get its 4xx;
* predict canvas: the same with 280x280 transparent canvas drawings, what the drawing page sends;
* batch:          8 clients POST 64 digit PNGs at a time to /v1/predict/batch (each through the pipeline);
* batch prepared: 8 clients POST 256 MNIST-style 28x28 digits at a time with ?prepared=true (the model only).

Prints a table (requests, good answers and digits a second, p50/p99 latency of the good answers, answers by
status: never a 5xx), the server's memory (RSS of all its processes) over time, and how much CPU the server
and this load generator used: both run on the same cores, so the load generator's share is taken from the
server. The clients are a single asyncio process speaking raw HTTP/1.1 over keep-alive connections, the
lightest client there is; the latency is measured by it, so it includes the time a request waits for a
client to be scheduled.

    python benchmarks/serve_load.py [--duration 60] [--clients 32] [--workers 2] [--phases predict,batch]
                                    [--json benchmarks/results/serve_load.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common import markdown_table, write_json
from digits.testing import scenes

HERE = Path(__file__).resolve().parent
CLOCK = os.sysconf("SC_CLK_TCK")
FONTS = scenes.FONTS


# -- what is sent --------------------------------------------------------------------------------------------------
def request(path: str, body: bytes, content_type: str | None) -> bytes:
    """A raw HTTP/1.1 request, built once and sent many times."""
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    if content_type is not None:
        head.append(f"Content-Type: {content_type}")
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def digit_pngs(count: int, canvas: bool) -> list[bytes]:
    """``count`` digit pictures: 28x28 MNIST-style PNGs (font digits), or 280x280 transparent canvas drawings."""
    out = []
    for i in range(count):
        digit = scenes.font_digit(i % 10, font=FONTS[(i // 10) % len(FONTS)], thickness=10 + 2 * (i % 4))
        out.append(scenes.encode(scenes.rgba_drawing(digit) if canvas else digit))
    return out


def bad_requests(png: bytes) -> list[tuple[bytes, str]]:
    """Bad requests and the status each must get."""
    return [
        (request("/v1/predict", b"this is not a picture", "image/png"), "415"),
        (request("/v1/predict", b"", "image/png"), "400"),
        (request("/v1/predict", png, "text/plain"), "415"),
        (request("/v1/predict", b'{"image": ', "application/json"), "400"),
        (request("/v1/predict", png[: len(png) // 2], "image/png"), "422"),
    ]


def multipart(files: list[bytes], boundary: str = "digitsloadboundary") -> tuple[bytes, str]:
    parts = []
    for i, data in enumerate(files):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{i}.png"\r\n'
            f"Content-Type: image/png\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@dataclass
class Phase:
    name: str
    clients: int
    requests: list[tuple[bytes, str, int]]  # raw request, the status it should get, digits in it
    results: dict[str, Any] = field(default_factory=dict)


def phases(clients: int, chosen: list[str]) -> list[Phase]:
    small, canvas = digit_pngs(100, canvas=False), digit_pngs(100, canvas=True)
    out = []
    for name, pictures in (("predict", small), ("predict canvas", canvas)):
        good = [(request("/v1/predict", p, "image/png"), "200", 1) for p in pictures]
        bad = [(raw, status, 0) for raw, status in bad_requests(pictures[0])]
        mixed = []
        for i, item in enumerate(good):  # one request in ten is bad
            mixed.append(item)
            if i % 9 == 8:
                mixed.append(bad[(i // 9) % len(bad)])
        out.append(Phase(name, clients, mixed))
    batches = []
    for start in range(0, 100, 20):
        body, kind = multipart([small[(start + i) % 100] for i in range(64)])
        batches.append((request("/v1/predict/batch", body, kind), "200", 64))
    out.append(Phase("batch", 8, batches))
    prepared = []
    for start in range(0, 100, 25):
        body, kind = multipart([small[(start + i) % 100] for i in range(256)])
        prepared.append((request("/v1/predict/batch?prepared=true", body, kind), "200", 256))
    out.append(Phase("batch prepared", 8, prepared))
    return [p for p in out if p.name.replace(" ", "-") in chosen]


# -- the clients -------------------------------------------------------------------------------------------------
@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, good answers only
    statuses: Counter = field(default_factory=Counter)
    wrong: Counter = field(default_factory=Counter)  # answers other than the status expected
    digits: int = 0


async def read_response(reader: asyncio.StreamReader) -> tuple[str, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = head[9:12].decode()
    length, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    await reader.readexactly(length)
    return status, close


async def client(port: int, phase: Phase, start: int, until: float, tally: Tally) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = start
    try:
        while time.perf_counter() < until:
            raw, expected, digits = phase.requests[i % len(phase.requests)]
            i += 1
            sent = time.perf_counter()
            writer.write(raw)
            status, close = await read_response(reader)
            took = time.perf_counter() - sent
            tally.statuses[status] += 1
            if status != expected:
                tally.wrong[f"{expected}->{status}"] += 1
            if status == "200":
                tally.latencies.append(took)
                tally.digits += digits
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


# -- the server --------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_tree(root: int) -> list[int]:
    """``root`` and every process under it (uvicorn's supervisor and its workers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
            except (OSError, IndexError):
                continue
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += [child for child, parent in parents.items() if parent == pid]
    return tree


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK  # utime, stime
        except (OSError, IndexError):
            continue
    return total


def start_server(port: int, workers: int, log: Path, model: Path | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "digits.cli", "serve", "--port", str(port), "--workers", str(workers)]
    command += ["--model", str(model)] if model is not None else []
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"digits serve stopped:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200 and len(process_tree(process.pid)) >= (workers + 1 if workers > 1 else 1):
                    time.sleep(1.0)
                    return process
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"digits serve did not become ready:\n{log.read_text()}")


async def run_phase(port: int, phase: Phase, seconds: float, server: int, memory: list[tuple[str, float, float]]):
    tally = Tally()
    pids = process_tree(server)
    cpu_each = {pid: cpu_seconds([pid]) for pid in pids}
    cpu_server, cpu_self, began = cpu_seconds(pids), resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    until = began + seconds
    rng = random.Random(0)
    tasks = [
        asyncio.create_task(client(port, phase, rng.randrange(len(phase.requests)), until, tally))
        for _ in range(phase.clients)
    ]
    while time.perf_counter() < until:
        memory.append((phase.name, time.perf_counter() - began, rss_mb(pids)))
        await asyncio.sleep(min(5.0, max(0.0, until - time.perf_counter())))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - began
    memory.append((phase.name, wall, rss_mb(pids)))
    used = resource.getrusage(resource.RUSAGE_SELF)
    own = used.ru_utime + used.ru_stime - cpu_self.ru_utime - cpu_self.ru_stime
    lat = np.array(tally.latencies) * 1e3
    total = sum(tally.statuses.values())
    phase.results = {
        "phase": phase.name,
        "clients": phase.clients,
        "seconds": round(wall, 1),
        "requests": total,
        "requests_per_s": total / wall,
        "good_per_s": len(lat) / wall,
        "digits_per_s": tally.digits / wall,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
        "statuses": dict(sorted(tally.statuses.items())),
        "unexpected": dict(tally.wrong),
        "server_5xx": sum(n for s, n in tally.statuses.items() if s.startswith("5")),
        "server_cpu_cores": (cpu_seconds(pids) - cpu_server) / wall,
        # each process's share: the workers should share the work (the kernel hands connections to them)
        "server_cpu_cores_by_process": [round((cpu_seconds([pid]) - cpu_each[pid]) / wall, 2) for pid in pids],
        "load_generator_cpu_cores": own / wall,
    }


async def main_async(args: argparse.Namespace) -> tuple[list[Phase], list[tuple[str, float, float]], dict]:
    chosen = args.phases.split(",")
    todo = phases(args.clients, chosen)
    memory: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = start_server(port, args.workers, Path(tmp) / "server.log", args.model)
        try:
            pids = process_tree(server.pid)
            idle = rss_mb(pids)
            warm = Phase("warm-up", min(8, args.clients), todo[0].requests)
            await run_phase(port, warm, min(3.0, args.duration), server.pid, [])
            for phase in todo:
                await run_phase(port, phase, args.duration, server.pid, memory)
                print(f"  {phase.name}: {phase.results['good_per_s']:.0f} good answers/s", file=sys.stderr)
            final = rss_mb(process_tree(server.pid))
        finally:
            server.terminate()
            server.wait(timeout=30)
            log = (Path(tmp) / "server.log").read_text()
    if "Traceback" in log:
        print(log, file=sys.stderr)
    return todo, memory, {"idle_rss_mb": idle, "final_rss_mb": final, "server_traceback": "Traceback" in log}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds each phase runs (default: %(default)s)")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients of the predict phases (default: 32)")
    p.add_argument("--workers", type=int, default=2, help="digits serve --workers (default: %(default)s)")
    p.add_argument(
        "--phases",
        default="predict,predict-canvas,batch,batch-prepared",
        help="which to run, comma-separated (default: %(default)s)",
    )
    p.add_argument("--model", type=Path, help="digits serve --model: a run, .safetensors or .onnx (default: shipped)")
    p.add_argument("--json", type=Path, help="also write the results here, e.g. benchmarks/results/serve_load.json")
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()  # the lighter event loop for the clients too
    except ImportError:
        pass
    todo, memory, server = asyncio.run(main_async(args))
    rows = [phase.results for phase in todo]
    print(f"\ndigits serve --workers {args.workers} on {os.cpu_count()} cores, {args.duration:g} s a phase\n")
    markdown_table(
        ["phase", "clients", "requests/s", "good/s", "digits/s", "p50 ms", "p99 ms", "answers", "5xx", "CPU srv+gen"],
        [
            [
                r["phase"],
                str(r["clients"]),
                f"{r['requests_per_s']:,.0f}",
                f"{r['good_per_s']:,.0f}",
                f"{r['digits_per_s']:,.0f}",
                f"{r['p50_ms']:.1f}" if r["p50_ms"] is not None else "-",
                f"{r['p99_ms']:.1f}" if r["p99_ms"] is not None else "-",
                " ".join(f"{s}:{n}" for s, n in r["statuses"].items()),
                str(r["server_5xx"]),
                f"{r['server_cpu_cores']:.2f}+{r['load_generator_cpu_cores']:.2f}",
            ]
            for r in rows
        ],
    )
    unexpected = {r["phase"]: r["unexpected"] for r in rows if r["unexpected"]}
    if unexpected:
        print(f"\nanswers other than expected: {unexpected}")
    print(f"\nserver memory (RSS of all its processes): {server['idle_rss_mb']:.0f} MB idle before the load")
    markdown_table(
        ["phase", "at s", "RSS MB"],
        [[name, f"{at:.0f}", f"{mb:.0f}"] for name, at, mb in memory],
    )
    # A phase's first seconds fill its working set (request bodies, onnxruntime's arena for a batch's size);
    # a leak would go on growing after that.
    by_phase: dict[str, list[tuple[float, float]]] = {}
    for name, at, mb in memory:
        by_phase.setdefault(name, []).append((at, mb))
    growth = {
        name: values[-1][1] - next(mb for at, mb in values if at >= min(5.0, values[-1][0]))
        for name, values in by_phase.items()
    }
    print("growth within each phase after its first 5 s (MB): " + ", ".join(f"{k} {v:+.1f}" for k, v in growth.items()))
    if args.json:
        write_json(
            args.json,
            rows,
            workers=args.workers,
            model=str(args.model) if args.model else "shipped",
            duration_s=args.duration,
            memory=[{"phase": n, "at_s": round(at, 1), "rss_mb": round(mb, 1)} for n, at, mb in memory],
            idle_rss_mb=server["idle_rss_mb"],
            growth_mb=growth,
        )


if __name__ == "__main__":
    main()
