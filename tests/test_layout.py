"""The package's layout keeps its dependencies pointing one way; these rules are read off the source.

Each module's imports are parsed with ``ast`` (never executed): those at module level (what importing it
runs) and those inside functions (what calling it may import). ``if TYPE_CHECKING:`` blocks are left out.

    cli -> (train | reading | export | serve)      reading -> (models on the torch path only)
    serve -> (reading, corrections, core)  corrections -> core
    train -> (models, data, reading: calibration, and the pipeline its captured copies are read by)
    export -> models        models, data -> core
    core: spec, errors, files, _lazy (import nothing of digits but each other)
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import digits

SRC = Path(digits.__file__).resolve().parent


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. digits.reading.backends
    target: str  # what it imports, e.g. torch or digits.models.weights
    at_import: bool  # at module level (runs when the module is imported), not inside a function


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str) -> list[Import]:
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, at_import: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue  # for the type checker only; never runs
            if isinstance(child, ast.Import):
                found.extend(Import(name, alias.name, at_import) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from .cache import ...
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.append(Import(name, base, at_import))
                for alias in child.names:  # from digits.train import plots: a submodule
                    if f"{base}.{alias.name}" in MODULES:
                        found.append(Import(name, f"{base}.{alias.name}", at_import))
            # A function's body runs when it is called; a class body runs at import.
            visit(child, at_import and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(ast.parse(path.read_text()), True)
    return found


def in_package(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


def loaded_by_importing(name: str) -> set[str]:
    """Every module importing ``name`` loads: its module-level imports, theirs, and each parent package."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        parts = current.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b first
        if current in MODULES:
            todo += [i.target for i in imports_of(current) if i.at_import]
    return seen


def everything_in(package: str) -> list[str]:
    return [m for m in MODULES if in_package(m, package)]


def test_the_import_parser_sees_imports_at_every_level():
    found = {(i.target, i.at_import) for i in imports_of("digits.reading.backends")}
    assert ("numpy", True) in found  # module level
    assert ("onnxruntime", False) in found and ("torch", False) in found  # inside the backends' __init__
    assert ("digits.models.weights", False) in found
    assert not any(t == "torch" and at for t, at in found)
    assert "torch" in loaded_by_importing("digits.models.weights")  # through digits.models.layers


@pytest.mark.parametrize("module", everything_in("digits.reading"))
def test_reading_never_imports_training_data_export_or_the_cli(module):
    for i in imports_of(module):
        for forbidden in ("digits.train", "digits.data", "digits.export", "digits.cli"):
            assert not in_package(i.target, forbidden), f"{module} imports {i.target}"


@pytest.mark.parametrize("module", everything_in("digits.reading"))
def test_reading_imports_no_torch_until_the_torch_backend_is_used(module):
    # (tests/test_recognizer.py::test_reading_needs_no_torch reads a picture that way with torch blocked.)
    loaded = loaded_by_importing(module)
    assert "torch" not in loaded and not any(in_package(m, "digits.models") for m in loaded), module


@pytest.mark.parametrize("module", ["digits.export", *everything_in("digits.models"), *everything_in("digits.data")])
def test_export_models_and_data_know_no_reading_and_no_cli(module):
    for i in imports_of(module):
        assert not in_package(i.target, "digits.reading"), f"{module} imports {i.target}"
        assert not in_package(i.target, "digits.cli"), f"{module} imports {i.target}"


@pytest.mark.parametrize("module", [*everything_in("digits.models"), *everything_in("digits.data")])
def test_models_and_data_know_no_training(module):
    for i in imports_of(module):
        assert not in_package(i.target, "digits.train"), f"{module} imports {i.target}"
        if in_package(module, "digits.data"):
            assert not in_package(i.target, "digits.models"), f"{module} imports {i.target}"


CORE = ("digits.spec", "digits.errors", "digits.files", "digits._lazy")


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_only_the_core(module):
    for i in imports_of(module):
        if in_package(i.target, "digits"):
            assert i.target in CORE, f"{module} imports {i.target}"
    assert "torch" not in loaded_by_importing(module)


# What a server may import of digits: reading pictures, the correction store and the core. Never the training
# code, MNIST, the networks or export (a server never trains nor touches MNIST), and never torch.
SERVE_MAY_IMPORT = ("digits.reading", "digits.corrections", "digits.serve", *CORE)


@pytest.mark.parametrize("module", everything_in("digits.serve"))
def test_serve_imports_only_reading_corrections_and_the_core(module):
    for i in imports_of(module):
        if in_package(i.target, "digits") and i.target != "digits":  # `from digits import __version__`
            assert any(in_package(i.target, allowed) for allowed in SERVE_MAY_IMPORT), f"{module} imports {i.target}"
        assert not in_package(i.target, "torch"), f"{module} imports {i.target}"


@pytest.mark.parametrize("module", [*everything_in("digits.serve"), "digits.corrections"])
def test_serve_and_corrections_load_no_torch_nor_training_code(module):
    loaded = loaded_by_importing(module)
    assert "torch" not in loaded, module
    for forbidden in ("digits.train", "digits.data", "digits.models", "digits.export", "digits.cli"):
        assert not any(in_package(m, forbidden) for m in loaded), f"importing {module} loads {forbidden}"


def test_the_correction_store_imports_only_the_core():
    for i in imports_of("digits.corrections"):
        if in_package(i.target, "digits"):
            assert i.target in CORE, f"digits.corrections imports {i.target}"


def test_the_layout_rules_would_catch_a_server_that_imports_training_code(tmp_path, monkeypatch):
    # The rule above reads real imports: one planted in a copy of a serve module is found.
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from digits.train.loop import fit\n    import torch\n")
    monkeypatch.setitem(MODULES, "digits.serve.bad", bad)
    with pytest.raises(AssertionError, match="digits.train.loop"):
        test_serve_imports_only_reading_corrections_and_the_core("digits.serve.bad")


@pytest.mark.parametrize("module", [m for m in MODULES if not in_package(m, "digits.testing")])
def test_the_library_never_imports_the_test_pictures(module):
    assert not any(in_package(i.target, "digits.testing") for i in imports_of(module)), module


@pytest.mark.parametrize(
    "module", ["digits", "digits.cli", "digits.train", "digits.train.config", "digits.models", "digits.export"]
)
def test_entry_points_and_configs_import_without_torch(module):
    # `digits --help`, the reading commands and the training flags start without torch's ~1 s import.
    assert "torch" not in loaded_by_importing(module), module


def test_only_the_command_sets_the_allocator_for_the_process():
    # fit() must leave the process as it found it: glibc's setting is made by `digits train` alone.
    users = {i.module for m in MODULES for i in imports_of(m) if in_package(i.target, "digits.train.fast.memory")}
    assert users == {"digits.cli"}, users


def test_nothing_runs_at_import(tmp_path):
    """Every module imports with no data, no cache and no side effect: no file written, no thread count or
    allocator setting changed (nanoGPT reads its settings in its entry point, not at import)."""
    code = textwrap.dedent(
        """
        import importlib, sys, torch
        threads = torch.get_num_threads()
        for name in sys.argv[1:]:
            importlib.import_module(name)
        assert torch.get_num_threads() == threads, "a module changed torch's thread count"
        print("ok")
        """
    )
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "DIGITS_DATA_DIR": str(tmp_path / "data"),
    }
    out = subprocess.run([sys.executable, "-c", code, *MODULES], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
    assert not list(tmp_path.iterdir()), f"importing wrote {list(tmp_path.rglob('*'))}"
