"""Corrections people make to what the model read: "that's wrong, it is a 7", kept to learn from later.

A store is a folder the user chose. Each correction is a folder of its own, named by its id (the time it was
made and a random suffix, so names sort by time and two servers writing one store never collide):

    STORE/20260106T101502.123456Z-3fa9c2/
        image.png         the picture as it was sent (its own format: .png, .jpg, ...)
        seen28.png        the 28x28 the model saw: light ink on black, as MNIST's digits are
        correction.json   {"id", "label", "predicted", "confidence", "created", "image", "seen28", "source"}

Every file is written atomically (:mod:`digits.files`) and correction.json last, so a correction whose JSON
is there is complete; a folder without it (a process killed mid-write) is not listed. Only the standard
library, numpy and Pillow: the server that writes a store and the commands that list, export or learn from
it need no torch.

``digits corrections list|export|clear --store DIR`` shows, exports (an .npz of arrays, or a folder of PNGs
and a CSV) and empties a store; ``digits predict --correct`` and ``digits read --correct`` add to it, and
``digits adapt`` learns from it (:mod:`digits.train.adapt`). :meth:`CorrectionStore.sha256` names exactly
which corrections a model learned from.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from digits.errors import ConfigError, WriteError
from digits.files import write_bytes, write_json
from digits.spec import IMAGE_SIZE, NUM_CLASSES

__all__ = ["MODELS_NAME", "RECORD_NAME", "SEEN_NAME", "Correction", "CorrectionStore", "image_suffix", "parse_labels"]

RECORD_NAME = "correction.json"
SEEN_NAME = "seen28.png"
MODELS_NAME = "models"  # STORE/models/: the models learned from the store while serving (digits serve --adapt-every)

# The first bytes of each image format a picture may be sent in, for the file's suffix.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF87a", ".gif"),
    (b"GIF89a", ".gif"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)


def image_suffix(data: bytes) -> str:
    """The file suffix of an image's bytes, from their signature: ".png", ".jpg", ...; ".img" when unknown."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((suffix for signature, suffix in _SIGNATURES if data.startswith(signature)), ".img")


