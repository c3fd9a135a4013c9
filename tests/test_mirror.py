"""W&B mirror passes: real optuna studies in a real SQLite file, real wandb in offline mode.

Runs are read back with wandb's own reader (wandb-core's transaction-log inspector, as
`wandb leet inspect --json` runs it) — not by grepping files. Nothing may reach the network:
every test asserts offline mode and guards socket.connect against non-loopback addresses.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import optuna
import pytest

from cloudseg.errors import ConfigError
from sweep.mirror import mirror_study, mirrored_runs, planned_run_path, resolve_mode
from sweep.mirror.media import load_overlay_masks, save_overlay_masks
from sweep.mirror.payload import content_hash, history_rows, trial_run_id
from sweep.mirror.state import MirrorState
from tests.mirror_helpers import (
    CONFIG,
    inspect,
    make_study,
    run_dirs,
)

# Fixtures `sweep_dir` and `store` come from tests/mirror_helpers.py (a conftest plugin).
pytestmark = pytest.mark.usefixtures("no_network")


def test_one_run_per_trial_with_config_history_summary_and_masks(sweep_dir, store):
    url = f"sqlite:///{sweep_dir / 'sweeps.db'}"
    study = make_study(url, sweep_dir, store)
    wandb_dir = sweep_dir / "wandb-runs"

    report = mirror_study(url, "demo", mode="offline", wandb_dir=wandb_dir, artifact_store=store)

    assert report.ok and report.mirrored == [0, 1, 2], report
    assert f"upload later with `wandb sync {wandb_dir / 'wandb'}`" in str(report)
    assert _dry_run_sync(wandb_dir / "wandb") == 4  # three trials and the study run
    runs = {r["run_id"]: r for r in map(inspect, run_dirs(wandb_dir))}
    records = mirrored_runs(url, "demo")
    assert sorted(runs) == sorted(
        [r.run_id for r in records.values()] + [report.summary_run.split("/")[-1]]
    )
    t0 = runs[records[0].run_id]
    trial = study.trials[0]
    assert t0["run"]["run_group"] == "demo" and t0["run"]["job_type"] == "trial"
    assert t0["config"]["lr"] == pytest.approx(trial.params["lr"])
    assert t0["config"]["loss"] == trial.params["loss"]
    assert t0["config"]["resolved"] == CONFIG
    assert t0["config"]["trial_number"] == 0
    assert sorted(t0["history"]) == [1, 2]  # the epoch is the step
    assert t0["history"][1]["val/iou"] == pytest.approx(0.4)
    assert t0["history"][2]["train/loss"] == pytest.approx(0.5)
    summary = t0["summary"]
    assert summary["state"] == "complete" and summary["best/iou"] == pytest.approx(0.6)
    assert summary["objective"] == pytest.approx(0.6) and summary["best_epoch"] == 2
    assert summary["val/iou"] == pytest.approx(0.6)  # the best epoch (here also the last)
    overlay = summary["overlay"]  # two patches, each with both masks for W&B's mask viewer
    assert len(overlay["all_masks"]) == 2
    assert set(overlay["all_masks"][0]) == {"prediction", "ground_truth"}
    assert "model:unet" in t0["tags"] and "complete" in t0["tags"] and t0["exit_code"] == 0

    pruned, failed = runs[records[1].run_id], runs[records[2].run_id]
    assert pruned["summary"]["state"] == "pruned" and "pruned" in pruned["tags"]
    # a trial that stopped early has no objective and no val/ or best/ figures to sort by
    for stopped in (pruned, failed):
        assert not {k for k in stopped["summary"] if k == "objective"
                    or k.startswith(("val/", "best/"))}, stopped["summary"]
    assert pruned["summary"]["partial/val/iou"] == pytest.approx(
        study.trials[1].user_attrs["metrics"]["iou"])  # its best epoch, kept apart
    assert failed["summary"]["state"] == "failed" and failed["summary"]["failure"] == "oom"
    assert "failure:oom" in failed["tags"] and failed["exit_code"] == 1
    assert sorted(failed["history"]) == [1, 2]

    study_run = next(r for r in runs.values() if r["run"]["job_type"] == "study")
    assert study_run["summary"]["trials"] == 3 and study_run["summary"]["trials_failed"] == 1
    assert study_run["summary"]["trials"]  # the table is logged as a W&B table
    table = {k: v for k, v in study_run["history"][0].items() if k.startswith("trials.")}
    assert table["trials._type"] == "table-file" and table["trials.nrows"] == 3
    study_dir = next(d for d in run_dirs(wandb_dir) if d.name.endswith("-study"))
    logged = json.loads((study_dir / "files" / table["trials.path"]).read_text())
    assert {"lr", "loss", "state", "best/iou", "run_id"} <= set(logged["columns"])
    by_trial = {row[0]: dict(zip(logged["columns"], row, strict=True)) for row in logged["data"]}
    assert by_trial[2]["state"] == "failed" and by_trial[0]["best/iou"] == pytest.approx(0.6)
    planned = planned_run_path(url, "demo", 0)
    assert records[0].run_path == planned == f"cloudsweep/{records[0].run_id}"


def test_second_pass_uploads_nothing_and_reruns_resume_the_same_runs(storage_url, tmp_path, store):
    make_study(storage_url, tmp_path, store, n=2, outcomes={1: "pruned"})
    first_dir, other_machine = tmp_path / "wb1", tmp_path / "wb2"
    first = mirror_study(
        storage_url, "demo", mode="offline", wandb_dir=first_dir, artifact_store=store
    )
    ids = {r.run_id for r in mirrored_runs(storage_url, "demo").values()}
    assert first.mirrored == [0, 1] and len(ids) == 2 and len(run_dirs(first_dir)) == 3

    again = mirror_study(
        storage_url, "demo", mode="offline", wandb_dir=first_dir, artifact_store=store
    )
    elsewhere = mirror_study(storage_url, "demo", mode="offline", wandb_dir=other_machine)
    assert again.mirrored == [] and again.up_to_date == [0, 1] and again.ok
    assert elsewhere.mirrored == [] and not run_dirs(other_machine)
    assert len(run_dirs(first_dir)) == 3  # no new run folder at all

    make_study(storage_url, tmp_path, store, n=1, outcomes={})  # one more trial: only it goes up
    assert mirror_study(storage_url, "demo", mode="offline", wandb_dir=first_dir).mirrored == [2]

    forced = mirror_study(
        storage_url,
        "demo",
        mode="offline",
        wandb_dir=other_machine,
        force=True,
        summary=False,
        trials=[0],
    )
    assert forced.mirrored == [0]
    (rerun,) = [inspect(d)["run_id"] for d in run_dirs(other_machine)]
    assert rerun == mirrored_runs(storage_url, "demo")[0].run_id and rerun in ids


def test_same_study_name_in_another_database_gets_other_run_ids(tmp_path, store):
    urls = [f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db")]
    for url in urls:
        optuna.create_study(storage=url, study_name="demo")
    ids = [planned_run_path(url, "demo", 0) for url in urls]
    assert ids[0] != ids[1] and ids[0] == planned_run_path(urls[0], "demo", 0)
    with pytest.raises(ConfigError, match="no study 'dmeo' in the storage; available: demo"):
        mirror_study(urls[0], "dmeo", mode="offline")


def test_api_key_never_reaches_storage_runs_or_messages(sweep_dir, store, monkeypatch):
    key = "k" * 40
    monkeypatch.setenv("WANDB_API_KEY", key)
    url = f"sqlite:///{sweep_dir / 'sweeps.db'}"
    study = optuna.create_study(storage=url, study_name="demo")
    trial = study.ask()
    trial.set_user_attr("failure", "bug")
    trial.set_user_attr("failure_message", f"401 for api_key={key}")
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert resolve_mode("online") == "offline"  # WANDB_MODE=offline wins over a present key

    report = mirror_study(url, "demo", mode="online", wandb_dir=sweep_dir / "wb")

    assert report.mirrored == [0] and report.mode == "offline"
    (run,) = [inspect(d) for d in run_dirs(sweep_dir / "wb") if d.name.endswith("-t0")]
    assert run["summary"]["failure_message"] == "401 for api_key=***"
    with MirrorState(url) as state:
        assert key not in repr(state.all("demo"))
    files = [p for p in sweep_dir.rglob("*") if p.is_file() and p.suffix != ".db"]
    assert not [p for p in files if key.encode() in p.read_bytes()]


def test_resolve_mode(monkeypatch, tmp_path):
    assert resolve_mode("off") == "off"
    assert resolve_mode("auto") == "offline"
    with pytest.raises(ValueError, match="online, offline, off or auto"):
        resolve_mode("sometimes")
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert resolve_mode("online") == "offline"  # no key anywhere: write offline folders
    (tmp_path / "netrc").write_text("machine api.wandb.ai login user password secret\n")
    assert resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("online") == "off"


def test_payload_falls_back_to_intermediate_values_and_ignores_own_attr():
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    trial = create_trial(
        state=TrialState.PRUNED,
        params={"lr": 0.1},
        distributions={"lr": FloatDistribution(0.01, 1.0)},
        intermediate_values={1: 0.2, 3: 0.5},
    )
    assert history_rows(trial) == [(1, {"objective": 0.2}), (3, {"objective": 0.5})]
    before = content_hash(trial)
    trial.set_user_attr("wandb_run", "cloudsweep/x")
    assert content_hash(trial) == before
    trial.set_user_attr("failure", "oom")
    assert content_hash(trial) != before
    assert len(trial_run_id("a study/with:odd#chars" * 5, "abc123", 12345)) <= 64


def test_overlay_masks_bundle_round_trip_and_shape_check(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    mask = np.eye(8, dtype=bool)
    path = save_overlay_masks(tmp_path / "overlay_masks.npz", image, mask, ~mask)
    (patch,) = load_overlay_masks(path.read_bytes())
    assert patch["prediction"].sum() == 8 and patch["ground_truth"].sum() == 56
    with pytest.raises(ValueError, match="same H, W"):
        save_overlay_masks(tmp_path / "bad.npz", image, mask[:4], mask)


def _dry_run_sync(folder) -> int:
    """`wandb sync --dry-run FOLDER` (wandb's own CLI, offline): the runs it would upload. It
    lists them and stops before any login or network."""
    import os
    import re

    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "false"}
    done = subprocess.run([sys.executable, "-m", "wandb", "sync", "--dry-run", str(folder)],
                          capture_output=True, text=True, timeout=120, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    found = re.search(r"Would sync (\d+) run", output)
    assert found, output
    return int(found.group(1))


def test_sweep_run_prints_the_sync_folder_of_its_offline_runs(sweep_dir, store, monkeypatch):
    """`sweep run --wandb offline` ends with the folder `wandb sync` accepts (the mirror table
    says which runs this machine wrote during the run, whichever worker wrote them)."""
    from typer.testing import CliRunner

    import sweep.execution.runner as runner
    from sweep.cli import app

    url = f"sqlite:///{sweep_dir / 'sweeps.db'}"
    wandb_dir = sweep_dir / "wb"

    def fake_run_study(spec, trials, **kw):  # the trials and the mirror, without training
        make_study(url, sweep_dir, store, n=1, outcomes={})
        assert kw["hooks"]["wandb"].mode == "offline"
        mirror_study(url, "demo", mode="offline", wandb_dir=wandb_dir, artifact_store=store)
        return runner.RunSummary(study="demo", storage=url, target=1, complete=1, pruned=0,
                                 failed=0, best_number=0, best_value=0.5, headline="0.5000")

    monkeypatch.setattr(runner, "run_study", fake_run_study)
    out = CliRunner().invoke(app, ["run", "--study", "demo", "--trials", "1", "--storage", url,
                                   "--wandb", "offline"])
    assert out.exit_code == 0, out.output
    line = out.output.strip().splitlines()[-1]
    assert line == f"W&B runs written offline: upload later with `wandb sync {wandb_dir}/wandb`"


def test_importing_the_mirror_does_not_import_wandb():
    code = "import sys, sweep.mirror, sweep.mirror.background; print('wandb' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_sweep_mirror_command_uploads_what_is_missing(sweep_dir, store):
    from typer.testing import CliRunner

    from sweep.cli import app

    url = f"sqlite:///{sweep_dir / 'sweeps.db'}"
    make_study(url, sweep_dir, store, n=1, outcomes={})
    args = ["mirror", "--study", "demo", "--storage", url, "--wandb-dir", str(sweep_dir / "wb")]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "(offline): 1 mirrored, 0 up to date, 0 failed" in first.output
    assert "wandb sync" in first.output
    again = CliRunner().invoke(app, [*args, "--wandb", "offline"])
    assert again.exit_code == 0 and "0 mirrored, 1 up to date" in again.output
    missing = CliRunner().invoke(app, [*args[:2], "nope", *args[3:]])
    assert missing.exit_code == 2 and "no study 'nope'" in missing.output


def test_summary_and_overlay_are_the_best_epochs_when_the_last_epoch_is_worse(sweep_dir, store):
    """The issue's case: best val IoU 0.587 at epoch 1, 0.0001 at the last epoch."""
    from tests.mirror_helpers import epoch, write_overlays

    url = f"sqlite:///{sweep_dir / 'sweeps.db'}"
    study = optuna.create_study(storage=url, study_name="worse", direction="maximize")

    def objective(trial):
        history = [epoch(1, 0.587), epoch(2, 0.0001)]
        trial.set_user_attr("config", CONFIG)
        trial.set_user_attr("history", history)
        trial.set_user_attr("best_epoch", 1)
        names = ("tp", "fp", "fn", "tn", "iou", "dice")
        trial.set_user_attr("metrics", {k: history[0][k] for k in names})
        png, masks = write_overlays(sweep_dir, trial.number)
        trial.set_user_attr("artifacts", {
            key: optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(path),
                                                  study_or_trial=trial)
            for key, path in (("overlay", png), ("overlay_masks", masks))})
        return 0.587

    study.optimize(objective, n_trials=1)
    wandb_dir = sweep_dir / "wandb-runs"
    report = mirror_study(url, "worse", mode="offline", wandb_dir=wandb_dir,
                          artifact_store=store, summary=False)
    assert report.ok, report
    (run,) = [r for r in map(inspect, run_dirs(wandb_dir)) if r["run"]["job_type"] == "trial"]
    summary = run["summary"]
    assert summary["val/iou"] == pytest.approx(0.587)
    assert summary["best/iou"] == pytest.approx(0.587)
    assert summary["val/tp"] == 10 and summary["train/loss"] == pytest.approx(1.0)  # epoch 1's
    assert summary["summary_epoch"] == 1 and summary["best_epoch"] == 1
    assert run["history"][2]["val/iou"] == pytest.approx(0.0001)  # the curve is still whole
    # The overlay (drawn from the best checkpoint) is logged at the best epoch's step.
    assert any(k.startswith("overlay") for k in run["history"][1])
    assert not any(k.startswith("overlay") for k in run["history"][2])


def test_a_confirmation_run_is_grouped_with_its_config_and_carries_the_thresholds():
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from sweep.mirror.payload import trial_payload

    metrics = {"iou": 0.7, "iou_official": 0.6, "iou_tuned": 0.75, "tuned_threshold": 0.4,
               "precision_official": 0.5, "recall_official": 0.99,
               "scene_ious": {"fixed": {"S": 0.7}}}

    def run(number, **attrs):
        t = create_trial(params={"lr": 0.1}, distributions={"lr": FloatDistribution(0.01, 1.0)},
                         value=0.7, user_attrs={"metrics": metrics, **attrs})
        t.number = number
        return trial_payload(t, "s", "salt")

    origin, confirmation = run(3), run(9, confirms=3, confirm_repeat=1)
    assert origin.config["config_group"] == confirmation.config["config_group"] == 3
    assert "confirms:3" in confirmation.tags and "confirms #3" in confirmation.name
    assert confirmation.summary["best/iou_official"] == 0.6
    assert confirmation.summary["best/tuned_threshold"] == 0.4
    assert confirmation.summary["best/recall_official"] == 0.99
