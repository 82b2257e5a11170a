"""Which way the imports run: the package structure, read from the sources with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("robustbench_seg", "corruptions")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module a source imports, at any depth (function-level imports included).

    ``from a import b`` counts as ``a`` and ``a.b`` (``b`` may be a submodule).
    """
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = module_name(path)
            graph[name] = imported_modules(
                path.read_text(encoding="utf-8"), name, path.name == "__init__.py"
            )
    return graph


GRAPH = _graph()


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(graph: dict[str, set[str]], importer: str, forbidden: tuple[str, ...]) -> list[str]:
    """``importer -> target`` arrows from modules under ``importer`` into ``forbidden``."""
    return sorted(
        f"{mod} -> {target}"
        for mod, targets in graph.items()
        if _under(mod, importer)
        for target in targets
        if any(_under(target, f) for f in forbidden)
    )


RULES = [
    ("corruptions", ("robustbench_seg",)),
    (
        "robustbench_seg.models",
        tuple(
            f"robustbench_seg.{p}" for p in ("data", "engine", "report", "analysis", "cli", "demo")
        ),
    ),
    ("robustbench_seg.report", ("robustbench_seg.engine", "robustbench_seg.models")),
    ("robustbench_seg.models.registry", ("robustbench_seg.models.weights",)),
    ("robustbench_seg.runs", ("robustbench_seg.engine", "robustbench_seg.models")),
]


