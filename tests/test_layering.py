"""The package layering, read from the source with `ast` (every import, inside functions too):

- `nfs/model` imports nothing from `nfs/data` or `nfs/eval`;
- `nfs/eval` imports only the pipeline, its metrics and its baselines (and its own modules, which obey the same
  rule); the metrics and baselines themselves may measure with `nfs/geometry` and the ICT model;
- `app/` and `app.py` import only the pipeline, I/O (`nfs/io`), the exports (`nfs/export.py`) and the run options
  (`nfs/options.py`);
- and nothing in `nfs/` imports the UI (gradio, viser, `app/`).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _is_module(name: str) -> bool:
    """True when `name` (dotted) is a module or package of this repository."""
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _package(path: Path) -> str:
    """The dotted package a repository file belongs to ('' for a top-level script)."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts if path.name == "__init__.py" else parts[:-1])


def imported_modules(source: str, path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in `source` (the file at `path`, for relative imports): `import a.b`,
    `from a import b` (as `a.b` when that is a module, else `a`), relative imports resolved, and
    `importlib.import_module` / `__import__` called with a literal name; once per line and module, by line."""
    out = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package(path).split(".") if _package(path) else []
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}" if base else a.name
                out.append((node.lineno, sub if _is_module(sub) else base))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                out.append((node.lineno, node.args[0].value))
    return sorted(set(out))


def _within(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _ours(module: str) -> bool:
    return _within(module, ("nfs", "app"))


EVAL_LEAVES = {"nfs/eval/metrics.py", "nfs/eval/baselines.py"}
UI = ("gradio", "viser", "app")


def forbidden(rel: str, module: str) -> str | None:
    """Why the file `rel` (repository-relative, '/') may not import `module`; None when it may."""
    if rel.startswith("nfs/") and _within(module, UI):
        return "nfs/ imports no UI"
    if rel.startswith("nfs/model/"):
        if _within(module, ("nfs.data", "nfs.eval")):
            return "nfs/model imports nothing from nfs/data or nfs/eval"
    elif rel in EVAL_LEAVES:
        if _ours(module) and not _within(module, ("nfs.geometry", "nfs.ict", "nfs.eval.metrics", "nfs.eval.baselines")):
            return "the eval's metrics and baselines import only nfs/geometry, nfs.ict and each other"
    elif rel.startswith("nfs/eval/"):
        if _ours(module) and not (_within(module, ("nfs.pipeline",)) or module.startswith("nfs.eval.")):
            return "nfs/eval imports only nfs.pipeline, nfs.eval.metrics, nfs.eval.baselines and its own modules"
    elif rel.startswith("app/") or rel == "app.py":
        if _ours(module) and not _within(module, ("nfs.pipeline", "nfs.io", "nfs.export", "nfs.options", "app")):
            return "app/ imports only nfs.pipeline, nfs.io, nfs.export and nfs.options"
    return None


def layered_files() -> list[Path]:
    """app.py and every Python file under nfs/ and app/."""
    return [REPO / "app.py"] + sorted((REPO / "nfs").rglob("*.py")) + sorted((REPO / "app").rglob("*.py"))


def violations(path: Path, source: str) -> list[str]:
    """'file:line imports module (rule)' for each import of `source` (the file at `path`) against the layering."""
    rel = path.relative_to(REPO).as_posix()
    found = [(line, module, forbidden(rel, module)) for line, module in imported_modules(source, path)]
    return [f"{rel}:{line} imports {module} ({why})" for line, module, why in found if why]


def test_the_files_are_found():
    rels = {p.relative_to(REPO).as_posix() for p in layered_files()}
    assert {"app.py", "app/ui.py", "nfs/eval/run.py", "nfs/eval/report.py", "nfs/model/network.py",
            "nfs/pipeline/__init__.py", "nfs/pipeline/run.py"} <= rels


def test_the_import_reader_sees_every_form():
    fake = REPO / "nfs" / "eval" / "fake.py"        # only its place matters (relative imports)
    source = ("import os\nimport nfs.ict as ict\nfrom nfs.eval import metrics\nfrom . import report\n"
              "from .. import render\nfrom ..data.subjects import HELD_OUT_SEED_BASE\nfrom nfs import Clip\n"
              "def f():\n    from nfs.data import warps\n    importlib.import_module('nfs.regions')\n")
    assert imported_modules(source, fake) == [(1, "os"), (2, "nfs.ict"), (3, "nfs.eval.metrics"),
                                              (4, "nfs.eval.report"), (5, "nfs.render"), (6, "nfs.data.subjects"),
                                              (7, "nfs"), (9, "nfs.data.warps"), (10, "nfs.regions")]


@pytest.mark.parametrize("rel, module, allowed", [
    ("nfs/model/network.py", "nfs.regions", True), ("nfs/model/network.py", "nfs.data.subjects", False),
    ("nfs/model/losses.py", "nfs.eval.metrics", False),
    ("nfs/eval/run.py", "nfs.pipeline", True), ("nfs/eval/run.py", "nfs.eval.baselines", True),
    ("nfs/eval/run.py", "numpy", True), ("nfs/eval/run.py", "nfs.ict", False), ("nfs/eval/run.py", "nfs", False),
    ("nfs/eval/figures.py", "nfs.render", False), ("nfs/eval/report.py", "nfs.data.benchmark", False),
    ("nfs/eval/metrics.py", "nfs.geometry.normals", True), ("nfs/eval/baselines.py", "nfs.ict", True),
    ("nfs/eval/baselines.py", "nfs.pipeline", False),
    ("app/ui.py", "nfs.io.registry", True), ("app/ui.py", "nfs.export", True), ("app/ui.py", "app.state", True),
    ("app/ui.py", "gradio", True), ("app/ui.py", "nfs", False), ("app/tabs/video.py", "nfs.video", False),
    ("app.py", "nfs.model.network", False), ("app.py", "nfs.exporter", False),
    ("nfs/pipeline/target.py", "nfs.model.network", True), ("nfs/pipeline/run.py", "gradio", False),
    ("nfs/export.py", "app.viewer", False), ("nfs/train.py", "nfs.data.subjects", True),
])
def test_the_rules(rel, module, allowed):
    assert (forbidden(rel, module) is None) == allowed


def test_a_forbidden_import_is_named_with_its_file_and_line():
    source = "import numpy\nfrom nfs.io import load_clip\n\ndef f():\n    from nfs.ict import N_EXPRESSION\n"
    assert violations(REPO / "app" / "bad.py", source) == [
        "app/bad.py:5 imports nfs.ict (app/ imports only nfs.pipeline, nfs.io, nfs.export and nfs.options)"]


def test_layering_holds():
    bad = [v for path in layered_files() for v in violations(path, path.read_text(encoding="utf-8"))]
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


# ----------------------------------------------------------------------------------------------- cycles, private names

def module_name(path: Path) -> str:
    """The dotted module of a repository file (a package's __init__.py is the package)."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if path.name == "__init__.py" else parts)


def import_graph() -> dict[str, set[str]]:
    """nfs module -> the nfs modules it imports (every import, inside functions too)."""
    files = sorted((REPO / "nfs").rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): {m for _, m in imported_modules(p.read_text(encoding="utf-8"), p) if m in modules
                             and m != module_name(p)} for p in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle [a, b, ..., a] of `graph`, or None (depth-first search, modules in sorted order)."""
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def private_imports(source: str, path: Path) -> list[str]:
    """'file:line imports _name from module' for every underscore name `source` imports from another nfs module."""
    rel = path.relative_to(REPO).as_posix()
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nfs") and not node.level:
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    found.append(f"{rel}:{node.lineno} imports {a.name} from {node.module}")
    return found


def test_the_cycle_finder_names_the_modules():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    fake = REPO / "nfs" / "fake.py"
    assert private_imports("from nfs.mesh.align import _template, Alignment\nfrom os import _exit\n", fake) == [
        "nfs/fake.py:1 imports _template from nfs.mesh.align"]


def test_no_import_cycle_between_nfs_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_private_name_is_imported_from_another_module():
    files = [REPO / "app.py"] + sorted((REPO / "nfs").rglob("*.py")) + sorted((REPO / "app").rglob("*.py"))
    bad = [v for path in files for v in private_imports(path.read_text(encoding="utf-8"), path)]
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)
