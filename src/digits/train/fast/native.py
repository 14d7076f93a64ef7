"""C kernels shipped as source, compiled on first use with the machine's C compiler, loaded with ctypes.

Some work is too small for PyTorch's kernels to run it efficiently (see ``digits/train/fast/convblocks.c``). Such a
kernel is a plain C file in the package; ``load(name)`` compiles it once per machine into the user cache
(``-O3 -march=native``: for this CPU's vector units) and returns the library. Without a working compiler
it warns once and returns None, and the caller computes the same thing with PyTorch operations.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import platformdirs

from digits.files import atomic_write

SOURCE_DIR = Path(__file__).resolve().parent
# Tried in order: the first assumes GCC or Clang on a CPU it can tune for, the second any cc.
FLAG_SETS = (["-O3", "-march=native"], ["-O3"])


def default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("digits")) / "native"


def _cpu_signature() -> str:
    """What ``-march=native`` depends on, so a shared cache never hands one CPU another CPU's code."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build(name: str, cache_dir: Path | None = None, compiler: str | None = None) -> Path:
    """Compile ``digits/<name>.c`` into a shared library (or find it already compiled); return its path.

    Raises OSError (no compiler, or it failed) with the compiler's message.
    """
    source = SOURCE_DIR / f"{name}.c"
    cc = compiler or os.environ.get("CC") or "cc"  # may carry words of its own: CC="ccache gcc"
    key = hashlib.sha256(
        b"\0".join([source.read_bytes(), cc.encode(), _cpu_signature().encode(), sys.platform.encode()])
    ).hexdigest()[:16]
    cache_dir = cache_dir or default_cache_dir()
    target = cache_dir / f"{name}-{key}.so"
    if target.is_file():
        return target
    errors = []
    for flags in FLAG_SETS:
        command = [*shlex.split(cc), *flags, "-shared", "-fPIC", "-o"]
        try:
            # Through a temporary name: a killed build never leaves a half library under the real name.
            return atomic_write(target, functools.partial(_compile, command, source=source))
        except _CompileFailed as exc:
            errors.append(f"{cc} {' '.join(flags)}: {exc}")
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(f"{cc}: {exc}")
    raise OSError("; ".join(errors))


class _CompileFailed(OSError):
    """The compiler ran and refused; the message is the end of what it printed."""


def _compile(command: list[str], out: Path, *, source: Path) -> None:
    done = subprocess.run([*command, str(out), str(source), "-lm"], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise _CompileFailed(done.stderr.strip()[-500:])


@functools.cache
def load(name: str) -> ctypes.CDLL | None:
    """The compiled ``digits/<name>.c``, or None (with one warning) where it cannot be built here."""
    try:
        path = build(name)
        try:
            return ctypes.CDLL(str(path))
        except OSError:  # a cached library that no longer loads (a damaged file): build it again, once
            path.unlink(missing_ok=True)
            return ctypes.CDLL(str(build(name)))
    except OSError as exc:
        warnings.warn(
            f"digits: could not compile its {name}.c kernel ({exc}); using PyTorch operations instead, which "
            "is slower. Install a C compiler (e.g. apt-get install gcc) or set CC to use the kernel.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
