"""The drawing page in a real browser, against a real `digits serve`: what a person does, done by Playwright.

`digits serve` runs as a subprocess on a free loopback port with a correction store in a temporary folder;
Debian's Chromium (no browser download: ``executable_path``) draws digits with the mouse, uploads a photo in
number mode and records a correction; the page must show the right answers and the store must hold the
correction. Screenshots are saved in tests/artifacts/ (ignored by git). Never skipped: scripts/test.sh installs
Chromium where it is missing.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from digits.corrections import CorrectionStore
from digits.testing import scenes

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ANSWER_TIMEOUT_MS = 30_000  # generous: a shared 2-core machine may be busy; nothing here is timed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`digits serve` on a free loopback port, with a correction store; stopped at the end."""
    folder = tmp_path_factory.mktemp("serve")
    store = folder / "corrections"
    port = free_port()
    log = (folder / "server.log").open("w")
    command = [sys.executable, "-m", "digits.cli", "serve", "--port", str(port), "--store", str(store)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if get(f"{url}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"digits serve did not start:\n{(folder / 'server.log').read_text()}")
            time.sleep(0.2)
        yield url, store
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    output = (folder / "server.log").read_text()
    assert "limits: bodies up to" in output and f"kept in {store}" in output  # printed at start-up
    assert "Traceback" not in output, output


@pytest.fixture(scope="module")
def page(server: tuple[str, Path]) -> Iterator[Page]:
    ARTIFACTS.mkdir(exist_ok=True)
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: apt-get install chromium (scripts/test.sh does)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1000, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(server[0] + "/")
        expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=ANSWER_TIMEOUT_MS)
        yield page
        browser.close()
        assert not errors, errors


def draw(page: Page, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw with the mouse: each stroke a list of points on the 280x280 pad (scaled to its size on screen)."""
    box = page.locator("#pad").bounding_box()
    assert box is not None
    width = float(page.locator("#pad").evaluate("c => c.width"))
    scale = box["width"] / width
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=4)
        page.mouse.up()


ONE = [[(140, 45), (140, 235)]]
SEVEN = [[(75, 55), (205, 55), (125, 235)]]
ZERO = [[(140 + 55 * math.sin(t / 24 * 2 * math.pi), 140 - 90 * math.cos(t / 24 * 2 * math.pi)) for t in range(25)]]


@pytest.mark.parametrize(("digit", "strokes"), [(1, ONE), (7, SEVEN), (0, ZERO)], ids=["one", "seven", "zero"])
def test_a_digit_drawn_with_the_mouse_is_read(page: Page, digit: int, strokes):
    page.click("#clear")
    expect(page.locator("#answer")).to_have_class("answer empty")
    draw(page, strokes)
    expect(page.locator("#digit")).to_have_text(str(digit), timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator("#answer")).to_have_class("answer sure")
    expect(page.locator("#bars li.top .label")).to_have_text(str(digit))
    expect(page.locator("#seen")).to_be_visible()  # the 28x28 the model saw
    assert page.locator("#seen").evaluate("img => img.naturalWidth") == 28
    page.screenshot(path=str(ARTIFACTS / f"drawn_{digit}.png"), full_page=True)


def test_undo_and_clear(page: Page):
    page.click("#clear")
    draw(page, ONE)
    expect(page.locator("#digit")).to_have_text("1", timeout=ANSWER_TIMEOUT_MS)
    draw(page, [[(100, 60), (180, 60)]])  # a bar across the top: no longer a clean 1
    expect(page.locator("#digit")).not_to_have_text("1", timeout=ANSWER_TIMEOUT_MS)
    page.keyboard.press("Control+z")
    expect(page.locator("#digit")).to_have_text("1", timeout=ANSWER_TIMEOUT_MS)
    page.click("#undo")
    expect(page.locator("#answer")).to_have_class("answer empty")
    draw(page, [[(140, 140), (141, 141)]])  # a dot: a speck, no digit
    expect(page.locator("#answer")).not_to_have_class("answer empty", timeout=ANSWER_TIMEOUT_MS)
    assert page.locator("#answer").get_attribute("class") in ("answer no-digit", "answer uncertain")
    page.keyboard.press("Escape")
    expect(page.locator("#answer")).to_have_class("answer empty")


def test_a_photo_uploaded_in_number_mode_is_read_with_a_box_over_each_digit(page: Page, tmp_path: Path):
    digits = [scenes.font_digit(int(c)) for c in "2026"]
    picture = scenes.paper(digits, size=(900, 320), height=140, origin=(80, 80), seed=2).image
    path = tmp_path / "number.png"
    path.write_bytes(scenes.encode(picture))
    page.check("#mode-number")
    page.set_input_files("#upload", str(path))
    expect(page.locator("#number-text")).to_have_text("2026", timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator("#photo")).to_be_visible()
    # boxes were drawn on the photo: some pixels are the boxes' green
    green = page.locator("#photo").evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
                  for (let i = 0; i < d.length; i += 4) if (d[i+1] > 100 && d[i] < 60 && d[i+2] < 90) n++;
                  return n; }"""
    )
    assert green > 100
    page.screenshot(path=str(ARTIFACTS / "number_mode.png"), full_page=True)
    draw(page, [[(150, 60), (150, 220)], [(200, 60), (320, 60), (240, 220)]])  # 17 on the wide pad
    expect(page.locator("#number-text")).to_have_text("17", timeout=ANSWER_TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "number_drawn.png"), full_page=True)
    page.check("#mode-digit")


