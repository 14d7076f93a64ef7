"""Make the README's picture of the drawing page: docs/serve.png.

Starts `digits serve` on a free loopback port, opens the page in Debian's Chromium (Playwright, no browser
download), draws a 7 with the mouse as a person would, waits for the answer and saves the page, shrunk to a
small palette so that it stays well under 100 KB. Run from the repository root, in its virtualenv:

    python docs/make_serve_screenshot.py
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image
from playwright.sync_api import expect, sync_playwright

DOCS = Path(__file__).resolve().parent
SCREENSHOT = DOCS / "serve.png"
SEVEN = [(75, 60), (205, 60), (190, 90), (160, 150), (130, 235)]  # a 7 on the 280x280 pad
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as store:
        server = subprocess.Popen(
            [sys.executable, "-m", "digits.cli", "serve", "--port", str(port), "--store", store],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(600):
                try:
                    with urllib.request.urlopen(f"{url}/readyz", timeout=2):
                        break
                except OSError:
                    time.sleep(0.2)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
                page = browser.new_page(viewport={"width": 1000, "height": 640})
                page.goto(url + "/")
                expect(page.locator("body")).to_have_attribute("data-ready", "true")
                box = page.locator("#pad").bounding_box()
                assert box is not None
                scale = box["width"] / 280
                page.mouse.move(box["x"] + SEVEN[0][0] * scale, box["y"] + SEVEN[0][1] * scale)
                page.mouse.down()
                for x, y in SEVEN[1:]:
                    page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=8)
                page.mouse.up()
                expect(page.locator("#digit")).to_have_text("7", timeout=30_000)
                page.screenshot(path=str(SCREENSHOT))
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    with Image.open(SCREENSHOT) as im:
        im.convert("RGB").quantize(colors=64, dither=Image.Dither.NONE).save(SCREENSHOT, optimize=True)
    with Image.open(SCREENSHOT) as im:
        print(f"{SCREENSHOT.name}: {im.width}x{im.height}, {SCREENSHOT.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
