"""The torch-free runtime stays torch-free by construction: an AST walk over its modules' imports.

Checked modules: every module of ``edgedistill/runtime/`` and the torch-free part of
``edgedistill/backends/`` (all of it but ``torch_eager.py``, whose functions load models with
``edgedistill.models``). Every ``edgedistill`` import they make (absolute or relative, at module
level or inside a function) must stay inside ``runtime/``, the torch-free backends and the leaf
utilities below; and none may import torch or transformers at module level (the ExecuTorch
backend imports torch inside the functions that run a ``.pte``).
"""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "edgedistill"
TORCH_BACKENDS = {"edgedistill.backends.torch_eager"}
"""Backends that need torch to do anything: out of the torch-free set."""
LEAVES = {"edgedistill.errors", "edgedistill.fileutil", "edgedistill.hostcpu"}
"""Leaf utilities (standard library only) the runtime may use. Keep this list short."""
HEAVY = {"torch", "transformers"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def checked_modules() -> dict[str, Path]:
    files = [*sorted((PKG / "runtime").glob("*.py")), *sorted((PKG / "backends").glob("*.py"))]
    mods = {_module_name(f): f for f in files}
    return {m: f for m, f in mods.items() if m not in TORCH_BACKENDS}


def imports(path: Path, module: str) -> list[tuple[str, int, bool]]:
    """(absolute module name, line, at module level) of every import in the file."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            # "from .. import backends" names a module: check it; the package it comes from only when
            # something else (a function, a constant) is taken from that package's __init__
            subs = [f"{name}.{a.name}" for a in node.names if _is_module(f"{name}.{a.name}")]
            out += [(m, node.lineno, id(node) in top) for m in subs]
            if len(subs) < len(node.names):
                out.append((name, node.lineno, id(node) in top))
    return out


def _is_module(name: str) -> bool:
    path = PKG.parent / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def allowed(name: str, torch_free: set[str]) -> bool:
    return name in torch_free or name in LEAVES or name.startswith("edgedistill.runtime")


def test_the_walk_sees_relative_and_function_level_imports():
    mods = checked_modules()
    found = imports(mods["edgedistill.backends.et"], "edgedistill.backends.et")
    assert any(n == "edgedistill.errors" and top for n, _, top in found)  # "from ..errors import" resolved
    assert any(n == "torch" and not top for n, _, top in found)  # inside a function
    bundle = imports(mods["edgedistill.runtime.bundle"], "edgedistill.runtime.bundle")
    assert any(n == "edgedistill.backends" for n, _, _ in bundle)  # "from .. import backends" names the package
    assert "edgedistill.runtime.bundle" in mods and "edgedistill.backends.torch_eager" not in mods
    # the excluded backend is excluded for a reason the walk can see
    eager = imports(PKG / "backends" / "torch_eager.py", "edgedistill.backends.torch_eager")
    assert any(n.startswith("edgedistill.models") for n, _, _ in eager)


def test_runtime_imports_stay_inside_runtime_backends_and_leaves():
    mods = checked_modules()
    bad = []
    for module, path in mods.items():
        for name, line, top in imports(path, module):
            if name.split(".")[0] == "edgedistill" and not allowed(name, set(mods)):
                bad.append(f"{path.relative_to(PKG.parent)}:{line} imports {name}")
            if name.split(".")[0] in HEAVY and top:
                bad.append(f"{path.relative_to(PKG.parent)}:{line} imports {name} at module level")
    assert not bad, "\n".join(bad)


# Layers below the bench stage: what export, distill and the task code need from measuring and rendering
# lives in measure/ and report/, so none of them reaches sideways into the bench stage.
NOT_INTO_BENCH = ("distill", "export", "measure", "report", "tasks", "models", "data", "backends", "runtime")


def test_no_stage_below_bench_imports_the_bench_stage():
    bad = []
    for sub in NOT_INTO_BENCH:
        for path in sorted((PKG / sub).glob("*.py")):
            module = _module_name(path)
            for name, line, _ in imports(path, module):
                if name == "edgedistill.bench" or name.startswith("edgedistill.bench."):
                    bad.append(f"{path.relative_to(PKG.parent)}:{line} imports {name}")
    assert not bad, "\n".join(bad)
