"""cloudseg is a plain library: it must not import the orchestration layer or its tools."""

import ast
from pathlib import Path

import pytest

FORBIDDEN = {"sweep", "optuna", "optuna_dashboard", "wandb", "typer"}
ROOT = Path(__file__).resolve().parents[1] / "cloudseg"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_cloudseg_does_not_import_orchestration(path):
    assert not imported_roots(path) & FORBIDDEN


def test_detector_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from optuna import trial\n")
    assert imported_roots(bad) & FORBIDDEN == {"optuna"}
