"""The ``digits`` command: parses arguments, calls the library, prints. No logic of its own.

Choices and defaults come from the library (model options from :mod:`digits.models.choices`, the
training flags from :class:`~digits.train.config.TrainConfig`, backends and the threshold from
:mod:`digits.reading`), so the two cannot drift apart. Heavy libraries (torch, OpenCV, matplotlib) are
imported inside the commands that need them, so ``digits --help`` and the image-reading commands start
fast and work without torch. Process-wide tuning for training (glibc's allocator) is set here, by the
command, not as a side effect of calling ``fit`` from Python.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import typing
from pathlib import Path
from typing import Any

from digits.errors import DigitsError, UsageError
from digits.spec import CHECKPOINT_NAME, MAX_PIXELS, NUM_CLASSES, ONNX_INT8_NAME, ONNX_NAME, WEIGHTS_NAME

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a program its pipe's reader left


def _positive(kind: type[int] | type[float]) -> Any:
    """An argparse type: a number of ``kind`` above zero, or a usage error that says so."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not value > 0:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    return parse


def _parse_kv(items: list[str] | None) -> dict[str, Any]:
    """['dropout=0.3', 'batchnorm=true', 'widths=64,128,256'] -> {'dropout': 0.3, 'batchnorm': True,
    'widths': [64, 128, 256]}: JSON values, a comma-separated list of them as a list, anything else a string."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"model option {item!r} is not KEY=VALUE (e.g. -O dropout=0.3)")
        out[key] = raw
        as_list = [f"[{raw}]"] if "," in raw else []
        for text in [raw.lower() if raw.lower() in ("true", "false") else raw, *as_list]:
            try:
                out[key] = json.loads(text)
                break
            except json.JSONDecodeError:
                continue
    return out


def _add_model_options(p: argparse.ArgumentParser) -> None:
    from digits.models.choices import ACTIVATIONS, HEADS

    g = p.add_argument_group("model options (the article's switches; any other with -O KEY=VALUE)")
    g.add_argument("--activation", choices=ACTIVATIONS, help="activation of every layer (default: the model's)")
    g.add_argument(
        "--batchnorm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="batch normalisation after each convolution (default: the model's)",
    )
    g.add_argument("--dropout", type=float, help="dropout rate before the classifier (default: the model's)")
    g.add_argument(
        "--head", choices=HEADS, help="flatten + dense (the article) or global average pooling (default: the model's)"
    )
    g.add_argument(
        "-O",
        "--model-option",
        action="append",
        metavar="KEY=VALUE",
        help="any other option of the model, e.g. -O widths=[48,96,192] for fastnet",
    )


def _model_options(args: argparse.Namespace) -> dict[str, Any]:
    opts = {k: getattr(args, k) for k in ("activation", "batchnorm", "dropout", "head") if getattr(args, k) is not None}
    opts.update(_parse_kv(args.model_option))
    return opts


# --- training config flags, generated from the dataclass so every field is overridable -------------------------
_SKIP = {"model_options"}  # set through the model options group


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    from digits.train.config import CHOICES, FIELD_HELP, PRESETS, TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    g = p.add_argument_group("training config (each overrides the preset's value)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in _SKIP:
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        # %% escapes argparse's own formatting; the defaults are the presets', as every run starts from one.
        text = f"{FIELD_HELP[f.name]} (default: {_preset_values(f.name, PRESETS)})".replace("%", "%%")
        if hint is bool:
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif f.name in CHOICES:
            g.add_argument(flag, choices=CHOICES[f.name], default=None, help=text)
        elif hint in (int, float, str):
            g.add_argument(flag, type=hint, default=None, metavar=f.name.upper(), help=text)
        elif f.name == "betas":
            g.add_argument(flag, default=None, metavar="B1,B2", help=text)
        elif f.name == "augment":
            g.add_argument(flag, default=None, metavar="SPEC", help=text)


def _preset_values(name: str, presets: dict[str, Any]) -> str:
    """The presets' values of one config field: 'adam' when all agree, else 'seed 0.001, fast 0.02, ...'."""

    def shown(value: Any) -> str:
        if dataclasses.is_dataclass(value):  # the augmentation: its non-default settings, as --augment takes them
            fields = dataclasses.fields(value)
            changed = [f"{f.name}={getattr(value, f.name)}" for f in fields if getattr(value, f.name) != f.default]
            return ",".join(changed) or "none"
        if isinstance(value, tuple):
            return ",".join(str(v) for v in value)
        return str(value)

    values = {preset: shown(getattr(cfg, name)) for preset, cfg in presets.items()}
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return ", ".join(f"{preset} {value}" for preset, value in values.items())


def _config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    from digits.train.config import TrainConfig, parse_augment

    out: dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if f.name in _SKIP or value is None:
            continue
        if f.name == "betas":
            try:
                b1, b2 = (float(v) for v in value.split(","))
            except ValueError:
                raise UsageError(f"--betas takes two numbers like 0.9,0.999, not {value!r}") from None
            value = (b1, b2)
        elif f.name == "augment":
            value = parse_augment(value)
        out[f.name] = value
    return out