@dataclass(frozen=True)
class Correction:
    """One correction: the digit a person says the picture shows, and what the model had answered.

    label: the right digit (0-9). predicted: the model's digit (None when it found none); confidence: its
    calibrated confidence in it. created: ISO 8601 time in UTC. image, seen28: file names in the
    correction's folder. source: who sent it ("page", "api", ...).
    """

    id: str
    label: int
    predicted: int | None
    confidence: float
    created: str
    image: str
    seen28: str
    source: str = "api"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CorrectionStore:
    """The corrections kept in one folder (created on the first one added)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"the correction store {self.root} is a file, not a folder; choose a folder")

    def __repr__(self) -> str:
        return f"CorrectionStore({str(self.root)!r})"

    @property
    def models(self) -> Path:
        """The folder of the models learned from this store while serving (never listed as corrections)."""
        return self.root / MODELS_NAME

    def add(
        self,
        image: bytes,
        seen28: np.ndarray,
        *,
        label: int,
        predicted: int | None,
        confidence: float = 0.0,
        source: str = "api",
        now: datetime | None = None,
    ) -> Correction:
        """Keep a correction: ``image`` (the picture's bytes, as sent), ``seen28`` ((28, 28) uint8, the digit
        the model saw), the right ``label`` and the model's answer. Raises ConfigError for a label that is
        not a digit or an image that is not 28x28 uint8, WriteError when the disk refuses."""
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < NUM_CLASSES:
            raise ConfigError(f"a correction's label is a digit from 0 to {NUM_CLASSES - 1}, not {label!r}")
        if not isinstance(image, bytes) or not image:
            raise ConfigError("a correction needs the picture's bytes as they were given; got none")
        seen28 = np.asarray(seen28)
        if seen28.shape != (IMAGE_SIZE, IMAGE_SIZE) or seen28.dtype != np.uint8:
            raise ConfigError(
                f"the digit the model saw must be ({IMAGE_SIZE}, {IMAGE_SIZE}) uint8, got {seen28.dtype} {seen28.shape}"
            )
        now = now or datetime.now(timezone.utc)
        record_id = f"{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{secrets.token_hex(3)}"
        folder = self.root / record_id
        correction = Correction(
            id=record_id,
            label=label,
            predicted=predicted,
            confidence=round(float(confidence), 6),
            created=now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            image=f"image{image_suffix(image)}",
            seen28=SEEN_NAME,
            source=source,
        )
        png = io.BytesIO()
        Image.fromarray(seen28, mode="L").save(png, format="PNG")
        try:
            write_bytes(folder / correction.image, image)
            write_bytes(folder / SEEN_NAME, png.getvalue())
            write_json(folder / RECORD_NAME, correction.to_dict())  # last: its presence marks a whole record
        except WriteError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return correction

    def add_number(
        self,
        image: bytes,
        digits: Sequence[tuple[np.ndarray, int | None, float]],
        labels: str,
        *,
        source: str = "cli",
    ) -> list[Correction]:
        """Keep one correction per digit of a number read in ``image``: ``digits`` holds, in reading order, each
        digit's (28x28 the model saw, its answer, its confidence); ``labels`` the right number ("2026").

        Raises ConfigError, keeping nothing, when ``labels`` is not a number or has another count of digits."""
        wanted = parse_labels(labels)
        if len(wanted) != len(digits):
            raise ConfigError(
                f"the picture was read as {len(digits)} digit(s) but the correction {labels!r} has {len(wanted)}; "
                "give one digit for each digit read (see `digits read -v`), or correct each digit on its own "
                "with `digits predict --correct` on a picture of it"
            )
        return [
            self.add(image, seen, label=label, predicted=predicted, confidence=confidence, source=source)
            for (seen, predicted, confidence), label in zip(digits, wanted)
        ]

    def __iter__(self) -> Iterator[Correction]:
        """The complete corrections, oldest first (a record that cannot be read is skipped)."""
        if not self.root.is_dir():
            return
        for record in sorted(self.root.glob(f"*/{RECORD_NAME}")):
            try:
                yield Correction(**json.loads(record.read_text()))
            except (OSError, ValueError, TypeError):
                continue

    def list(self) -> list[Correction]:
        return list(self)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def seen28(self, correction: Correction) -> np.ndarray:
        """(28, 28) uint8: the digit the model saw for ``correction``, light ink on black."""
        with Image.open(self.root / correction.id / correction.seen28) as im:
            return np.asarray(im.convert("L"))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Every correction's 28x28 as (N, 28, 28) uint8 and its label as (N,) int64, oldest first."""
        records = self.list()
        images = np.stack([self.seen28(c) for c in records]) if records else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE))
        return images.astype(np.uint8), np.array([c.label for c in records], np.int64)

    def sha256(self, records: Sequence[Correction] | None = None) -> str:
        """A checksum of ``records`` (default: every correction): their ids, labels and the 28x28s the model saw,
        so a model's metadata can say exactly what it learned from."""
        digest = hashlib.sha256()
        for c in self.list() if records is None else records:
            digest.update(f"{c.id}:{c.label};".encode())
            digest.update(self.seen28(c).tobytes())
        return digest.hexdigest()

    def export(self, out: str | os.PathLike[str]) -> Path:
        """Write every correction to ``out``: a ``.npz`` file (``images`` (N, 28, 28) uint8 as the model saw them,
        ``labels``, ``predicted`` (-1: no digit found), ``ids``, ``created``), or else a folder of
        ``<id>_<label>.png`` (the 28x28s) and ``corrections.csv`` (one row per correction). Returns ``out``."""
        out = Path(out)
        records = self.list()
        images, labels = self.arrays()
        if out.suffix == ".npz":
            buffer = io.BytesIO()
            np.savez_compressed(
                buffer,
                images=images,
                labels=labels,
                predicted=np.array([-1 if c.predicted is None else c.predicted for c in records], np.int64),
                ids=np.array([c.id for c in records], dtype=str),
                created=np.array([c.created for c in records], dtype=str),
            )
            write_bytes(out, buffer.getvalue())
            return out
        if out.exists() and not out.is_dir():
            raise ConfigError(f"{out} is a file; export to a folder, or to a file named .npz")
        rows = io.StringIO()
        fields = ["id", "file", "label", "predicted", "confidence", "created", "source"]
        writer = csv.DictWriter(rows, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for c, seen in zip(records, images):
            name = f"{c.id}_{c.label}.png"
            png = io.BytesIO()
            Image.fromarray(seen, mode="L").save(png, format="PNG")
            write_bytes(out / name, png.getvalue())
            row = {k: v for k, v in c.to_dict().items() if k in fields}
            writer.writerow({**row, "file": name, "predicted": "" if c.predicted is None else c.predicted})
        write_bytes(out / "corrections.csv", rows.getvalue().encode())
        return out

    def clear(self) -> int:
        """Remove every correction (and any half-written one); returns how many complete ones there were."""
        count = len(self)
        if self.root.is_dir():
            for folder in self.root.iterdir():
                if folder.is_dir() and (
                    (folder / RECORD_NAME).exists() or (folder / SEEN_NAME).exists() or _is_record_id(folder.name)
                ):
                    shutil.rmtree(folder)
        return count


def parse_labels(text: str) -> list[int]:
    """The digits of a number as a person types it ("2026", "20 26", "3.14" for 314): the digits in order; spaces,
    '.', ',', '-' and '/' are left out. Raises ConfigError for anything else, or no digit at all."""
    kept = [ch for ch in text if ch not in " \t\n.,-/"]
    if not kept or not all(ch in "0123456789" for ch in kept):
        raise ConfigError(f"a correction is the digits the picture really shows, e.g. 7 or 2026, not {text!r}")
    return [int(ch) for ch in kept]


def _is_record_id(name: str) -> bool:
    stamp, _, suffix = name.partition("-")
    return len(stamp) == 23 and stamp.endswith("Z") and len(suffix) == 6
