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