# --- commands ---------------------------------------------------------------------------------------------------
def cmd_data_fetch(args: argparse.Namespace) -> int:
    from digits.data import fetch_mnist

    path = fetch_mnist(args.data_dir, from_dir=args.from_dir)
    print(f"MNIST is verified and cached in {path}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from digits.models import count_parameters, create_model, list_models, model_info

    rows = [(n, count_parameters(create_model(n)), model_info(n).description) for n in list_models()]
    if args.json:
        print(json.dumps([{"name": n, "parameters": c, "description": d} for n, c, d in rows], indent=2))
        return 0
    width = max(len(n) for n, _, _ in rows)
    print(f"{'model':<{width}}  {'parameters':>10}  description")
    for n, c, d in rows:
        print(f"{n:<{width}}  {c:>10,}  {d}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from digits.models import create_model, summary

    print(summary(create_model(args.name, **_model_options(args))))
    return 0


def _config_of(args: argparse.Namespace) -> Any:
    """The training config a command line asks for: the preset, a --config file's fields, then the flags."""
    from digits.train.config import config_from_file, get_preset, override

    cfg = get_preset(args.preset)
    if args.config:  # a file of fields over the preset's; the flags still override both
        cfg = config_from_file(args.config, cfg)
    overrides = _config_overrides(args)
    # A preset's model options are for its own model: another --model starts from that model's defaults.
    own = cfg.model_options if overrides.get("model", cfg.model) == cfg.model else {}
    return override(cfg, **overrides, model_options={**own, **_model_options(args)})


def cmd_train(args: argparse.Namespace) -> int:
    from digits.data import load_mnist
    from digits.train.distributed import broadcast_object, launch, launched_by_torchrun, process_group, world_from_env
    from digits.train.fast.memory import keep_freed_memory
    from digits.train.loop import fit, resolve_device
    from digits.train.report import default_run_dir, link_latest

    if args.resume:
        from digits.train.checkpoint import TrainState

        out = Path(args.resume)
        if args.out and Path(args.out).resolve() != out.resolve():
            raise UsageError(f"--resume continues the run in its own folder, {out}; drop --out {args.out}")
        if not (out / CHECKPOINT_NAME).is_file():
            raise UsageError(f"nothing to resume in {out}: no {CHECKPOINT_NAME} there (finished runs have none)")
        if _config_overrides(args) or _model_options(args) or args.config:
            raise UsageError("--resume continues a run with its own config; drop the other training flags")
        state = TrainState.load(out / CHECKPOINT_NAME)
        cfg, preset = state.config, state.preset
    else:
        preset = args.preset
        cfg = _config_of(args)
        out = Path(args.out) if args.out else default_run_dir(preset, cfg)
    if args.nproc is not None:  # start torchrun, whose processes run this command without --nproc
        if launched_by_torchrun():
            raise UsageError("--nproc starts torchrun itself; under torchrun, leave it out")
        launch(args.nproc, _without_nproc(args.argv) + ([] if args.out or args.resume else ["--out", str(out)]), out)
        return 0
    world = world_from_env()  # torchrun's RANK and WORLD_SIZE; a world of one otherwise
    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    data = load_mnist(args.data_dir, from_dir=args.from_dir, log=log)
    keep_freed_memory()  # this process is the training: let glibc keep freed tensor memory for the next step
    with process_group(world, resolve_device(cfg.device, world), args.dist_timeout) as world:
        out = Path(broadcast_object(str(out), world))  # rank 0's: default names hold the time each rank started
        created = not out.exists()
        try:
            resume = bool(args.resume)
            run = fit(cfg, out, data=data, resume=resume, progress=not args.json, log=log, preset=preset, world=world)
        except KeyboardInterrupt:
            if world.is_main:
                print(f"\n{_interrupted(out, created)}", file=sys.stderr)
            return 130
        except DigitsError:  # a run that failed (diverged, disk full) and saved nothing leaves no folder behind
            saved = any((out / name).exists() for name in (CHECKPOINT_NAME, WEIGHTS_NAME))
            if world.is_main and created and out.is_dir() and not saved:
                shutil.rmtree(out, ignore_errors=True)
            raise
    if not world.is_main:
        return 0
    if args.report:
        from digits.train.html_report import report

        log(f"report: {report([out], out / 'report.html', data, log=log)}")
    latest = link_latest(out)
    if args.json:
        print(json.dumps(run.summary, indent=2))
        if latest:
            log(f"{latest} now points to {out}")
    else:
        files = ", ".join(sorted(p.name for p in Path(out).iterdir() if p.is_file() and not p.name.startswith(".")))
        print(f"model saved in {out} ({files})")
        if latest:
            print(f"{latest} now points to it")
        print(f"evaluate it with: digits evaluate {out}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from datetime import datetime

    from digits.data import load_mnist
    from digits.train.config import override
    from digits.train.report import RUNS_DIR
    from digits.train.tune import Settings, load_space, tune

    base = _config_of(args)
    if base.val_split == 0 and args.val_split is None:  # the preset holds nothing out; a search must
        base = override(base, val_split=0.1)
    out = Path(args.out) if args.out else RUNS_DIR / f"tune-{datetime.now():%Y%m%d-%H%M%S}"
    space = load_space(args.space, base, fixed=frozenset([*_config_overrides(args), *_model_options(args)]))
    load_mnist(args.data_dir, from_dir=args.from_dir)  # fetched and verified once, before the workers start
    settings = Settings(base, space, out, args.trials, args.study, args.storage, args.pruner, args.data_dir, base.seed)
    result = tune(settings, args.workers, log=lambda s: print(s, flush=True))
    print(f"results in {out}: {', '.join(p.name for p in result.files)}")
    return 0


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line without ``--nproc N`` (or ``--nproc=N``): what each of torchrun's processes runs."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def _interrupted(out: Path, created: bool) -> str:
    """What Ctrl-C left of a run in ``out`` (which this command ``created``, or not), told truthfully.

    A run stopped before its first epoch finished has nothing to resume; the folder it made is removed,
    so that no empty run folder is left behind.
    """
    if (out / CHECKPOINT_NAME).is_file():
        return f"interrupted; the last finished epoch is saved. Continue with: digits train --resume {out}"
    if created and out.is_dir():
        shutil.rmtree(out, ignore_errors=True)
    return "interrupted before the first epoch finished: nothing was saved. Run the same command to start again."


def cmd_evaluate(args: argparse.Namespace) -> int:
    from digits.data import load_mnist
    from digits.train.evaluate import evaluate_saved

    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    model = Path(args.model)
    # Where the pictures go, checked before the evaluation: by default beside the model.
    out = _writable_folder(args.out or (model if model.is_dir() else model.parent), "--out")
    saved = evaluate_saved(model, load_mnist(args.data_dir, log=log), out)
    result, meta = saved.result, saved.meta
    report = {
        "model": meta["model"],
        "model_options": meta.get("model_options", {}),
        "source": str(args.model),
        **result.to_dict(),
        "confusion_png": str(saved.confusion_png),
        "mistakes_png": str(saved.mistakes_png),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{meta['model']}: test accuracy {result.accuracy:.4f}, loss {result.loss:.4f}, "
        f"{report['errors']} errors in {result.n:,}"
    )
    pc = result.per_class()
    print("digit  precision  recall     f1")
    for d in range(NUM_CLASSES):
        print(f"{d:>5}  {pc['precision'][d]:>9.4f}  {pc['recall'][d]:>6.4f}  {pc['f1'][d]:.4f}")
    print("confusion (rows: true digit, columns: predicted):")
    print("      " + " ".join(f"{d:>5}" for d in range(NUM_CLASSES)))
    for d, row in enumerate(result.confusion):
        print(f"{d:>5} " + " ".join(f"{v:>5}" for v in row))
    print(f"pictures: {saved.confusion_png}, {saved.mistakes_png}")
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from digits.data import load_mnist
    from digits.models.weights import load_weights
    from digits.train.evaluate import evaluate, to_tensors

    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    if args.out:
        from digits.train.ensemble import join

        if args.tta:
            raise UsageError("-o joins the models as they are; give models trained with tta for test-time shifts")
        summary = join(args.models, args.out, data_dir=args.data_dir, log=log)
        if args.json:
            print(json.dumps(summary, indent=2))
        return 0
    if len(args.models) < 2 and not args.tta:
        raise UsageError("an ensemble needs at least two models (or one with --tta)")
    models = [load_weights(m)[0] for m in args.models]
    data = load_mnist(args.data_dir, log=log)
    images, labels = to_tensors(data.test_images, data.test_labels)
    members = [evaluate(m, images, labels).accuracy for m in models]
    result = evaluate(models, images, labels, tta=args.tta)
    report = {
        "models": args.models,
        "tta": args.tta,
        "member_accuracies": members,
        "test_accuracy": result.accuracy,
        "test_loss": result.loss,
        "errors": int((result.predictions != result.labels).sum()),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for path, acc in zip(args.models, members):
        print(f"{acc:.4f}  {path}")
    tta = " with test-time shifts" if args.tta else ""
    print(f"ensemble of {len(models)}{tta}: test accuracy {result.accuracy:.4f} ({report['errors']} errors)")
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    from digits.data import load_mnist
    from digits.files import write_json
    from digits.spec import SHIPPED_SAFETENSORS
    from digits.train import robustness as rb

    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    model = Path(args.model) if args.model else SHIPPED_SAFETENSORS
    if not model.exists():
        raise UsageError(f"no run directory or model file at {model}: give a run directory or a .safetensors file")
    if args.baseline and not Path(args.baseline).exists():
        raise UsageError(f"--baseline {args.baseline} does not exist: give a run, a .safetensors or a robustness.json")
    out = _writable_folder(args.out or rb.default_out_dir(model), "--out")
    data = load_mnist(args.data_dir, log=log)
    images, labels = data.test_images, data.test_labels
    if args.on == "validation":
        try:
            images, labels = rb.validation_digits(model, data)
        except ValueError as exc:
            raise UsageError(f"--on validation: {exc}; measure it --on test") from None
    images, labels = images[: args.limit], labels[: args.limit]
    progress = (lambda s: print(f"measuring {s}", file=sys.stderr)) if args.progress else None
    result = rb.evaluate_robustness_saved(
        model,
        images,
        labels,
        digits=args.on,
        reader=args.reader,
        severities=args.severity,
        seed=args.seed,
        progress=progress,
    )
    baseline = None
    if args.baseline:
        try:
            baseline = rb.load_baseline(args.baseline, result, images, labels)
        except ValueError as exc:
            raise UsageError(f"--baseline: {exc}") from None
    chart, examples = rb.write_pictures(result, images[:3], out, args.severity[0] if len(args.severity) == 1 else None)
    record = {**result.to_dict(baseline), "chart_png": str(chart), "examples_png": str(examples)}
    write_json(out / rb.JSON_NAME, record)
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    print(rb.format_table(result, baseline))
    print(f"written: {out / rb.JSON_NAME}, {chart}, {examples}")
    return 0


# --- reading images: no torch on the onnxruntime path (digits.reading is imported inside the commands) ----------
def _load_recognizer(args: argparse.Namespace) -> Any:
    from digits.reading import Recognizer

    if args.debug_dir:  # before any reading: a folder that cannot be written is better known now
        _writable_folder(args.debug_dir, "--debug-dir")
    return Recognizer.load(
        args.model, backend=args.backend, threshold=args.threshold, find_pages=args.page, max_pixels=args.max_pixels
    )


def _writable_folder(path: str | Path, flag: str) -> Path:
    """``path`` as a folder this command can write into, made if missing; a UsageError naming ``flag`` if not.

    Tried by writing a file there (and removing it): permissions alone do not tell a read-only mount.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{flag} {folder} is a file, not a folder; give a folder (it is made if missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise UsageError(f"cannot write in {folder} ({why}); give a folder you may write in with {flag}") from exc
    return folder


def _print_notes(results: list[Any]) -> None:
    """What the user should know about how each picture was read (only the first frame of a GIF), on stderr."""
    for r in results:
        for note in r.notes:
            print(f"{r.file}: note: {note}", file=sys.stderr)


# What `digits read DIR` picks up in a folder (and its subfolders).
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _inputs(names: list[str]) -> tuple[list[str], list[Any]]:
    """The images named on the command line, as (labels, sources): a file as it is, a folder as the image
    files under it (recursively, sorted), ``-`` as the bytes on standard input."""
    labels: list[str] = []
    sources: list[Any] = []
    for name in names:
        path = Path(name)
        if name == "-":
            if sys.stdin.isatty():
                raise UsageError(
                    "- reads an image from standard input, and none is piped in: digits read - < photo.jpg"
                )
            labels.append("-")
            sources.append(sys.stdin.buffer.read())
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
            if not found:
                raise UsageError(f"{name} is a folder with no image files in it ({', '.join(_IMAGE_SUFFIXES)})")
            labels += [str(p) for p in found]
            sources += [str(p) for p in found]
        else:
            labels.append(name)
            sources.append(name)
    return labels, sources


def _run_batch(run: Any, names: list[str]) -> tuple[list[Any], list[Any]]:
    """``run`` (predict_batch or read_batch) on the command line's images: their sources and results,
    each result named as the user named its image."""
    labels, sources = _inputs(names)
    return sources, [dataclasses.replace(r, file=label) for r, label in zip(run(sources), labels)]


def _save_debug(
    recognizer: Any, directory: str, index: int, source: Any, predictions: list[Any], *, numbers: bool
) -> None:
    """Write what the model saw for one input into DIR/<index>_<name>/ (see digits.reading.pipeline.save_debug)."""
    from digits.errors import ImageError
    from digits.reading import Glyph, save_debug

    glyphs = [Glyph(box=p.box, image=p.image28, line=p.line) for p in predictions if p.image28 is not None]
    trace: dict[str, Any] = {}
    try:
        # Again, to record the decisions taken on the way.
        gray = recognizer.prepare(source, numbers=numbers, trace=trace).gray
    except ImageError:  # it was read a moment ago; if it changed since, the 28x28 images still help
        gray, trace = None, {}
    stem = Path(source).stem if isinstance(source, str) else "stdin"
    save_debug(glyphs, Path(directory) / f"{index:03d}_{stem}", gray=gray, trace=trace or None)


_MARKS = {".": "a decimal point", "-": "a minus sign"}


def _describe(p: Any) -> str:
    """'7 (0.99)', '7? (0.55, uncertain: low confidence)', '. (a decimal point)' or 'no digit found'."""
    if p.symbol is not None:
        return f"{p.symbol} ({_MARKS.get(p.symbol, 'a mark')})"
    if p.digit is None:
        return str(p.reason)
    doubt = f", uncertain: {p.reason}" if p.uncertain else ""
    return f"{p.digit}{'?' if p.uncertain else ''} ({p.confidence:.2f}{doubt})"


def cmd_predict(args: argparse.Namespace) -> int:
    _check_correct(args, numbers=False)
    recognizer = _load_recognizer(args)
    sources, results = _run_batch(recognizer.predict_batch, args.images)
    for i, (src, r) in enumerate(zip(sources, results)):
        if args.debug_dir and r.ok and r.result.digit is not None:
            _save_debug(recognizer, args.debug_dir, i, src, [r.result], numbers=False)
    if args.json:
        print(json.dumps([r.to_dict(top_k=args.top_k) for r in results], indent=2))
    else:
        _print_notes(results)
    for r in results:
        if not r.ok:
            print(f"{r.file}: error: {r.error}", file=sys.stderr)
        elif not args.json:
            top = ""
            if args.top_k and r.result.digit is not None:
                top = "  top: " + ", ".join(f"{d} {p:.2f}" for d, p in r.result.top(args.top_k))
            print(f"{r.file}: {_describe(r.result)}{top}")
    if args.correct is not None and results[0].ok:
        _keep_correction(args, sources[0], results[0].result, numbers=False)
    return EXIT_FAILURE if any(not r.ok for r in results) else 0


def cmd_read(args: argparse.Namespace) -> int:
    _check_correct(args, numbers=True)
    recognizer = _load_recognizer(args)
    sources, results = _run_batch(recognizer.read_batch, args.images)
    for i, (src, r) in enumerate(zip(sources, results)):
        if args.debug_dir and r.ok:
            _save_debug(recognizer, args.debug_dir, i, src, list(r.result.digits), numbers=True)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        _print_notes(results)
    for r in results:
        if not r.ok:
            print(f"{r.file}: error: {r.error}", file=sys.stderr)
        elif not args.json:
            reading = r.result
            text = reading.text.replace("\n", " / ") if reading.digits else "(no digits found)"
            guess = f"  (best guess: {reading.best.replace(chr(10), ' / ')})" if "?" in reading.text else ""
            print(f"{r.file}: {text}{guess}")
            if args.verbose:
                for d in reading.digits:
                    x, y, w, h = d.box
                    top = ", ".join(f"{k} {q:.2f}" for k, q in d.top(3))
                    top = f"; top: {top}" if top else ""
                    print(f"  {_describe(d)} at x={x} y={y} w={w} h={h}, line {d.line}{top}")
    if args.correct is not None and results[0].ok:
        _keep_correction(args, sources[0], results[0].result, numbers=True)
    return EXIT_FAILURE if any(not r.ok for r in results) else 0


def _check_correct(args: argparse.Namespace, *, numbers: bool) -> None:
    """--correct and --store make sense together, for one picture, with a label that is a digit (or a number)."""
    from digits.corrections import parse_labels

    if args.correct is None:
        if args.store:
            raise UsageError("--store keeps corrections: give the right answer with --correct too")
        return
    if not args.store:
        raise UsageError("--correct needs --store DIR: the folder the correction is kept in")
    if len(args.images) != 1 or Path(args.images[0]).is_dir():
        raise UsageError("--correct corrects one picture: give exactly one IMAGE file (or - for standard input)")
    labels = parse_labels(args.correct)  # ConfigError for what is not a number
    if not numbers and len(labels) != 1:
        raise UsageError(f"digits predict --correct takes one digit, not {args.correct!r}; use digits read --correct")


def _keep_correction(args: argparse.Namespace, source: Any, result: Any, *, numbers: bool) -> None:
    """Keep what the user says ``source`` really shows in the --store folder: one correction per digit."""
    from digits.corrections import CorrectionStore, parse_labels
    from digits.errors import ConfigError

    image = source if isinstance(source, bytes) else Path(source).read_bytes()
    store = CorrectionStore(args.store)
    if numbers:
        found = [
            (d.image28, d.digit, d.confidence) for d in result.digits if d.symbol is None and d.image28 is not None
        ]
        kept = store.add_number(image, found, args.correct, source="cli")
    else:
        if result.image28 is None:
            raise ConfigError(
                "no digit was found in the picture, so there is nothing to correct; crop it or draw larger"
            )
        (label,) = parse_labels(args.correct)
        kept = [
            store.add(
                image, result.image28, label=label, predicted=result.digit, confidence=result.confidence, source="cli"
            )
        ]
    print(f"kept {len(kept)} correction(s) in {store.root} ({len(store)} in all)", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> int:
    src = Path(args.model)
    if args.out:
        out = Path(args.out)
    elif src.is_dir():
        out = src / (ONNX_INT8_NAME if args.int8 else ONNX_NAME)
    else:
        raise UsageError("give the output file with -o FILE when exporting a .safetensors file")
    weights = src / WEIGHTS_NAME if src.is_dir() else src
    if out.resolve() in (weights.resolve(), src.resolve()):
        raise UsageError(f"-o {out} is the model being exported; write the export to another file")
    if src.is_dir() and out.resolve().parent == src.resolve() and out.name not in (ONNX_NAME, ONNX_INT8_NAME):
        raise UsageError(
            f"-o {out} would write over the run's own files; in a run folder, exports are "
            f"{ONNX_NAME} or {ONNX_INT8_NAME}"
        )
    if out.is_dir():
        raise UsageError(f"{out} is a folder; give a file name with -o")
    if out.exists() and not args.force:
        raise UsageError(f"{out} already exists; pass --force to replace it, or choose another file with -o")
    # Written beside the target and moved into place only once checked: a failed export leaves the old
    # file as it was and no half-checked file behind.
    final, out = out, out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        code = _export_checked(args, src, out, final)
    finally:
        out.unlink(missing_ok=True)
    return code


def _export_checked(args: argparse.Namespace, src: Path, out: Path, final: Path) -> int:
    from digits.export import export_onnx, int8_accuracy, parity_images, read_metadata

    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    report: dict[str, Any] = {"source": str(src), "file": str(final), "format": args.format, "int8": args.int8}
    if args.int8:
        from digits.data import load_mnist

        data = load_mnist(args.data_dir, log=log)
        # Activation ranges come from the first training images: real digits, never test digits.
        calibration = data.train_images[: args.calibration_images]
        export_onnx(src, out, int8=True, calibration_images=calibration)
        fp32, int8 = int8_accuracy(src, out, data.test_images, data.test_labels)
        lost = 100 * (fp32 - int8)
        report.update(
            calibration_images=len(calibration),
            test_accuracy_fp32=fp32,
            test_accuracy_int8=int8,
            accuracy_lost_pp=lost,
        )
        log(f"int8 test accuracy {int8:.4f}, fp32 {fp32:.4f}: {lost:.2f} pp lost")
    else:
        from digits.export import check_parity

        export_onnx(src, out)
        report["max_abs_diff"] = check_parity(src, out, parity_images(), atol=args.atol)
        log(f"ONNX logits equal torch's within {report['max_abs_diff']:.1e} (allowed {args.atol:g})")
    report["metadata"] = read_metadata(out)
    report["bytes"] = out.stat().st_size
    os.replace(out, final)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"wrote {final} ({report['bytes'] / 1024:.0f} KiB), checked with onnx.checker")
    return 0


# --- corrections and learning from them (digits.corrections, digits.train.adapt) ----------------------------------
def cmd_corrections(args: argparse.Namespace) -> int:
    from digits.corrections import CorrectionStore

    store = CorrectionStore(args.store)
    if args.action == "list":
        records = store.list()
        if args.json:
            print(json.dumps([c.to_dict() for c in records], indent=2))
            return 0
        for c in records:
            answer = "no digit" if c.predicted is None else f"{c.predicted} ({c.confidence:.2f})"
            print(f"{c.id}  {c.label}  model said {answer}  {c.source}  {store.root / c.id / c.image}")
        print(f"{len(records)} correction(s) in {store.root}", file=sys.stderr)
    elif args.action == "export":
        if not args.out:
            raise UsageError("export needs -o OUT: a .npz file, or a folder for PNGs and corrections.csv")
        print(f"exported {len(store)} correction(s) to {store.export(args.out)}")
    else:
        print(f"removed {store.clear()} correction(s) from {store.root}")
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    if args.rollback:
        from digits.train.adapt import rollback

        if args.store or args.out:
            raise UsageError("--rollback LINK takes no --store or -o: it only points LINK back at the model before")
        parent = rollback(args.rollback)
        print(
            f"{args.rollback} now points to {parent}"
            if parent is not None
            else f"removed {args.rollback}: the model before was the shipped one, which commands use without --model"
        )
        return 0
    if not args.store or not args.out:
        raise UsageError("digits adapt needs --store DIR (the corrections) and -o RUN (the new model's folder)")
    from digits.corrections import CorrectionStore
    from digits.train.adapt import adapt
    from digits.train.config import AdaptConfig

    fields = ("steps", "lr", "layers", "blend", "guard_limit", "seed", "threads")
    config = dataclasses.replace(AdaptConfig(), **{f: getattr(args, f) for f in fields if getattr(args, f) is not None})
    if args.max_mnist_drop is not None:  # percentage points on the command line, a share in the config
        if not 0 <= args.max_mnist_drop < 100:
            raise UsageError(
                f"--max-mnist-drop is in percentage points, from 0 to 100 (e.g. 0.1), not {args.max_mnist_drop:g}"
            )
        config = dataclasses.replace(config, max_mnist_drop=args.max_mnist_drop / 100)
    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    done = adapt(
        CorrectionStore(args.store),
        args.out,
        base=args.base,
        config=config,
        data_dir=args.data_dir,
        link=args.link,
        log=log,
    )
    if args.json:
        print(json.dumps({"accepted": done.accepted, **done.summary}, indent=2))
    if not done.accepted:
        print(
            f"error: the adapted model was refused and is kept aside in {done.dir} (refused.safetensors); "
            "the model in use is unchanged",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if not args.json:
        print(f"model saved in {done.dir}; use it with --model {args.link or done.dir}")
    return 0


def _adapt_parsers(sub: Subparsers) -> None:
    c = sub.add_parser(
        "corrections",
        help="list, export or clear the corrections kept in a store",
        description="The corrections people made (digits serve --store, digits predict/read --correct --store).",
    )
    c.add_argument("action", choices=["list", "export", "clear"])
    c.add_argument("--store", required=True, metavar="DIR", help="the correction store")
    c.add_argument(
        "-o",
        "--out",
        metavar="OUT",
        help="export: a file ending .npz (arrays images, labels, predicted, ids, created), or else a folder of "
        "<id>_<label>.png (the 28x28 the model saw) and corrections.csv",
    )
    c.add_argument("--json", action="store_true", help="list: print the records as JSON")
    c.set_defaults(func=cmd_corrections)

    from digits.train.config import ADAPT_LAYERS, AdaptConfig

    d = AdaptConfig()
    a = sub.add_parser(
        "adapt",
        help="learn from a store's corrections: a new model, kept only if it is better for them and not worse on MNIST",
        description="Fine-tune a copy of a model on the corrections in --store (replaying MNIST training digits 1:1), "
        "holding a quarter of them out: the new model is accepted only if it does better on those and loses at "
        "most 0.1 pp of MNIST test accuracy (both printed and stored in its metadata). An accepted model is a run "
        "folder every command takes with --model; a refused one is kept aside in -o as refused.safetensors, and "
        "the command exits with 1. The base model is never changed.",
    )
    a.add_argument("--store", metavar="DIR", help="the corrections to learn from")
    a.add_argument(
        "--base", metavar="MODEL", help="a run folder or .safetensors to start from (default: the shipped model)"
    )
    a.add_argument("-o", "--out", metavar="RUN", help="the new model's folder (new or empty)")
    a.add_argument(
        "--link",
        metavar="LINK",
        help="when accepted, make LINK a link to RUN (give commands --model LINK); see --rollback",
    )
    a.add_argument(
        "--rollback",
        metavar="LINK",
        help="point LINK back at the model its run was adapted from (removed when that is the shipped model)",
    )
    a.add_argument("--steps", type=_positive(int), help=f"optimizer steps (default: {d.steps})")
    a.add_argument("--lr", type=_positive(float), help=f"learning rate (default: {d.lr:g})")
    a.add_argument("--layers", choices=ADAPT_LAYERS, help=f"which layers learn (default: {d.layers})")
    a.add_argument("--blend", type=_positive(float), help=f"share of the change kept, in (0, 1] (default: {d.blend:g})")
    a.add_argument(
        "--guard-limit",
        type=_positive(int),
        metavar="N",
        help="measure the MNIST guard on the first N test digits only (default: all 10,000)",
    )
    a.add_argument(
        "--max-mnist-drop",
        type=float,
        metavar="PP",
        help=f"the most MNIST test accuracy the gate lets a model lose, in percentage points (default: "
        f"{100 * d.max_mnist_drop:g}); on a --guard-limit of 2,000 digits one digit is 0.05",
    )
    a.add_argument("--seed", type=int, help=f"random seed (default: {d.seed})")
    a.add_argument("--threads", type=_positive(int), help="torch threads (default: torch's)")
    a.add_argument("--json", action="store_true", help="print the gate's figures and the record as JSON")
    _data_dir(a)
    a.set_defaults(func=cmd_adapt)


def build_parser() -> argparse.ArgumentParser:
    from digits import __version__

    p = argparse.ArgumentParser(prog="digits", description="Handwritten digit recognition on MNIST and real images.")
    p.add_argument("--version", action="version", version=f"digits {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_data_parser, _models_parsers, _train_parser, _evaluation_parsers, _reading_parsers, _export_parser):
        add(sub)
    _tune_parser(sub)
    _adapt_parsers(sub)
    _serve_parser(sub)
    return p


Subparsers = Any  # argparse's _SubParsersAction, which is private


def _data_dir(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--data-dir", help="where MNIST is cached (default: $DIGITS_DATA_DIR or the user cache)")


def _data_parser(sub: Subparsers) -> None:
    d = sub.add_parser("data", help="get and verify MNIST")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    f = dsub.add_parser("fetch", help="download (or copy) MNIST, verify its checksums, cache it")
    _data_dir(f)
    f.add_argument("--from", dest="from_dir", help="a folder holding the four IDX files (raw or .gz)")
    f.set_defaults(func=cmd_data_fetch)


def _models_parsers(sub: Subparsers) -> None:
    m = sub.add_parser("models", help="list the registered models with their parameter counts")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)
    s = sub.add_parser("summary", help="layer table of a model, like Keras' model.summary()")
    s.add_argument("name")
    _add_model_options(s)
    s.set_defaults(func=cmd_summary)


def _train_parser(sub: Subparsers) -> None:
    from digits.train.config import DIST_TIMEOUT_S, PRESET_PURPOSES

    t = sub.add_parser("train", help="train a model (a preset, with any field overridden)")
    purposes = ", ".join(f"{name} ({purpose})" for name, purpose in PRESET_PURPOSES.items())
    t.add_argument("--preset", default="seed", help=f"named config to start from: {purposes}".replace("%", "%%"))
    t.add_argument(
        "--out",
        help="run directory (default: runs/<time>-<preset>-<model>-s<seed>; a run in runs/ becomes runs/latest)",
    )
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    t.add_argument(
        "--config", metavar="FILE", help="a TOML or JSON file of training config fields over the preset's (flags win)"
    )
    t.add_argument(
        "--nproc",
        type=_positive(int),
        metavar="N",
        help="train data-parallel in N processes on this machine (starts torchrun; docs/training.md for more)",
    )
    t.add_argument(
        "--dist-timeout",
        type=_positive(float),
        default=DIST_TIMEOUT_S,
        metavar="S",
        help="in a distributed run: seconds a process waits for the others before the job fails (default: %(default)g)",
    )
    t.add_argument("--json", action="store_true", help="print a machine-readable summary at the end")
    t.add_argument("--report", action="store_true", help="write report.html (digits report) in the run at the end")
    t.add_argument("--from", dest="from_dir", help="a folder holding the four MNIST IDX files, if not cached yet")
    _data_dir(t)
    _add_model_options(t)
    _add_config_flags(t)
    t.set_defaults(func=cmd_train)


def _tune_parser(sub: Subparsers) -> None:
    from digits.train.config import PRESET_PURPOSES
    from digits.train.tune import PRUNERS

    tu = sub.add_parser(
        "tune",
        help="search hyperparameters with Optuna, choosing on validation data (docs/training.md)",
        description="Trains a preset under values drawn from a search space, prunes trials that fall behind, and "
        "saves the best trial's config as best.json, which digits train --config takes. A training flag fixes its "
        "value: the space no longer searches it.",
    )
    purposes = ", ".join(f"{name} ({purpose})" for name, purpose in PRESET_PURPOSES.items())
    tu.add_argument("--preset", default="fast", help=f"config the trials start from: {purposes}".replace("%", "%%"))
    tu.add_argument("--config", metavar="FILE", help="a TOML or JSON file of training config fields over the preset's")
    tu.add_argument("--trials", type=_positive(int), default=20, help="trials the study holds at the end (default: 20)")
    tu.add_argument("--out", help="folder of the study's files and trials (default: runs/tune-<time>)")
    tu.add_argument(
        "--storage",
        metavar="URL",
        help="a database URL shared by several machines (postgresql://..., sqlite:///...), or a journal file "
        "(default: study.journal in --out)",
    )
    tu.add_argument(
        "--study", default="digits", metavar="NAME", help="the study's name in the storage (default: digits)"
    )
    tu.add_argument("--space", metavar="FILE", help="a TOML or JSON search space over the default one")
    tu.add_argument(
        "--workers", type=_positive(int), default=1, metavar="K", help="local worker processes (default: 1)"
    )
    tu.add_argument("--pruner", choices=PRUNERS, default="median", help="how trials that fall behind are stopped")
    tu.add_argument("--from", dest="from_dir", help="a folder holding the four MNIST IDX files, if not cached yet")
    _data_dir(tu)
    _add_model_options(tu)
    _add_config_flags(tu)
    tu.set_defaults(func=cmd_tune)


def cmd_report(args: argparse.Namespace) -> int:
    from digits.data import load_mnist
    from digits.train.html_report import report

    first = Path(args.models[0])
    out = Path(args.out) if args.out else (first if first.is_dir() else Path.cwd()) / "report.html"
    _writable_folder(out.parent, "--out")  # before minutes of measuring
    log = lambda s: print(s, file=sys.stderr)  # noqa: E731
    severity = None if args.severity == "none" else int(args.severity)
    path = report(args.models, out, load_mnist(args.data_dir, log=log), severity=severity, log=log)
    print(f"wrote {path}: open it in a browser")
    return 0


def _evaluation_parsers(sub: Subparsers) -> None:
    e = sub.add_parser("evaluate", help="test accuracy, per-class metrics, confusion matrix, worst mistakes")
    e.add_argument("model", help="a run directory or a .safetensors file")
    e.add_argument("--out", help="where to write confusion.png and mistakes.png (default: beside the model)")
    e.add_argument("--json", action="store_true")
    _data_dir(e)
    e.set_defaults(func=cmd_evaluate)
    en = sub.add_parser(
        "ensemble",
        help="average several trained models (and one-pixel shifts) on the test set; with -o, join them into one",
    )
    en.add_argument("models", nargs="+", help="run directories or .safetensors files")
    en.add_argument(
        "-o",
        "--out",
        help="write the models joined as one (a new run folder that every command takes with --model): its "
        "temperature fitted on the validation digits they all held out, its test accuracy measured",
    )
    en.add_argument("--tta", action="store_true", help="also average over one-pixel shifts of each image")
    en.add_argument("--json", action="store_true")
    _data_dir(en)
    en.set_defaults(func=cmd_ensemble)
    rp = sub.add_parser(
        "report",
        help="one HTML page of how good models are and where they fail (opens offline)",
        description="Measure each model on the MNIST test set (accuracy, per-digit metrics, confusion, worst "
        "mistakes, corruptions, calibration, pictures that are no digit) and write one self-contained HTML page; "
        "several models are also compared side by side.",
    )
    rp.add_argument("models", nargs="+", metavar="MODEL", help="run directories or .safetensors files")
    rp.add_argument("-o", "--out", help="the page to write (default: report.html in the first run directory)")
    rp.add_argument(
        "--severity",
        choices=["1", "2", "3", "4", "5", "none"],
        default="3",
        help="corruption severity to measure (none: leave corruptions out, faster; default: %(default)s)",
    )
    _data_dir(rp)
    rp.set_defaults(func=cmd_report)
    _robustness_parser(sub)


def _severities(text: str) -> tuple[int, ...]:
    """An argparse type: '3' -> (3,), 'all' -> (1, 2, 3, 4, 5)."""
    if text == "all":
        return (1, 2, 3, 4, 5)
    if text not in ("1", "2", "3", "4", "5"):
        raise argparse.ArgumentTypeError(f"severity is 1, 2, 3, 4, 5 or all, not {text!r}")
    return (int(text),)


def _robustness_parser(sub: Subparsers) -> None:
    r = sub.add_parser(
        "robustness",
        help="accuracy under 26 corruptions (MNIST-C's and real pictures'), at severities 1 to 5",
        description="Accuracy on the MNIST test digits under each corruption of digits.train.corruptions, "
        "the mean corrupted accuracy and, given a baseline, the mean corruption error (mCE). Writes "
        "robustness.json, a bar chart (robustness.png) and a grid of examples (robustness_examples.png).",
    )
    r.add_argument("model", nargs="?", help="a run directory or a .safetensors file (default: the shipped model)")
    r.add_argument("--severity", type=_severities, default=(1, 2, 3, 4, 5), metavar="1..5|all", help="default: all")
    r.add_argument(
        "--baseline",
        metavar="RUN",
        help="compare with this model (a run, .safetensors, or a robustness.json measured alike), e.g. a seed run",
    )
    r.add_argument(
        "--out",
        help="where to write the JSON and the pictures (default: beside the model; ./robustness for the shipped one)",
    )
    r.add_argument("--seed", type=int, default=0, help="seed of the corruptions' randomness (default: %(default)s)")
    r.add_argument(
        "--on",
        choices=("test", "validation"),
        default="test",
        help="MNIST's test digits, or the training digits the run held out for validation: tune a recipe's "
        "robustness there, never on the test set (default: %(default)s)",
    )
    r.add_argument("--limit", type=_positive(int), metavar="N", help="measure the first N digits only (default: all)")
    r.add_argument(
        "--reader",
        action="store_true",
        help="read each corrupted digit as a picture, the way digits predict does (background, polarity, "
        "contrast and framing found first), rather than give it to the bare network",
    )
    r.add_argument("--progress", action="store_true", help="name each corruption on stderr as it is measured")
    r.add_argument("--json", action="store_true")
    _data_dir(r)
    r.set_defaults(func=cmd_robustness)


def _reading_args(sp: argparse.ArgumentParser) -> None:
    from digits.reading import BACKENDS, DEFAULT_THRESHOLD

    sp.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="PNG, JPEG, BMP, GIF, TIFF or WebP files, folders of them (searched recursively), or - for standard input",
    )
    sp.add_argument("--model", help="a run directory, .safetensors or .onnx file (default: the shipped model)")
    sp.add_argument(
        "--backend",
        choices=BACKENDS,
        default=BACKENDS[0],
        help="onnxruntime (needs an .onnx file) or torch (a .safetensors file); auto prefers onnxruntime",
    )
    sp.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        metavar="P",
        help="calibrated confidence below which a digit is reported as uncertain (default: %(default)s)",
    )
    sp.add_argument(
        "--json",
        action="store_true",
        help="print one JSON list with an object per image; an image that failed has an 'error' entry",
    )
    sp.add_argument(
        "--page",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also read inside a page found on a darker surround (paper on a desk, a scanner's edge, a turned "
        "page's dark corners), straightened; what lies beyond it is never read as digits (default: on)",
    )
    sp.add_argument("--debug-dir", metavar="DIR", help="save the 28x28 images the model saw, and boxes.png")
    sp.add_argument(
        "--max-pixels",
        type=_positive(int),
        default=MAX_PIXELS,
        metavar="N",
        help="refuse pictures of more pixels than this, width x height (default: %(default)s)",
    )


def _reading_parsers(sub: Subparsers) -> None:
    pr = sub.add_parser(
        "predict",
        help="the one digit in each image, with calibrated confidence",
        description="The one digit in each image. A digit below the confidence threshold, or unlike a "
        "handwritten digit, is marked uncertain; an image without ink gives no digit. Exits with 1 if "
        "any image could not be read (the others are still read).",
    )
    _reading_args(pr)
    pr.add_argument("--top-k", type=_positive(int), metavar="K", help="also list the K most probable digits")
    pr.add_argument("--correct", metavar="LABEL", help="the digit the picture really shows: kept in --store")
    pr.add_argument("--store", metavar="DIR", help="the correction store --correct adds to (digits corrections)")
    pr.set_defaults(func=cmd_predict)
    rd = sub.add_parser(
        "read",
        help="read the numbers in each image (e.g. 2026)",
        description="All the digits in each image, top line first, left to right. In the text an "
        "uncertain digit is written '?' (the best guess follows, and --json lists each digit's alternatives), "
        "and lines are joined by a newline (' / ' without --json). "
        "Exits with 1 if any image could not be read (the others are still read).",
    )
    _reading_args(rd)
    rd.add_argument("-v", "--verbose", action="store_true", help="also print each digit's confidence and box")
    rd.add_argument(
        "--correct",
        metavar="LABELS",
        help="the number the picture really shows, e.g. 2026: one correction per digit read, kept in --store "
        "(the count of digits must match)",
    )
    rd.add_argument("--store", metavar="DIR", help="the correction store --correct adds to (digits corrections)")
    rd.set_defaults(func=cmd_read)


def _export_parser(sub: Subparsers) -> None:
    from digits.export import CALIBRATION_IMAGES, PARITY_ATOL  # torch-free at import

    ex = sub.add_parser("export", help="export a trained model to ONNX (optionally int8) for onnxruntime")
    ex.add_argument("model", help="a run directory or a .safetensors file")
    ex.add_argument("--format", choices=["onnx"], default="onnx")
    ex.add_argument("-o", "--out", metavar="FILE", help="output file (default: RUN/model.onnx, or model.int8.onnx)")
    ex.add_argument(
        "--int8",
        action="store_true",
        help="quantize weights and activations to 8 bits, calibrated on MNIST training images; "
        "reports the test accuracy before and after",
    )
    ex.add_argument(
        "--calibration-images",
        type=_positive(int),
        default=CALIBRATION_IMAGES,
        metavar="N",
        help="training images for int8 (default: %(default)s)",
    )
    ex.add_argument(
        "--atol",
        type=_positive(float),
        default=PARITY_ATOL,
        help="largest logit difference allowed from torch (default: %(default)s)",
    )
    ex.add_argument("--force", action="store_true", help="replace the output file if it exists (never the model)")
    ex.add_argument("--json", action="store_true")
    _data_dir(ex)
    ex.set_defaults(func=cmd_export)


# --- serving: the HTTP API and the drawing page (digits.serve) ---------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from digits.serve import Limits, ServeConfig, run

    limits = Limits(
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
        max_batch=args.max_batch,
        timeout_s=args.timeout,
    )
    config = ServeConfig(
        host=args.host,
        port=args.port,
        model=args.model,
        backend=args.backend,
        threshold=args.threshold,
        find_pages=args.page,
        workers=args.workers,
        threads=args.threads,
        store=args.store,
        adapt_every=args.adapt_every or 0,
        limits=limits,
    )
    run(config, access_log=args.access_log)
    return 0


def _serve_parser(sub: Subparsers) -> None:
    from digits.reading import BACKENDS, DEFAULT_THRESHOLD
    from digits.serve.settings import MIB, Limits

    defaults = Limits()
    sv = sub.add_parser(
        "serve",
        help="the HTTP API and a drawing page (http://127.0.0.1:8000/)",
        description="Serve the model over HTTP: POST /v1/predict, /v1/read and /v1/predict/batch, GET /v1/model, "
        "/healthz, /readyz, /metrics and /docs, and a drawing page at /. Runs until Ctrl-C.",
    )
    sv.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)"
    )
    sv.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    sv.add_argument("--model", help="a run directory, .safetensors or .onnx file (default: the shipped model)")
    sv.add_argument("--backend", choices=BACKENDS, default=BACKENDS[0], help="as for digits predict")
    sv.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, metavar="P", help="as for digits predict")
    sv.add_argument("--page", action=argparse.BooleanOptionalAction, default=True, help="as for digits read")
    sv.add_argument("--workers", type=_positive(int), default=1, help="processes, each with the model (default: 1)")
    sv.add_argument(
        "--threads", type=_positive(int), help="inference threads in each worker (default: the cores shared out)"
    )
    sv.add_argument("--store", metavar="DIR", help="keep the corrections people send in DIR (default: off)")
    sv.add_argument(
        "--adapt-every",
        type=_positive(int),
        metavar="N",
        help="with --store: after every N new corrections, run digits adapt in the background and serve the "
        "model it accepts (DIR/models/current; digits adapt --rollback DIR/models/current goes back)",
    )
    sv.add_argument(
        "--max-body-mb",
        type=_positive(float),
        default=defaults.max_body_bytes / MIB,
        metavar="MB",
        help="largest request body (default: %(default)g MiB)",
    )
    sv.add_argument(
        "--max-pixels",
        type=_positive(int),
        default=defaults.max_pixels,
        metavar="N",
        help="most pixels a picture may have (default: %(default)s)",
    )
    sv.add_argument(
        "--max-batch",
        type=_positive(int),
        default=defaults.max_batch,
        metavar="N",
        help="most pictures in one batch (default: %(default)s)",
    )
    sv.add_argument(
        "--timeout",
        type=_positive(float),
        default=defaults.timeout_s,
        metavar="S",
        help="seconds a request may take (default: %(default)g)",
    )
    sv.add_argument("--access-log", action="store_true", help="log every request (slower)")
    sv.set_defaults(func=cmd_serve)


# Optional dependencies (pyproject.toml's extras): the extra that brings each.
_EXTRAS = {
    "torch": "train",
    "safetensors": "train",
    "matplotlib": "train",
    "optuna": "tune",
    "onnx": "onnx",
    "onnxscript": "onnx",
    "onnxruntime": "runtime",
    "fastapi": "serve",
    "starlette": "serve",
    "uvicorn": "serve",
    "python_multipart": "serve",
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv  # what `digits train --nproc` hands its processes
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # here, not at exit, where a closed pipe could no longer be told from a bug
        return code
    except BrokenPipeError:
        # Whoever read the output stopped reading (`digits read DIR | head`): end quietly, as a pipeline's
        # programs do, with stdout pointed at /dev/null so that Python's last flush finds no pipe to fail on.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # What the user can fix: digits' own errors, and the file system refusing (a path they gave, a full
    # disk). Anything else is a bug in digits and keeps its traceback.
    except (DigitsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except ModuleNotFoundError as exc:
        extra = _EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise  # not an optional dependency: a bug in digits or a broken installation
        print(
            f"error: `digits {args.command}` needs {exc.name}, which is not installed here. Install the "
            f"'{extra}' extra: scripts/install.sh {extra} in a checkout, or pip install 'digits[{extra}]'"
            + (
                " (install the CPU build of torch first, or pip fetches a CUDA build of several GB)"
                if extra in ("train", "onnx", "tune")
                else ""
            ),
            file=sys.stderr,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
