"""sweep uses Optuna's public API: no private attributes or modules, no SQL on its tables, except
where Optuna has no public way to do the job (listed here with the reason)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SWEEP = sorted((ROOT / "sweep").rglob("*.py"))
OPTUNA_TABLES = ("trial_heartbeats", "trial_system_attributes", "study_system_attributes")
NOT_OPTUNA = {"self", "cls", "os", "sys"}  # `self._x` is the object's own; os._exit is stdlib

# (file, what) → why no public API does it.
EXCEPTIONS = {
    ("sweep/study/seeding.py", "from optuna.samplers._lazy_random_state"):
        "TrialSeeded seeds the wrapped sampler's random states per trial number; Optuna only "
        "offers reseed_rng(), which draws a fresh random seed",
    ("sweep/study/seeding.py", "study._storage"):
        "a sampler annotating the trial it is sampling (Optuna's own samplers do the same); "
        "a sampler is handed the Study and a FrozenTrial, neither has a public storage or id",
    ("sweep/study/seeding.py", "trial._trial_id"): "as study._storage, same line",
    ("sweep/status.py", "SQL on trial_heartbeats"):
        "heartbeat ages for `sweep status`: Optuna records heartbeats and fails stale trials, "
        "but has no public read of a heartbeat's time",
}


def optuna_privates(path: Path) -> set[str]:
    """What in `path` reaches past Optuna's public API."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            base = ast.unparse(node.value)
            if base not in NOT_OPTUNA:
                found.add(f"{base.split('.')[-1]}.{node.attr}")
        elif isinstance(node, ast.Call) and ast.unparse(node.func) == "getattr" \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and str(node.args[1].value).startswith("_"):
            found.add(f"getattr(..., {node.args[1].value!r})")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "optuna" \
                and any(part.startswith("_") for part in node.module.split(".")):
            found.add(f"from {node.module}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.lower()
            for table in OPTUNA_TABLES:
                if table in text and ("select" in text or "update" in text or "from" in text):
                    found.add(f"SQL on {table}")
    return found


@pytest.mark.parametrize("path", SWEEP, ids=lambda p: str(p.relative_to(ROOT)))
def test_sweep_uses_only_optunas_public_api(path):
    rel = str(path.relative_to(ROOT))
    allowed = {what for (file, what) in EXCEPTIONS if file == rel}
    assert optuna_privates(path) <= allowed


def test_every_exception_is_still_needed():
    used = {(str(p.relative_to(ROOT)), what) for p in SWEEP for what in optuna_privates(p)}
    assert set(EXCEPTIONS) <= used


def test_the_scan_sees_private_optuna_use(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from optuna.samplers._base import x\n"
        "def f(trial, storage):\n"
        "    self._ok = 1\n"
        "    sid = trial.study._study_id\n"
        "    inner = getattr(storage, '_backend', None)\n"
        "    return 'SELECT heartbeat FROM trial_heartbeats'\n"
    )
    assert optuna_privates(bad) == {
        "from optuna.samplers._base", "study._study_id", "getattr(..., '_backend')",
        "SQL on trial_heartbeats",
    }


def test_a_missing_artifact_names_the_stores_folder_and_the_store_pickles(tmp_path):
    import pickle

    from sweep.artifacts import artifact_store, download
    from sweep.errors import ExportError

    store = artifact_store(tmp_path / "artifacts")
    with pytest.raises(ExportError, match=f"artifact store {tmp_path / 'artifacts'} "):
        download(store, "nope", tmp_path / "out" / "x.bin")
    copy = pickle.loads(pickle.dumps(store))  # a background mirror's process gets a copy
    assert copy.folder == store.folder
