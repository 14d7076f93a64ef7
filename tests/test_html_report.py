"""digits report: one self-contained HTML page for a run, with every section, comparable across runs."""

from __future__ import annotations

import re

import pytest

from digits.cli import main
from digits.data import MNIST
from digits.train.config import get_preset, override
from digits.train.html_report import SECTIONS, measure, render
from digits.train.loop import fit


@pytest.fixture(scope="module")
def small(mnist):
    """MNIST with the first 1,000 test digits: the page measures the whole test set it is given."""
    test = slice(0, 1000)
    return MNIST(mnist.train_images, mnist.train_labels, mnist.test_images[test], mnist.test_labels[test], mnist.sha256)


@pytest.fixture(scope="module")
def others():
    """A few pictures that are no digit (the page's own default adds Fashion-MNIST's 10,000: slow for a test)."""
    from digits.train.trust import near_ood

    return {name: images[:100] for name, images in near_ood().items()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, mnist):
    out = tmp_path_factory.mktemp("report") / "tiny"
    cfg = override(get_preset("seed"), train_limit=3000, epochs=2, batch_size=64, val_split=0.2)
    fit(cfg, out, data=mnist, progress=False, log=lambda s: None, preset="seed")
    return out


def test_the_page_has_every_section_and_nothing_from_outside(tiny_run, small, others):
    page = render([measure(tiny_run, small, severity=3, others=others, log=lambda s: None)])
    for anchor, title in SECTIONS:
        assert f"id=m0-{anchor}>" in page and f"<h3>{title}</h3>" in page
    # Pictures travel inside the page; nothing is fetched (no src or href to another place, no CDN).
    assert not re.search(r"""(src|href)=['"]?(https?:|//)""", page)
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) >= 7  # curves, confusion, mistakes, corruptions' chart and examples, reliability, risk
    assert all(len(i) > 2000 for i in images)
    assert "Accuracy <b>" in page and "Expected calibration error" in page and "letters and symbols" in page
    assert "train_limit" in page and "data t10k-images-idx3-ubyte" in page  # config and provenance
    assert "under each of 26 corruptions at severity 3" in page and "Training used: none" in page
    assert "Side by side" not in page  # one model: nothing to compare


def test_several_models_are_compared_side_by_side(tiny_run, small, model_dir, others):
    quiet = {"severity": None, "others": others, "log": lambda s: None}
    page = render([measure(m, small, **quiet) for m in (tiny_run, model_dir)])
    assert "<h2 id=comparison>Side by side</h2>" in page
    row = re.search(r"<td>test accuracy</td><td>([\d.]+)%</td><td>([\d.]+)%</td>", page)
    assert row is not None and float(row.group(2)) > float(row.group(1))  # the shipped model beats two epochs
    assert "id=m1-ood>" in page


def test_report_command_writes_one_page_and_train_can_write_it_at_the_end(
    tiny_run, mnist_dir, tmp_path, capsys, monkeypatch, others
):
    import digits.train.html_report as html_report

    real = html_report.report
    quick = {"severity": None, "others": others}  # the measurements themselves are the tests above
    monkeypatch.setattr(html_report, "report", lambda *a, **k: real(*a, **{**k, **quick}))
    out = tmp_path / "page.html"
    argv = ["report", str(tiny_run), "--severity", "none", "-o", str(out), "--data-dir", str(mnist_dir)]
    assert main(argv) == 0
    assert out.read_text().startswith("<!doctype html>") and "wrote" in capsys.readouterr().out
    (tmp_path / "afile").write_text("")
    assert main(["report", str(tiny_run), "-o", str(tmp_path / "afile" / "page.html")]) == 2  # before measuring
    run = tmp_path / "run"
    train = ["train", "--preset", "fast", "--train-limit", "2000", "--epochs", "1", "--report", "--out", str(run)]
    assert main([*train, "--data-dir", str(mnist_dir)]) == 0
    assert "id=m0-test>" in (run / "report.html").read_text()
