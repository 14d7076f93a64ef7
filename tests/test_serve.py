"""The HTTP API with a real client (Starlette's TestClient over httpx2): every route, every bad input.

Each bad input must give its own 4xx and JSON ``{"error": {"code", "message"}}``, never a 500, and the server
must answer a good request right after it. The answers must be the command line's ``--json`` fields, made by
the same code. tests/test_serve_browser.py drives the page in Chromium against a real `digits serve`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from digits.cli import main
from digits.corrections import CorrectionStore
from digits.reading import FileResult, Recognizer
from digits.serve import Limits, ServeConfig, create_app
from digits.serve.server import over_share, startup_lines
from digits.testing import scenes

MAX_BATCH = 8
MAX_PIXELS = 1_000_000
MAX_BODY = 2 * 1024 * 1024


def drawing(digit: int) -> bytes:
    """A digit drawn on a transparent 280x280 web canvas in black: ink in the alpha channel only, as a page sends."""
    return scenes.encode(scenes.rgba_drawing(scenes.font_digit(digit)))


def photo(text: str) -> bytes:
    """Dark digits written on paper, photographed (uneven light, sensor noise)."""
    digits = [scenes.font_digit(int(c)) for c in text]
    return scenes.encode(scenes.paper(digits, size=(800, 300), height=120, origin=(60, 80), seed=1).image)


def multipart(files: list[tuple[str, bytes]], field: str = "images") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(field, (name, data, "image/png")) for name, data in files]


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load()


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corrections")


@pytest.fixture(scope="module")
def client(recognizer: Recognizer, store_dir: Path):
    limits = Limits(max_body_bytes=MAX_BODY, max_pixels=MAX_PIXELS, max_batch=MAX_BATCH)
    app = create_app(recognizer, ServeConfig(limits=limits, store=str(store_dir), threads=2))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def still_serving(client: TestClient) -> None:
    r = client.post("/v1/predict", content=drawing(3), headers={"content-type": "image/png"})
    assert r.status_code == 200 and r.json()["digit"] == 3


# -- the answers ---------------------------------------------------------------------------------------------


def test_predict_takes_an_upload_a_raw_body_and_json_and_answers_what_the_cli_prints(client, tmp_path, capsys):
    seven = drawing(7)
    path = tmp_path / "seven.png"
    path.write_bytes(seven)
    assert main(["predict", str(path), "--json"]) == 0
    (cli,) = json.loads(capsys.readouterr().out)
    answers = [
        client.post("/v1/predict", files={"image": ("seven.png", seven, "image/png")}),
        client.post("/v1/predict", content=seven, headers={"content-type": "image/png"}),
        client.post("/v1/predict", content=seven, headers={"content-type": "application/octet-stream"}),
        client.post("/v1/predict", json={"image": base64.b64encode(seven).decode()}),
        client.post("/v1/predict", json={"image": "data:image/png;base64," + base64.b64encode(seven).decode()}),
    ]
    for r in answers:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        image28 = body.pop("image28")
        assert set(body) == set(cli)  # the same fields as `digits predict --json`, plus the 28x28
        assert {k: v for k, v in body.items() if k != "file"} == {k: v for k, v in cli.items() if k != "file"}
        assert body["digit"] == 7 and not body["uncertain"]
        with Image.open(io.BytesIO(base64.b64decode(image28))) as seen:
            assert seen.size == (28, 28) and seen.mode == "L"
    assert answers[0].json()["file"] == "seven.png" and answers[1].json()["file"] == "-"


def test_the_28x28_returned_is_what_the_model_saw(client, recognizer):
    r = client.post("/v1/predict?top_k=3", content=drawing(4), headers={"content-type": "image/png"})
    body = r.json()
    expected = recognizer.predict(drawing(4))
    with Image.open(io.BytesIO(base64.b64decode(body["image28"]))) as seen:
        np.testing.assert_array_equal(np.asarray(seen), expected.image28)
    assert body["top"][0] == {"digit": 4, "probability": round(expected.confidence, 6)} and len(body["top"]) == 3


def test_a_picture_without_ink_is_no_digit(client):
    blank = scenes.encode(np.zeros((280, 280, 4), np.uint8))
    body = client.post("/v1/predict", content=blank, headers={"content-type": "image/png"}).json()
    assert body["digit"] is None and body["uncertain"] and body["reason"] == "no digit found"
    assert body["image28"] is None


def test_read_answers_what_the_cli_prints(client, tmp_path, capsys):
    number = photo("2026")
    path = tmp_path / "number.png"
    path.write_bytes(number)
    assert main(["read", str(path), "--json"]) == 0
    (cli,) = json.loads(capsys.readouterr().out)
    r = client.post("/v1/read", files={"image": ("number.png", number, "image/png")})
    assert r.status_code == 200
    assert r.json() == {**cli, "file": "number.png"}
    assert r.json()["text"] == "2026" and len(r.json()["digits"]) == 4


def test_batch_reads_each_picture_and_says_which_could_not_be_read(client, recognizer):
    files = [(f"{d}.png", drawing(d)) for d in (0, 1, 2)] + [("junk.png", b"not a picture"), ("5.png", drawing(5))]
    r = client.post("/v1/predict/batch", files=multipart(files))
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["file"] for x in results] == [name for name, _ in files]
    assert [x.get("digit") for x in results] == [0, 1, 2, None, 5]
    assert "not an image" in results[3]["error"] and set(results[3]) == {"file", "error"}
    # the same function as `digits predict --json` on each picture
    expected = FileResult("5.png", recognizer.predict(drawing(5))).to_dict()
    assert results[4] == expected


def test_batch_of_prepared_digits_runs_the_model_only(client, recognizer):
    digits = [scenes.font_digit(d) for d in range(MAX_BATCH - 1)]
    files = [(f"{i}.png", scenes.encode(d)) for i, d in enumerate(digits)] + [("big.png", drawing(1))]
    r = client.post("/v1/predict/batch?prepared=true&top_k=2", files=multipart(files))
    assert r.status_code == 200
    results = r.json()["results"]
    expected = recognizer.classify(np.stack(digits))
    assert [x["digit"] for x in results[:-1]] == [p.digit for p in expected] == list(range(MAX_BATCH - 1))
    assert results[0]["top"][0]["digit"] == 0
    assert "28x28" in results[-1]["error"]


def test_model_health_readiness_docs_and_page(client):
    model = client.get("/v1/model").json()
    assert model["name"] == "ensemble" and model["test_accuracy"] > 0.99
    assert set(model["data_sha256"]) == {
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    }
    assert len(model["sha256"]) == 64 and model["version"] == model["sha256"][:12]
    assert model["limits"]["max_batch"] == MAX_BATCH and model["corrections"] is True
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "model": "ensemble"}
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/docs.js" in docs.text and "cdn" not in docs.text
    paths = client.get("/openapi.json").json()["paths"]
    assert [p["name"] for p in paths["/v1/predict/batch"]["post"]["parameters"]] == ["top_k", "prepared"]
    assert "application/json" in paths["/v1/predict"]["post"]["requestBody"]["content"]
    for route in ("/v1/predict", "/v1/read", "/v1/predict/batch", "/v1/model", "/v1/corrections", "/metrics"):
        assert route in paths
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    for asset in ("/static/app.js", "/static/style.css", "/static/docs.js"):
        assert client.get(asset).status_code == 200
        assert asset in page.text or asset in docs.text


def test_the_page_loads_nothing_from_elsewhere():
    static = Path(__file__).resolve().parent.parent / "src" / "digits" / "serve" / "static"
    for path in static.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name


def test_metrics_count_requests_by_route_and_status_and_time_them(client):
    client.post("/v1/predict", content=b"", headers={"content-type": "image/png"})
    still_serving(client)
    text = client.get("/metrics").text
    lines = text.splitlines()
    assert any(x.startswith('digits_http_requests_total{method="POST",route="/v1/predict",status="200"') for x in lines)
    assert any(x.startswith('digits_http_requests_total{method="POST",route="/v1/predict",status="400"') for x in lines)
    assert "# TYPE digits_http_request_duration_seconds histogram" in text
    assert any(x.startswith('digits_http_request_duration_seconds_bucket{route="/v1/predict",le="+Inf"') for x in lines)
    client.get("/no/such/thing")
    assert 'route="other",status="404"' in client.get("/metrics").text  # unknown paths never become labels


# -- what it refuses -------------------------------------------------------------------------------------------

PNG = {"content-type": "image/png"}
BIG = scenes.encode(np.full((1001, 1000), 255, np.uint8))  # over MAX_PIXELS, yet a small file
SEVEN = drawing(7)

FORM = {"content-type": "multipart/form-data; boundary=b"}
FIELD_ONLY = b'--b\r\nContent-Disposition: form-data; name="label"\r\n\r\n7\r\n--b--\r\n'

BAD = {
    "not an image": (dict(content=b"GIF? no, just text", headers=PNG), 415, "not_an_image"),
    "empty body": (dict(content=b"", headers=PNG), 400, "empty_body"),
    "truncated file": (dict(content=SEVEN[: len(SEVEN) // 2], headers=PNG), 422, "corrupt_image"),
    "body over the size limit": (dict(content=b"\x89PNG" + bytes(MAX_BODY), headers=PNG), 413, "too_large"),
    "pixels over the cap": (dict(content=BIG, headers=PNG), 413, "too_many_pixels"),
    "wrong content type": (dict(content=SEVEN, headers={"content-type": "text/plain"}), 415, "unsupported_media_type"),
    "form-encoded": (
        dict(content=SEVEN, headers={"content-type": "application/x-www-form-urlencoded"}),
        415,
        "unsupported_media_type",
    ),
    "malformed json": (dict(content=b'{"image": ', headers={"content-type": "application/json"}), 400, "bad_json"),
    "json without an image": (dict(json={"picture": "x"}), 400, "missing_image"),
    "json that is a list": (dict(json=["x"]), 400, "missing_image"),
    "malformed base64": (dict(json={"image": "iVBORw0K*** not base64"}), 400, "bad_base64"),
    "data url not base64": (dict(json={"image": "data:image/png,abc"}), 400, "bad_base64"),
    "empty base64": (dict(json={"image": ""}), 400, "empty_body"),
    "base64 of text": (dict(json={"image": base64.b64encode(b"hello").decode()}), 415, "not_an_image"),
    "form without a file": (dict(content=FIELD_ONLY, headers=FORM), 400, "missing_image"),
    "empty file uploaded": (dict(files={"image": ("none.png", b"", "image/png")}), 400, "empty_body"),
    "multipart without boundary": (
        dict(content=b"--x\r\n", headers={"content-type": "multipart/form-data"}),
        400,
        "bad_multipart",
    ),
    "truncated multipart": (
        dict(
            content=b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n' + SEVEN[:100],
            headers={"content-type": "multipart/form-data; boundary=b"},
        ),
        400,
        "bad_multipart",
    ),
    "bad content length": (dict(content=SEVEN, headers={**PNG, "content-length": "abc"}), 400, None),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_each_bad_input_is_its_own_4xx_and_the_server_keeps_serving(client, case):
    request, status, code = BAD[case]
    r = client.post("/v1/predict", **request)
    assert r.status_code == status, r.text
    if code is not None:
        assert r.json() == {"error": {"code": code, "message": r.json()["error"]["message"]}}
        assert len(r.json()["error"]["message"]) > 20
    still_serving(client)


def test_batch_refusals(client):
    too_many = multipart([(f"{i}.png", SEVEN) for i in range(MAX_BATCH + 1)])
    r = client.post("/v1/predict/batch", files=too_many)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_images"
    r = client.post("/v1/predict/batch", content=SEVEN, headers=PNG)
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = client.post("/v1/predict/batch", content=FIELD_ONLY, headers=FORM)
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_image"
    r = client.post("/v1/predict/batch?prepared=maybe", files=multipart([("a.png", SEVEN)]))
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_parameter"
    still_serving(client)


@pytest.mark.parametrize("query", ["top_k=0", "top_k=11", "top_k=x", "top_k=-1"])
def test_bad_parameters(client, query):
    r = client.post(f"/v1/predict?{query}", content=SEVEN, headers=PNG)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_parameter"


def test_unknown_routes_and_methods_are_json_errors(client):
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get("/v1/predict")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    r = client.delete("/v1/model")
    assert r.status_code == 405


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow's, on the random TIFF headers
def test_no_input_makes_it_answer_500(client):
    rng = np.random.default_rng(0)
    types = ["image/png", "image/jpeg", "application/json", "multipart/form-data; boundary=zz", "", "image/gif"]
    pieces = [SEVEN[:60], b"GIF89a", b"\xff\xd8\xff\xe0", b'{"image": "', b"--zz\r\n", b"BM", b"II*\x00"]
    for i in range(60):
        body = pieces[i % len(pieces)] + rng.bytes(int(rng.integers(0, 300)))
        for path in ("/v1/predict", "/v1/read", "/v1/predict/batch", "/v1/corrections"):
            r = client.post(path, content=body, headers={"content-type": types[i % len(types)]})
            assert r.status_code < 500, (path, r.status_code, r.text)
    still_serving(client)


def test_a_body_over_the_limit_is_refused_before_it_is_read_whole(client):
    """At the ASGI level: the app answers 413 having taken only the first chunks of a streamed body."""
    app = client.app
    chunk = b"\x00" * 256 * 1024
    sent = {"chunks": 0}
    messages: list[dict] = []

    async def receive() -> dict:
        sent["chunks"] += 1
        return {"type": "http.request", "body": chunk, "more_body": sent["chunks"] < 1000}  # 250 MiB in all

    async def send(message: dict) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/predict",
        "raw_path": b"/v1/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"image/png"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "app": app,
    }
    asyncio.run(app(scope, receive, send))
    assert messages[0]["status"] == 413
    assert sent["chunks"] <= MAX_BODY // len(chunk) + 1
    # ... and with a Content-Length over the limit, not a byte of the body is asked for
    sent["chunks"] = 0
    messages.clear()
    scope["headers"] = [(b"content-type", b"image/png"), (b"content-length", str(10**9).encode())]
    asyncio.run(app(scope, receive, send))
    assert messages[0]["status"] == 413 and sent["chunks"] == 0
    assert json.loads(messages[1]["body"])["error"]["code"] == "too_large"


class HeldRecognizer:
    """A Recognizer whose ``read`` waits until it is let go: a request that takes as long as a test wants."""

    def __init__(self, recognizer: Recognizer) -> None:
        self._recognizer = recognizer
        self.let_go = threading.Event()

    def __getattr__(self, name: str):
        return getattr(self._recognizer, name)

    def read(self, picture):
        self.let_go.wait(60)
        return self._recognizer.read(picture)


def test_a_request_that_takes_too_long_gets_a_timeout_and_the_server_goes_on(recognizer):
    held = HeldRecognizer(recognizer)
    config = ServeConfig(limits=Limits(timeout_s=0.5), threads=2)
    with TestClient(create_app(held, config), raise_server_exceptions=False) as c:  # type: ignore[arg-type]
        r = c.post("/v1/read", content=photo("12"), headers=PNG)  # held until after the answer came
        held.let_go.set()
        assert r.status_code == 503 and r.json()["error"]["code"] == "timeout"
        assert "0.5 s" in r.json()["error"]["message"] and r.headers["retry-after"] == "1"
        assert c.get("/healthz").status_code == 200 and c.get("/v1/model").status_code == 200
        r = c.post("/v1/read", content=photo("12"), headers=PNG)
        assert r.status_code == 200 and r.json()["text"] == "12"


# -- corrections ------------------------------------------------------------------------------------------------


def test_corrections_are_kept_in_the_store(client, store_dir, recognizer):
    before = client.get("/v1/corrections").json()
    assert before["enabled"] is True
    one = drawing(1)
    r = client.post("/v1/corrections", json={"image": base64.b64encode(one).decode(), "label": 7, "source": "test"})
    assert r.status_code == 201, r.text
    kept = r.json()
    assert kept["label"] == 7 and kept["predicted"] == 1 and kept["source"] == "test"
    r = client.post("/v1/corrections", files={"image": ("two.png", drawing(2), "image/png")}, data={"label": "3"})
    assert r.status_code == 201 and r.json()["label"] == 3
    assert client.get("/v1/corrections").json()["count"] == before["count"] + 2
    store = CorrectionStore(store_dir)
    record = next(c for c in store if c.id == kept["id"])
    assert (store_dir / record.id / record.image).read_bytes() == one  # the picture as it was sent
    np.testing.assert_array_equal(store.seen28(record), recognizer.predict(one).image28)
    assert record.created.endswith("Z")


@pytest.mark.parametrize("label", [None, "", "10", "-1", "x", "7.5", True])
def test_a_correction_needs_a_digit_for_its_label(client, label):
    doc = {"image": base64.b64encode(drawing(1)).decode()}
    if label is not None:
        doc["label"] = label
    r = client.post("/v1/corrections", json=doc)
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_label"


def test_a_correction_of_a_blank_picture_is_refused(client):
    blank = scenes.encode(np.zeros((100, 100, 4), np.uint8))
    r = client.post("/v1/corrections", json={"image": base64.b64encode(blank).decode(), "label": 4})
    assert r.status_code == 422 and r.json()["error"]["code"] == "no_digit"


def test_without_a_store_corrections_are_off(recognizer):
    with TestClient(create_app(recognizer), raise_server_exceptions=False) as c:
        assert c.get("/v1/corrections").json() == {"enabled": False, "count": 0}
        r = c.post("/v1/corrections", json={"image": base64.b64encode(drawing(1)).decode(), "label": 1})
        assert r.status_code == 403 and r.json()["error"]["code"] == "corrections_off"
        assert "--store" in r.json()["error"]["message"]
        assert c.get("/v1/model").json()["corrections"] is False


def test_the_store_lists_clears_and_gives_arrays(tmp_path):
    store = CorrectionStore(tmp_path / "store")
    assert store.list() == [] and store.arrays()[0].shape == (0, 28, 28)
    seen = scenes.font_digit(5)
    first = store.add(drawing(5), seen, label=5, predicted=6, confidence=0.5)
    store.add(b"\xff\xd8\xff\xe0jpeg", seen, label=3, predicted=None)
    (tmp_path / "store" / "20260101T000000.000000Z-abcdef").mkdir()  # a record killed mid-write: not listed
    assert [c.label for c in store] == [5, 3] and store.list()[0] == first
    assert store.list()[1].image == "image.jpg"
    images, labels = store.arrays()
    assert images.shape == (2, 28, 28) and images.dtype == np.uint8 and labels.tolist() == [5, 3]
    np.testing.assert_array_equal(images[0], seen)
    with pytest.raises(ValueError, match="label"):
        store.add(b"x", seen, label=10, predicted=None)
    with pytest.raises(ValueError, match="28"):
        store.add(b"x", np.zeros((27, 28), np.uint8), label=1, predicted=None)
    assert store.clear() == 2 and store.list() == [] and not any((tmp_path / "store").iterdir())


# -- the command and the process ---------------------------------------------------------------------------------


def test_digits_serve_parses_its_flags_and_prints_its_limits(monkeypatch, capsys):
    import digits.serve

    seen = {}
    monkeypatch.setattr(digits.serve, "run", lambda config, **kw: seen.update(config=config, **kw))
    argv = ["serve", "--port", "0", "--workers", "2", "--threads", "1", "--store", "st", "--max-batch", "9"]
    assert main([*argv, "--max-body-mb", "1.5", "--timeout", "3", "--no-page"]) == 0
    config = seen["config"]
    assert config.host == "127.0.0.1" and config.workers == 2 and config.worker_threads == 1
    assert config.limits == Limits(max_body_bytes=1572864, max_pixels=Limits().max_pixels, max_batch=9, timeout_s=3.0)
    assert config.store == "st" and config.find_pages is False
    assert ServeConfig.from_json(config.to_json()) == config
    text = "\n".join(startup_lines(config))
    assert "1.5 MiB" in text and "9 pictures a batch" in text and "3 s a request" in text and "kept in st" in text
    assert "other machines" not in text
    assert "other machines" in "\n".join(startup_lines(ServeConfig(host="0.0.0.0")))
    with pytest.raises(SystemExit):
        main(["serve", "--workers", "0"])


def test_serving_on_onnxruntime_needs_no_torch():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        from starlette.testclient import TestClient
        from digits.serve import create_app
        from digits.testing import scenes
        png = scenes.encode(scenes.rgba_drawing(scenes.font_digit(2)))
        with TestClient(create_app()) as c:
            print(c.post("/v1/predict", content=png, headers={"content-type": "image/png"}).json()["digit"])
        print(sorted(m for m in sys.modules if m.startswith(("digits.train", "digits.data", "digits.models"))))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == ["2", "[]"]


def test_several_workers_share_the_connections_and_stop_together(tmp_path):
    """`digits serve --workers 2`: each worker its own SO_REUSEPORT socket, so fresh connections reach both, and
    the two keep equal shares of the connections."""
    import http.client
    import re
    import signal
    import time
    import urllib.request
    from collections import Counter

    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "digits.cli", "serve", "--port", "0", "--workers", "2"]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        url = None
        pids: set[str] = set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(pids) < 2:
            found = re.search(r"http://127\.0\.0\.1:(\d+)/ ", log.read_text())
            if found:
                url = f"http://127.0.0.1:{found.group(1)}"
                try:
                    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:  # a new connection each time
                        pids |= set(re.findall(r'pid="(\d+)"', r.read().decode()))
                except OSError:
                    pass  # a worker still loading the model is not listening yet
            assert process.poll() is None, log.read_text()
            time.sleep(0.05)
        assert url is not None and len(pids) == 2, log.read_text()
        # 32 keep-alive clients, as the kernel deals them out (by a hash, often 19 and 13): a worker over its
        # share closes connections until the two hold 16 each.
        host, port = url.removeprefix("http://").rsplit(":", 1)
        clients = [http.client.HTTPConnection(host, int(port), timeout=30) for _ in range(32)]
        for connection in clients:
            connection.connect()  # all 32 open before any is asked anything
        for _ in range(8):
            held = []
            for connection in clients:  # one request on each; one answered with Connection: close reconnects
                connection.request("GET", "/metrics")
                response = connection.getresponse()
                held.append(re.search(r'pid="(\d+)"', response.read().decode()).group(1))
        assert sorted(Counter(held).values()) == [16, 16], Counter(held)
        for connection in clients:
            connection.close()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 0, log.read_text()
    text = log.read_text()
    assert text.count("Application startup complete") == 2 and text.count("Finished server process") == 2
    assert "Traceback" not in text


def test_a_worker_over_its_share_of_the_connections_lets_some_go():
    assert over_share(19, [19, 13]) and not over_share(13, [19, 13])
    assert not over_share(16, [16, 16]) and not over_share(17, [17, 16])  # 33 cannot be shared more evenly
    assert not over_share(1, [1, 0]) and over_share(2, [2, 0])
    assert not over_share(3, [3])  # a single worker holds them all


def test_serving_a_model_that_is_not_there_is_a_clear_error(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "missing.onnx"), "--workers", "2"]) == 1
    assert "missing.onnx" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad",
    [
        dict(max_body_bytes=0),
        dict(max_pixels=-1),
        dict(max_batch=True),
        dict(max_batch=2.5),
        dict(timeout_s=0),
        dict(timeout_s=float("nan")),
        dict(timeout_s=float("inf")),
    ],
)
def test_limits_that_make_no_sense_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Limits(**bad)


def test_a_config_that_makes_no_sense_is_refused():
    for bad in (dict(workers=0), dict(threads=0), dict(port=70000)):
        with pytest.raises(ValueError):
            ServeConfig(**bad)
    assert ServeConfig(workers=4, threads=3).worker_threads == 3
    assert ServeConfig(workers=64).worker_threads == 1  # never below one thread a worker


def test_an_animation_is_read_on_its_first_frame_and_the_answer_says_so(client):
    first = Image.open(io.BytesIO(drawing(7)))
    buffer = io.BytesIO()
    first.save(buffer, "GIF", save_all=True, append_images=[first.rotate(90), first.rotate(180)])
    for route in ("/v1/predict", "/v1/read"):
        r = client.post(route, content=buffer.getvalue(), headers={"content-type": "image/gif"})
        assert r.status_code == 200, r.text
        assert r.json()["notes"] == ["the image data holds 3 frames (an animation); only the first is read"]
    still = client.post("/v1/predict", content=drawing(7), headers={"content-type": "image/png"}).json()
    assert "notes" not in still and still["digit"] == 7
