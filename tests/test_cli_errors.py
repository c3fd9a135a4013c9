"""Both CLIs: a bad flag is one line and exit 2; an unexpected exception is one line that says it
is a bug and how to see its traceback, exit 1; --debug / CLOUDSWEEP_DEBUG=1 shows the traceback."""

from __future__ import annotations

import sys

import pytest

import cloudseg.cli as cloudseg_cli
import cloudseg.data
import sweep.cli as sweep_cli
import sweep.study.spec
from tests.fault_helpers import sweep_main


@pytest.fixture(autouse=True)
def _no_debug_env(monkeypatch, tmp_path):
    monkeypatch.delenv("CLOUDSWEEP_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)


def _boom(*_args, **_kwargs):
    raise RuntimeError("something nobody planned for")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "--study", "demo", "--trials", "abc"], "'--trials'"),
        (["run", "--study", "demo", "--trials", "2", "--wandb", "sometimes"], "'--wandb'"),
        (["best", "--top", "0"], "'--top'"),
        (["runn"], "No such command 'runn'"),
    ],
)
def test_sweep_bad_flags_are_one_line_exit_2(monkeypatch, capsys, args, fragment):
    code, err = sweep_main(monkeypatch, capsys, *args)
    assert code == 2 and "\n" not in err and err.startswith("error: "), err
    assert fragment in err and "╭" not in err


def test_sweep_unexpected_error_is_one_line_naming_a_bug(monkeypatch, capsys):
    monkeypatch.setattr(sweep.study.spec, "load_spec", _boom)
    code, err = sweep_main(monkeypatch, capsys, "run", "--study", "demo", "--trials", "2")
    assert code == 1 and "\n" not in err, err
    assert "bug" in err and "RuntimeError: something nobody planned for" in err
    assert "--debug" in err and "CLOUDSWEEP_DEBUG=1" in err


@pytest.mark.parametrize("how", ["flag", "env"])
def test_sweep_debug_shows_the_traceback(monkeypatch, capsys, how):
    monkeypatch.setattr(sweep.study.spec, "load_spec", _boom)
    args = ["run", "--study", "demo", "--trials", "2"]
    if how == "flag":
        args = ["--debug", *args]
    else:
        monkeypatch.setenv("CLOUDSWEEP_DEBUG", "1")
    monkeypatch.setattr(sys, "argv", ["sweep", *args])
    with pytest.raises(RuntimeError, match="nobody planned"):
        sweep_cli.main()


def test_cloudseg_bad_flag_is_one_line_exit_2(capsys, tmp_path):
    assert cloudseg_cli.main(["synth", str(tmp_path / "x"), "--seed", "abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: cloudseg synth: argument --seed"), err
    assert cloudseg_cli.main(["prepare"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "required" in err, err


def test_cloudseg_unexpected_error_is_one_line_and_debug_raises(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(cloudseg.data, "prepare_cache", _boom)
    assert cloudseg_cli.main(["prepare", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "bug" in err and "RuntimeError" in err and "--debug" in err
    with pytest.raises(RuntimeError):
        cloudseg_cli.main(["--debug", "prepare", str(tmp_path)])
    monkeypatch.setenv("CLOUDSWEEP_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cloudseg_cli.main(["prepare", str(tmp_path)])


def test_dashboard_port_out_of_range_is_a_flag_error(monkeypatch, capsys):
    code, err = sweep_main(monkeypatch, capsys, "dashboard", "--port", "99999")
    assert code == 2 and "\n" not in err and "'--port'" in err, err


def test_dashboard_on_a_taken_port_is_one_line_not_a_bug(monkeypatch, capsys, tmp_path):
    import socket

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'sweeps.db'}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = sweep_main(monkeypatch, capsys, "dashboard", "--port", str(port))
    assert code == 2 and err.splitlines()[-1] == (
        f"error: dashboard: cannot listen on 127.0.0.1:{port}: Address already in use (choose "
        "another with --port / --host)"), err


def test_a_local_worker_prints_a_tree_error_as_one_line(monkeypatch, capsys, tmp_path):
    """`python -m sweep.execution.workers` (what `sweep run --workers K` starts) joins a tree's
    problems into one line."""
    from cloudseg.errors import LayoutError
    from sweep.execution import workers

    def broken(*_args, **_kwargs):
        raise LayoutError(tmp_path, ["a.TIF: truncated", "b.TIF: missing band nir"])

    monkeypatch.setattr(workers, "work", broken)
    assert workers.main(["--study", "s", "--storage", "sqlite:///x.db"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "2 problem(s)" in err and "b.TIF: missing band nir" in err


@pytest.mark.parametrize("kind", ["SpecError", "StorageError", "WorkerError", "ExportError",
                                  "SweepError"])
def test_sweep_errors_are_one_line_and_exit_2(monkeypatch, capsys, kind):
    import sweep.errors

    error = getattr(sweep.errors, kind)

    def fail(*_args, **_kwargs):
        raise error(f"{kind} says what\nand where")

    monkeypatch.setattr(sweep.study.spec, "load_spec", fail)
    code, err = sweep_main(monkeypatch, capsys, "run", "--study", "demo", "--trials", "2")
    assert code == 2 and err == f"error: {kind} says what and where", err


def test_sweep_raises_its_own_family():
    from cloudseg.errors import CloudsegError, ConfigError
    from sweep.errors import SpecError, StorageError, SweepError
    from sweep.execution.target import StorageLost

    assert issubclass(SweepError, CloudsegError) and not issubclass(StorageError, ConfigError)
    assert issubclass(StorageLost, StorageError) and issubclass(SpecError, ConfigError)
    with pytest.raises(SpecError):
        sweep.study.spec.find_spec_file("no-such-study")
