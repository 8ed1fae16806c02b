"""The architecture contract (docs/architecture.md): layers import down, no cycles, heavy libraries
load only at their boundary modules, and edgeai's own modules are imported at module top."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = Path(ROOT) / "edgeai"
HEAVY = ("torch", "openvino", "nncf", "transformers")

# The modules that wrap a heavy library and import it at their top; everything else imports them
# inside the function that needs them, so `import edgeai.<anything else>` stays light.
BOUNDARY = {
    "edgeai.runtimes.torch": {"torch"},
    "edgeai.runtimes.openvino": {"openvino"},
    "edgeai.runtimes.openvino_stateful": {"openvino"},
    "edgeai.exporters.torch_onnx": {"torch"},
    "edgeai.exporters.generation": {"torch"},
    "edgeai.hf_tasks": {"torch"},
}
# Where an import of an edgeai module may sit inside a function: the CLI (one per command).
DEFERRED_OK = ("edgeai/cli.py", "edgeai/cli/")


def _modules() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != "edgeai.__main__":
            out.append(name)
    return out


def test_import_contract_holds():
    """import-linter's layers and acyclic-siblings contracts (pyproject.toml), imports inside
    functions included: an upward import or a cycle fails here."""
    pytest.importorskip("importlinter")
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_no_module_level_import_cycles():
    """No two modules reach each other through imports (at top or inside functions)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("edgeai", exclude_type_checking_imports=True)
    cycles = sorted({tuple(sorted((m, i))) for m in graph.modules for i in graph.find_modules_directly_imported_by(m)
                     if i.startswith("edgeai") and graph.chain_exists(importer=i, imported=m)})
    assert not cycles, cycles


def test_edgeai_modules_are_imported_at_module_top():
    """Deferred imports of edgeai modules only where they keep a heavy library lazy (a boundary
    module) or in the CLI (one per command)."""
    misplaced = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(DEFERRED_OK):
            continue
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgeai"):
                    targets = {f"{node.module}.{a.name}" for a in node.names} | {node.module}
                    if not targets & set(BOUNDARY):
                        misplaced.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
                elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "edgeai" for a in node.names):
                    misplaced.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    assert not misplaced, "move these to module top (or name the boundary module):\n" + "\n".join(misplaced)


def _heavy_after_importing(names: list[str]) -> set[str]:
    code = ("import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, f"import of {names if len(names) < 4 else 'the light modules'} failed:\n{out.stderr[-2000:]}"
    return {m for m in out.stdout.strip().split(",") if m}


def test_every_submodule_imports_without_heavy_libraries():
    """Each submodule, imported alone in a fresh interpreter, loads no torch/openvino/nncf/transformers,
    except the boundary modules, which load only the library they wrap.

    The light modules are imported together in one interpreter (if none of them loads a heavy library
    together, none does alone); only when that fails is each one imported alone, to name it."""
    light = [m for m in _modules() if m not in BOUNDARY]
    wrong = {}
    if _heavy_after_importing(light):
        wrong = {name: sorted(loaded) for name in light if (loaded := _heavy_after_importing([name]))}
    for name, allowed in BOUNDARY.items():
        loaded = _heavy_after_importing([name])
        if loaded - allowed:
            wrong[name] = sorted(loaded)
    assert not wrong, wrong


def test_public_names_survive_importing_every_submodule():
    """A submodule named like a public function (``edgeai.devices``) would replace it on the package
    once imported; every public name must still be what ``edgeai.__init__`` promises."""
    code = ("import importlib, sys, types, edgeai\n"
            f"for m in {_modules()!r}: importlib.import_module(m)\n"
            "bad = [n for n in edgeai.__all__ if isinstance(getattr(edgeai, n), types.ModuleType)]\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"public names shadowed by a submodule: {out.stdout.strip()}"