@pytest.mark.parametrize(("importer", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_layering(importer: str, forbidden: tuple[str, ...]) -> None:
    assert any(_under(m, importer) for m in GRAPH), f"no module {importer}"
    assert violations(GRAPH, importer, forbidden) == []


def test_nothing_below_the_cli_imports_it() -> None:
    allowed = {"robustbench_seg.cli", "robustbench_seg.__main__"}
    users = sorted(
        m
        for m, targets in GRAPH.items()
        if m not in allowed and any(_under(t, "robustbench_seg.cli") for t in targets)
    )
    assert users == []


def test_the_registry_is_a_leaf() -> None:
    ours = {t for t in GRAPH["robustbench_seg.models.registry"] if _under(t, "robustbench_seg")}
    assert ours <= {"robustbench_seg.errors", "robustbench_seg.errors.RobustSegError"}


def test_the_checker_sees_new_arrows() -> None:
    # A function-level import and a relative one are arrows too.
    src = "def f():\n    from robustbench_seg.engine import evaluate\nfrom ..engine import train\n"
    found = imported_modules(src, "robustbench_seg.report.tables")
    assert "robustbench_seg.engine.evaluate" in found and "robustbench_seg.engine.train" in found
    graph = {**GRAPH, "robustbench_seg.report.new": found}
    assert violations(graph, "robustbench_seg.report", ("robustbench_seg.engine",)) == [
        "robustbench_seg.report.new -> robustbench_seg.engine",
        "robustbench_seg.report.new -> robustbench_seg.engine.evaluate",
        "robustbench_seg.report.new -> robustbench_seg.engine.train",
    ]


# ----------------------------------------------------------------------------- cell names

CELLS_MODULE = "robustbench_seg/results/cells.py"
SPLITTERS = ("partition", "rpartition", "split", "rsplit")
SEPARATORS = ("-", ":")

# Splits on "-" or ":" that are not of a cell name: (file, function, method, separator) -> why.
NOT_CELLS = {
    ("robustbench_seg/analysis/erf.py", "_wrap_label", "split", "-"):
        "line breaks of a model name in a figure",
    ("robustbench_seg/data/datasets.py", "parse_natural", "partition", ":"):
        "the --natural option NAME:CONDITION,...=ROOT",
    ("robustbench_seg/data/pairs.py", "label_lut", "partition", ":"): "a label map (ids:19:255)",
    ("robustbench_seg/data/pairs.py", "label_lut", "split", ":"): "a label map (ids:19:255)",
    ("robustbench_seg/data/pairs.py", "_described", "partition", ":"): "a label map (ids:19:255)",
    ("robustbench_seg/data/pairs.py", "_described", "split", ":"): "a label map (ids:19:255)",
    ("robustbench_seg/io.py", "cpu_info", "partition", ":"): "a line of /proc/cpuinfo",
    ("robustbench_seg/models/loader.py", "_load_builder", "rpartition", ":"):
        "a custom model spec file.py:function",
    ("robustbench_seg/models/registry.py", "build", "split", ":"):
        "a model builder module:function",
}  # fmt: skip


def _separator(call: ast.Call) -> ast.expr | None:
    if call.args:
        return call.args[0]
    return next((k.value for k in call.keywords if k.arg == "sep"), None)


def cell_splits(source: str) -> list[tuple[str, str, str, int]]:
    """``(function, method, separator, line)`` of every ``x.partition(":")``-like call (the
    methods of :data:`SPLITTERS` with a constant separator of :data:`SEPARATORS`)."""
    found = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = function
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = child.name
            if (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr in SPLITTERS
                and isinstance(sep := _separator(child), ast.Constant)
                and sep.value in SEPARATORS
            ):
                found.append((function, child.func.attr, sep.value, child.lineno))
            visit(child, name)

    visit(ast.parse(source), "<module>")
    return found


def test_only_the_cells_module_splits_cell_names() -> None:
    bad, used = [], set()
    for path in sorted((ROOT / "robustbench_seg").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == CELLS_MODULE:
            continue
        for function, method, sep, line in cell_splits(path.read_text(encoding="utf-8")):
            key = (rel, function, method, sep)
            if key in NOT_CELLS:
                used.add(key)
            else:
                bad.append(f"{rel}:{line} {function}: .{method}({sep!r})")
    assert bad == [], "split cell names with robustbench_seg.results.cells.Cell"
    assert sorted(set(NOT_CELLS) - used) == [], "stale NOT_CELLS entries"


def test_the_cell_split_checker_sees_splits() -> None:
    src = 'def f(c):\n    a = c.rpartition("-")[0]\n    return c.split(sep=":"), c.split(",")\n'
    assert cell_splits(src) == [("f", "rpartition", "-", 2), ("f", "split", ":", 3)]


def test_the_cells_module_is_a_leaf() -> None:
    ours = {t for t in GRAPH["robustbench_seg.results.cells"] if _under(t, "robustbench_seg")}
    assert ours <= {"robustbench_seg.errors", "robustbench_seg.errors.RobustSegError"}


# ----------------------------------------------------------------------------- run.json

RUN_JSON_READER = ("robustbench_seg/runs.py", "read_run_info")  # the one reader of run.json
READS = ("read_text", "read_bytes", "load", "loads", "open", "_read_json_dict")


def run_json_reads(source: str) -> list[tuple[str, int]]:
    """``(function, line)`` of every function that names ``run.json`` (the string, or the
    ``RUN_JSON`` constant) and reads a file or JSON (a call of :data:`READS`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        inner = list(ast.walk(node))
        names = any(
            (isinstance(n, ast.Constant) and n.value == "run.json")
            or (isinstance(n, ast.Name) and n.id == "RUN_JSON")
            or (isinstance(n, ast.Attribute) and n.attr == "RUN_JSON")
            for n in inner
        )
        reads = any(
            isinstance(n, ast.Call)
            and (
                (isinstance(n.func, ast.Attribute) and n.func.attr in READS)
                or (isinstance(n.func, ast.Name) and n.func.id in READS)
            )
            for n in inner
        )
        if names and reads:
            found.append((getattr(node, "name", "<lambda>"), node.lineno))
    return found


def test_only_the_run_record_reads_run_json() -> None:
    bad, seen = [], False
    for path in sorted((ROOT / "robustbench_seg").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for function, line in run_json_reads(path.read_text(encoding="utf-8")):
            if (rel, function) == RUN_JSON_READER:
                seen = True
            else:
                bad.append(f"{rel}:{line} {function}")
    assert bad == [], "read run.json with robustbench_seg.runs.read_run_info (a RunInfo)"
    assert seen, "the reader moved: update RUN_JSON_READER"


def test_the_run_json_checker_sees_reads() -> None:
    src = (
        "def f(p):\n    return json.loads((p / 'run.json').read_text())\n"
        "def g(p):\n    return json.load(open(p / runs.RUN_JSON))\n"
        "def h(p):\n    return (p / RUN_JSON).exists()\n"
    )
    assert run_json_reads(src) == [("f", 1), ("g", 3)]
