"""`sweep` command line: each bad input is one line naming the problem, exit code 2, and the
storage is left untouched; `sweep --help` and `sweep status` never import torch."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest
from typer.testing import CliRunner

from sweep.cli import app, normalise_argv
from tests.sweep_helpers import tiny_spec_dict, write_spec


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLOUDSWEEP_DATA", raising=False)
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(app, normalise_argv(list(args)))


def assert_error(result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert text.startswith("error: ") and "\n" not in text, text
    for fragment in fragments:
        assert fragment in text
    return text


def test_spec_error_names_file_and_field(cwd, synthetic_root):
    spec = write_spec(cwd, tiny_spec_dict(budget={"epochs": 0}))
    result = run("run", "--study", str(spec), "--trials", "2", "--data", str(synthetic_root))
    assert_error(result, str(spec), "budget.epochs", "greater than or equal to 1")
    assert not (cwd / "sweeps.db").exists()


FOCAL = {"type": "categorical", "choices": ["focal", "mixed-focal"]}


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        # a focal gamma < 0 as a fixed value, and as both ends of a range: every trial would
        # fail as "bug"; the spec's load says it once, naming the field
        ({"fixed": {"loss": {"name": "focal", "gamma": -1}}, "space": {}},
         ["fixed.loss", "loss.gamma must be >= 0, got -1"]),
        ({"space": {"loss.name": FOCAL, "loss.gamma": {"type": "float", "low": -3, "high": -1}}},
         ["space.loss.gamma", "loss.gamma must be >= 0, got -3"]),
        ({"pruner": {"name": "hyperband", "reduction_factor": 1}},
         ["pruner.reduction_factor: Input should be greater than or equal to 2 (got 1)"]),
        ({"pruner": {"name": "median", "patience": -1}},
         ["pruner.patience: Input should be greater than or equal to 0 (got -1)"]),
        ({"space": {"model.name": {"type": "categorical", "choices": ["unet", "nope"]}}},
         ["space.model.name: unknown model 'nope'"]),
        ({"fixed": {"model": {"name": "unet", "base_width": 2}}, "space": {}},
         ["fixed.model.base_width: Input should be greater than or equal to 4 (got 2)"]),
    ],
)
def test_bad_loss_model_or_pruner_values_fail_sweep_run_up_front(cwd, synthetic_root, changes,
                                                                   fragments):
    spec = write_spec(cwd, {**tiny_spec_dict(), **changes})
    result = run("run", "--study", str(spec), "--trials", "2", "--data", str(synthetic_root))
    assert_error(result, f"error: {spec}: ", *fragments)
    assert not (cwd / "sweeps.db").exists()


def test_unknown_study_lists_the_available_ones(cwd):
    result = run("run", "--study", "los-search", "--trials", "2")
    assert_error(result, "unknown study 'los-search'", "loss-search", "demo")
    assert not (cwd / "sweeps.db").exists()


@pytest.mark.parametrize("trials", ["0", "-3"])
def test_trials_must_be_positive(cwd, trials):
    result = run("run", "--study", "demo", "--trials", trials)
    assert_error(result, "--trials must be a positive number", f"got {trials}")
    assert not (cwd / "sweeps.db").exists() and not (cwd / "data").exists()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("not a url", "not a database URL"),
        ("sqlite:////no/such/folder/x.db", "folder /no/such/folder does not exist"),
        ("nosuchdb://host/x", "no driver for this URL"),
        ("postgresql+psycopg://bob:s3cret@127.0.0.1:1/x", "cannot connect"),
    ],
)
def test_bad_storage_url(cwd, synthetic_root, url, fragment):
    spec = write_spec(cwd, tiny_spec_dict())
    result = run("run", "--study", str(spec), "--trials", "2", "--storage", url,
                 "--data", str(synthetic_root))
    text = assert_error(result, fragment)
    assert "s3cret" not in text  # passwords are redacted
    assert not (cwd / "sweeps.db").exists()


def test_a_storage_file_that_is_not_sqlite(cwd, synthetic_root):
    (cwd / "notes.db").write_text("not a database")
    spec = write_spec(cwd, tiny_spec_dict())
    result = run("run", "--study", str(spec), "--trials", "2", "--storage", "sqlite:///notes.db",
                 "--data", str(synthetic_root))
    assert_error(result, "notes.db is not an SQLite database")
    assert (cwd / "notes.db").read_text() == "not a database"


def test_data_dir_that_is_not_38_cloud(cwd):
    (cwd / "photos").mkdir()
    spec = write_spec(cwd, tiny_spec_dict())
    result = run("run", "--study", str(spec), "--trials", "2", "--data", str(cwd / "photos"))
    assert_error(result, "photos")
    assert not (cwd / "sweeps.db").exists()


def test_missing_data_says_how_to_point_at_38_cloud(cwd):
    spec = write_spec(cwd, tiny_spec_dict())  # the spec has no `data`
    result = run("run", "--study", str(spec), "--trials", "2")
    assert_error(result, "--data /path/to/38-Cloud", "CLOUDSWEEP_DATA", "make demo")
    assert not (cwd / "sweeps.db").exists()


def test_data_from_the_environment_is_used(cwd, monkeypatch):
    monkeypatch.setenv("CLOUDSWEEP_DATA", str(cwd / "from-env"))
    spec = write_spec(cwd, tiny_spec_dict(data="spec-data"))
    result = run("run", "--study", str(spec), "--trials", "2")
    assert_error(result, "from-env")  # the env var wins over the spec's `data`


def test_status_and_best_without_a_database(cwd):
    assert_error(run("status"), "no such database")
    assert_error(run("best", "--export"), "no such database")
    assert not (cwd / "sweeps.db").exists()


def test_status_and_best_on_an_empty_database_file_write_nothing_into_it(cwd):
    (cwd / "sweeps.db").write_bytes(b"")
    for args in (["status"], ["best"], ["best", "--export"], ["mirror", "--study", "s"]):
        assert_error(run(*args), "sweeps.db", "holds no studies (an empty database)")
    assert (cwd / "sweeps.db").stat().st_size == 0
    assert sorted(p.name for p in cwd.iterdir()) == ["sweeps.db"]


def test_bare_export_means_the_default_folder():
    assert normalise_argv(["best", "--export"]) == ["best", "--export="]
    assert normalise_argv(["best", "--export", "--top", "2"])[1] == "--export="
    assert normalise_argv(["best", "--export", "out"]) == ["best", "--export", "out"]


PROBE = """
import sys
from sweep.cli import main
sys.argv = ["sweep", *sys.argv[1:]]
try:
    main()
