"""Learning while serving: after every N new corrections, ``digits adapt`` in a process of its own.

The server never trains, nor imports training code or torch: it starts the command ``digits adapt --store
STORE --base MODEL -o STORE/models/<time>-n<count> --link STORE/models/current`` and goes on answering. An
adapted model the gate accepts becomes what ``STORE/models/current`` links to; every worker watches that link
(:meth:`Adapter.serving`) and swaps the new model in once it is loaded (:class:`digits.serve.app.Service`), so
no request is dropped or waits. ``digits adapt --rollback STORE/models/current`` goes back to the model before;
without the link, the server serves its own ``--model``.

Several workers share one store: a lock file lets only one adaptation run at a time, and ``attempted.json``
records how many corrections the last one started from, so N new corrections start one adaptation, not one a
worker. Only the standard library.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from digits.corrections import CorrectionStore
from digits.files import write_json
from digits.spec import META_NAME

__all__ = ["CURRENT_NAME", "Adapter", "adapt_command"]

CURRENT_NAME = "current"  # STORE/models/current: a link to the accepted model in use
ATTEMPTED_NAME = "attempted.json"  # how many corrections the last adaptation started from
LOCK_NAME = ".adapting.lock"
log = logging.getLogger("digits.serve")


def adapt_command() -> list[str]:
    """``digits adapt`` in this Python, as the server runs it (its arguments follow)."""
    return [sys.executable, "-m", "digits.cli", "adapt"]


class Adapter:
    """Starts ``digits adapt`` after every ``every`` new corrections in ``store``, one at a time, from ``base``."""

    def __init__(self, store: CorrectionStore, every: int, base: str | None, command: Sequence[str] = ()) -> None:
        self.store = store
        self.every = every
        self.base = base
        self.command = list(command) or adapt_command()
        self.models = store.models
        self.current = self.models / CURRENT_NAME
        self._process: subprocess.Popen[str] | None = None
        self.last_output = ""  # what the last adaptation printed, once it ended
        self._guard = threading.Lock()  # one check-and-start at a time in this worker

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def serving(self) -> Path | None:
        """The accepted model to serve (where the ``current`` link leads), or None: the server's own model."""
        if not self.current.is_symlink():
            return None
        target = self.current.resolve()
        return target if target.is_dir() else None

    def note_correction(self) -> bool:
        """Called after a correction is kept: start an adaptation if ``every`` corrections came since the last one
        started (and none is running in any worker). Returns whether one started."""
        with self._guard:
            count = len(self.store)
            if self.running or count - self._attempted() < self.every:
                return False
            lock = _try_lock(self.models / LOCK_NAME)
            if lock is None:  # another worker's adaptation is running
                return False
            write_json(self.models / ATTEMPTED_NAME, {"corrections": count})
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
            out = self.models / f"{stamp}-n{count}"
            argv = [*self.command, "--store", str(self.store.root), "-o", str(out), "--link", str(self.current)]
            if self.base:
                argv += ["--base", self.base]
            log.info("adapting on %d corrections: %s", count, " ".join(argv))
            self._process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            threading.Thread(target=self._wait, args=(self._process, lock), daemon=True, name="digits-adapt").start()
            return True

    def _wait(self, process: subprocess.Popen[str], lock: IO[Any]) -> None:
        """Log what the adaptation said once it ends, and let the next one start."""
        try:
            output, _ = process.communicate()
            self.last_output = output or ""
            lines = self.last_output.strip().splitlines()
            outcome = "accepted" if process.returncode == 0 else f"not accepted (exit status {process.returncode})"
            log.info("adaptation %s: %s", outcome, lines[-1] if lines else "(no output)")
        finally:
            lock.close()  # releases the lock

    def stop(self) -> None:
        """End a running adaptation (the server is stopping): nothing it had not finished is used."""
        if self.running:
            assert self._process is not None
            self._process.terminate()

    def _attempted(self) -> int:
        """How many corrections the last adaptation started from; without a record, those the model in use
        learned from (0 for a model not adapted here)."""
        attempted = _read_json(self.models / ATTEMPTED_NAME).get("corrections")
        if isinstance(attempted, int):
            return attempted
        learned = _read_json(self.current / META_NAME).get("corrections")
        return int(learned.get("n", 0)) if isinstance(learned, dict) else 0


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; empty when there is none or it is not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _try_lock(path: Path) -> IO[Any] | None:
    """An open file holding an exclusive lock on ``path``, or None when another process holds it. The system
    releases it when the file is closed or the process ends, however it ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 (held open for as long as the adaptation runs)
    if sys.platform == "win32":
        return handle  # one worker a store there: nothing to share the lock with
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    os.ftruncate(handle.fileno(), 0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