def test_a_correction_is_recorded_in_the_store(page: Page, server: tuple[str, Path]):
    _, store = server
    page.click("#clear")
    draw(page, ONE)
    expect(page.locator("#digit")).to_have_text("1", timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator("#record")).to_be_enabled()
    page.select_option("#label", "7")
    page.click("#record")
    expect(page.locator("#correct-status")).to_contain_text("Recorded: it is a 7", timeout=ANSWER_TIMEOUT_MS)
    (kept,) = CorrectionStore(store).list()
    assert kept.label == 7 and kept.predicted == 1 and kept.source == "page"
    assert (store / kept.id / kept.image).read_bytes().startswith(b"\x89PNG")  # the canvas, as it was sent
    page.screenshot(path=str(ARTIFACTS / "corrected.png"), full_page=True)


def test_the_page_is_readable_at_phone_width(page: Page):
    page.set_viewport_size({"width": 375, "height": 800})
    page.click("#clear")
    scroll = page.evaluate("() => document.documentElement.scrollWidth")
    assert scroll <= 375  # nothing wider than the phone
    box = page.locator("#pad").bounding_box()
    assert box is not None and box["width"] <= 375
    draw(page, SEVEN)
    expect(page.locator("#digit")).to_have_text("7", timeout=ANSWER_TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "phone.png"), full_page=True)
    page.set_viewport_size({"width": 1000, "height": 900})


def test_every_control_is_labelled_and_reachable_by_keyboard(page: Page):
    for selector in ("#undo", "#clear", "#upload", "#label", "#record", "#mode-digit", "#mode-number"):
        name = page.locator(selector).evaluate(
            "e => (e.labels && e.labels.length ? e.labels[0].textContent : e.textContent).trim()"
        )
        assert name, selector
    reached = set()
    page.locator("body").focus()
    for _ in range(15):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("() => document.activeElement.id"))
    assert {"undo", "clear", "upload", "mode-digit"} <= reached


def test_the_live_server_refuses_a_huge_body_before_reading_it_and_goes_on(server: tuple[str, Path]):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        # a gigabyte announced, a few bytes sent: the answer comes without the rest
        s.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000000000\r\n\r\nabc"
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["error"]["code"] == "too_large"
    status, body = get(f"{url}/healthz")
    assert status == 200
    status, body = get(f"{url}/metrics")
    assert b'route="/v1/predict",status="413"' in body


def test_the_api_description_at_docs_lists_every_route(page: Page, server: tuple[str, Path]):
    page.goto(server[0] + "/docs")
    for route in ("POST /v1/predict", "POST /v1/read", "POST /v1/predict/batch", "GET /v1/model", "GET /metrics"):
        expect(page.locator("#routes")).to_contain_text(route, timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator("#routes")).to_contain_text("top_k")
    page.screenshot(path=str(ARTIFACTS / "docs.png"), full_page=True)
    page.goto(server[0] + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=ANSWER_TIMEOUT_MS)