except SystemExit as exit:
    code = exit.code
print("EXIT", code, "TORCH", "torch" in sys.modules)
"""


@pytest.mark.parametrize("args", [["--help"], ["status"], ["status", "--study", "s"]])
def test_help_and_status_do_not_import_torch(tmp_path, args):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'sweeps.db'}")
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert "EXIT 0 TORCH False" in done.stdout, done.stdout + done.stderr


def test_a_finished_command_freezes_the_heap_so_exit_skips_collecting_it(monkeypatch):
    """`sweep`'s exit would otherwise spend half a second in the interpreter's last garbage
    collection over Optuna's and SQLAlchemy's objects (measured by bench/sweep_overhead).
    """
    import gc

    from sweep.cli.entry import main

    gc.unfreeze()
    monkeypatch.setattr(sys, "argv", ["sweep", "--version"])
    try:
        with pytest.raises(SystemExit) as done:
            main()
        assert done.value.code == 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_shell_completion_is_on():
    from typer.completion import get_completion_script
    from typer.testing import CliRunner

    from sweep.cli import app

    # the options are there (whatever shell runs the suite: CI's is sh, which typer lacks)
    out = CliRunner().invoke(app, ["--help"], prog_name="sweep")
    assert "--install-completion" in out.output and "--show-completion" in out.output
    script = get_completion_script(prog_name="sweep", complete_var="_SWEEP_COMPLETE",
                                   shell="bash")
    assert "_sweep_completion" in script
