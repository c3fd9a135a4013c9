"""Real tiny studies on real SQLite files: the target is study-wide, pruning happens, a failing
trial does not stop the study, every trial stores its attrs and artifacts, a rerun resumes to a
new target (with two worker processes), and the export reproduces the trial's metrics."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from sweep.execution.runner import run_study
from sweep.hooks import HOOKS, Hook
from sweep.mirror.media import load_overlay_masks
from sweep.study.spec import parse_spec
from tests.sweep_helpers import tiny_spec_dict, trial_threads

TARGET = 6
SAMPLER_SEED = 3
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@pytest.fixture(scope="module", autouse=True)
def _one_thread_per_trial():
    with trial_threads(1):
        yield


@pytest.fixture(scope="module")
def finished(synthetic_root, tmp_path_factory):
    """One study run to TARGET finished trials, shared by the tests of this module."""
    folder = tmp_path_factory.mktemp("study")
    url = f"sqlite:///{folder / 'sweeps.db'}"
    # The seed gives complete, pruned and failed trials among the first (draws are a function
    # of the seed and the trial number: sweep.study.seeding.TrialSeeded).
    spec = parse_spec(tiny_spec_dict(sampler={"name": "random", "seed": SAMPLER_SEED}),
                      "tiny.yaml")
    hooks = {"tests-record": {"path": str(folder / "hook.log")}, "tests-raise": {}}
    summary = run_study(spec, TARGET, storage=url, data=synthetic_root, progress=False,
                        hooks=hooks)
    study = optuna.load_study(study_name="tiny", storage=url)
    return {"folder": folder, "url": url, "spec": spec, "summary": summary, "study": study,
            "data": synthetic_root, "hook_log": folder / "hook.log"}


class _Recorder:
    """A post-trial hook as the W&B mirror is one: called after each trial, closed at the end."""

    def __init__(self, study, options):
        self.path = Path(options["path"])

    def __call__(self, study, trial) -> None:
        with self.path.open("a") as fh:
            fh.write(f"{trial.number} {trial.state.name}\n")

    def close(self) -> None:
        with self.path.open("a") as fh:
            fh.write("closed\n")


def _raising(study, options):
    def hook(study, trial):
        raise RuntimeError("W&B is down")

    return hook


for _name, _factory in (("tests-record", _Recorder), ("tests-raise", _raising)):
    if _name not in HOOKS:
        HOOKS.add(_name, Hook(_factory))


def test_post_trial_hooks_see_every_trial_and_a_raising_hook_is_harmless(finished):
    lines = finished["hook_log"].read_text().splitlines()
    assert lines[-1] == "closed"
    seen = [line.split() for line in lines[:-1]]
    assert [int(n) for n, _ in seen] == [t.number for t in finished["study"].trials]
    assert {state for _, state in seen} >= {"COMPLETE", "PRUNED", "FAIL"}


def test_study_reaches_the_target_of_finished_trials(finished):
    study = finished["study"]
    assert len(study.get_trials(states=FINISHED)) == TARGET
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert finished["summary"].complete + finished["summary"].pruned == TARGET


def test_pruning_happens(finished):
    pruned = finished["study"].get_trials(states=(TrialState.PRUNED,))
    assert pruned
    for t in pruned:  # stopped early, with its history stored and no images drawn for it
        assert len(t.user_attrs["history"]) < finished["spec"].budget.epochs
        assert not t.user_attrs.get("artifacts")


def test_failing_trial_is_classified_and_the_study_goes_on(finished):
    failed = finished["study"].get_trials(states=(TrialState.FAIL,))
    assert failed, "the space's `unet` choice must fail (it rejects model.base_width)"
    for t in failed:
        assert t.params["model.name"] == "unet"
        assert t.user_attrs["failure"] == "bug"
        assert "base_width" in t.user_attrs["failure_message"]
    # the dashboard's note of a failed trial says why
    from optuna_dashboard._note import get_note_from_system_attrs

    study = finished["study"]  # notes live in the study's system attrs, keyed by trial id
    attrs = study._storage.get_study_system_attrs(study._study_id)
    note = get_note_from_system_attrs(attrs, failed[0]._trial_id)["body"]
    assert f"## Trial {failed[0].number}: failed (bug)" in note
    assert "**Why:**" in note and "base_width" in note


def test_trials_store_their_attrs_and_artifacts(finished, synthetic_root):
    study = finished["study"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert complete
    store = optuna.artifacts.FileSystemArtifactStore(str(finished["folder"] / "artifacts"))
    for t in complete:
        attrs = t.user_attrs
        assert attrs["config"]["data"]["root"] == str(synthetic_root.resolve())
        assert attrs["config"]["data"]["subset_seed"] == attrs["subset_seed"]
        assert len(attrs["history"]) == 2 and attrs["best_epoch"] in (1, 2)
        assert attrs["metrics"]["iou"] == pytest.approx(t.value)
        assert {"tp", "fp", "fn", "tn"} <= set(attrs["metrics"])
        assert attrs["fit_seconds"] > 0 and attrs["images_per_s"] > 0
        assert attrs["peak_memory_mb"] is None  # CPU
        assert set(attrs["artifacts"]) == {"overlay", "overlay_masks", "curve", "checkpoint"}
        assert len(attrs["weights_sha256"]) == 64 and attrs["scenes"]["val"]
        with store.open_reader(attrs["artifacts"]["overlay"]) as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        with store.open_reader(attrs["artifacts"]["overlay_masks"]) as fh:
            patches = load_overlay_masks(fh.read())  # what the W&B mirror logs with masks=
        assert len(patches) == 4
        for p in patches:
            assert p["image"].shape == (384, 384, 3) and p["prediction"].shape == (384, 384)
            assert set(np.unique(p["ground_truth"])) <= {0, 1} and p["patch"].startswith("patch_")
        if attrs["config"]["loss"]["name"] == "weighted-bce":  # drawn around the measured ratio
            measured = study.user_attrs["measured_pos_weight"]
            assert 0.5 * measured <= attrs["config"]["loss"]["pos_weight"] <= 2.0 * measured
    seeds = [t.user_attrs["subset_seed"] for t in study.get_trials(states=FINISHED)]
    assert len(set(seeds)) == len(seeds)  # a training subset redrawn per trial


def test_rerun_continues_to_the_new_target_with_two_workers(finished, tmp_path):
    for name in ("sweeps.db", "artifacts"):  # a copy: the shared study stays as it was
        src = finished["folder"] / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    summary = run_study(
        finished["spec"], TARGET + 2, storage=url, data=finished["data"], workers=2,
        progress=False,
    )
    study = optuna.load_study(study_name="tiny", storage=url)
    finished_now = study.get_trials(states=FINISHED)
    assert len(finished_now) == TARGET + 2  # exact, even with two racing workers
    assert summary.complete + summary.pruned == len(finished_now)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    again = run_study(finished["spec"], TARGET, storage=url, data=finished["data"], progress=False)
    assert again.complete + again.pruned == len(finished_now)  # a lower target adds nothing


def test_export_reproduces_the_trial_metrics(finished, tmp_path):
    import torch
    from torch.utils.data import DataLoader

    from cloudseg.data import PatchDataset, open_cache, split_by_scene
    from cloudseg.losses import build_loss
    from cloudseg.metrics import Metrics
    from cloudseg.training.checkpoint import load_bundle
    from cloudseg.training.device import select_device
    from cloudseg.training.loop import validate
    from sweep import best_trials, export_best

    best = best_trials("tiny", storage=finished["url"], top=1)[0]
    dest = export_best("tiny", tmp_path / "export", storage=finished["url"])
    assert {p.name for p in dest.iterdir()} >= {
        "config.yaml", "model.safetensors", "metrics.json", "README.md",
        "learning_curve.png", "overlay.png",
    }
    card = (dest / "README.md").read_text()
    assert f"trial {best.number}" in card and "optuna" in card and "learning_curve.png" in card

    model, cfg = load_bundle(dest)
    assert cfg.to_dict() == best.user_attrs["config"]
    cache = open_cache(cfg.data.root, cache_dir=cfg.data.cache_dir)
    val = split_by_scene(cache.records, cfg.data.val_fraction, cfg.data.split_seed).val
    ds = PatchDataset(cache, val, crop=cfg.data.crop, augment=False, random_crop=False)
    loader = DataLoader(ds, batch_size=cfg.optim.batch_size, shuffle=False)
    loss = build_loss(cfg.loss, pos_weight_auto=None if cfg.loss.pos_weight is None else 1.0)
    with torch.no_grad():
        _, metrics = validate(model, loss, loader, select_device(cfg.train), cfg.train)
    assert metrics == Metrics.from_dict(best.user_attrs["metrics"])
    assert metrics.iou == pytest.approx(best.value)


def test_status_and_best_commands(finished, monkeypatch):
    from typer.testing import CliRunner

    from sweep.cli import app, normalise_argv

    monkeypatch.chdir(finished["folder"])  # the default storage: sqlite:///sweeps.db in cwd
    runner = CliRunner()
    status = runner.invoke(app, ["status"])
    assert status.exit_code == 0, status.output
    s = finished["summary"]
    assert f"tiny: {s.complete} complete, {s.pruned} pruned, {s.failed} failed" in status.output
    assert "bug" in status.output
    best = runner.invoke(app, normalise_argv(["best", "--top", "2", "--export"]))
    assert best.exit_code == 0, best.output
    top = next(ln for ln in best.output.splitlines() if ln.startswith("│ 1 "))  # rank 1 row
    assert top.split("│")[2].strip() == str(s.best_number), best.output
    assert (finished["folder"] / "exports" / "tiny" / "model.safetensors").is_file()


def test_status_and_best_as_json_read_sweep_storage(finished, tmp_path, monkeypatch):
    """stdout is one JSON document and nothing else (the export's line goes to stderr); the
    storage comes from $SWEEP_STORAGE, as for every command that takes --storage."""
    import json

    from typer.testing import CliRunner

    from sweep.cli import app

    monkeypatch.chdir(tmp_path)  # no sweeps.db here: only the variable finds the study
    runner = CliRunner(env={"SWEEP_STORAGE": finished["url"]})
    s = finished["summary"]
    status = runner.invoke(app, ["status", "--json"])
    assert status.exit_code == 0, status.output
    (study,) = json.loads(status.stdout)["studies"]
    assert (study["study"], study["complete"], study["pruned"], study["failed"]) == (
        "tiny", s.complete, s.pruned, s.failed)
    assert study["best"]["trial"] == s.best_number and study["failures"]["bug"] >= 1
    best = runner.invoke(app, ["best", "--json", "--top", "2", "--export", "out"])
    assert best.exit_code == 0, best.output
    document = json.loads(best.stdout)
    assert document["format"] == 1 and document["study"] == "tiny"
    assert [c["rank"] for c in document["configs"]] == [1, 2]
    assert document["configs"][0]["trial"] == s.best_number
    assert "exported trial" in best.stderr and (tmp_path / "out" / "README.md").is_file()


def test_dashboard_serves_the_study_and_its_artifacts(finished):
    import gzip
    import json
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.sweep_helpers import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "sweep.cli", "dashboard", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=finished["folder"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)

    def get(path: str) -> bytes:
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
            return gzip.decompress(body) if resp.headers.get("Content-Encoding") == "gzip" else body

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = json.loads(get("/api/studies"))["study_summaries"]
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "dashboard did not start"
                time.sleep(0.3)
        study_id = next(s["study_id"] for s in studies if s["study_name"] == "tiny")
        detail = json.loads(get(f"/api/studies/{study_id}?after=0"))
        number = finished["study"].best_trial.number
        trial = next(t for t in detail["trials"] if t["number"] == number)
        listed = {a["artifact_id"] for a in trial["artifacts"]}
        ids = finished["study"].best_trial.user_attrs["artifacts"]
        assert set(ids.values()) <= listed
        png = get(f"/artifacts/{study_id}/{trial['trial_id']}/{ids['overlay']}")
        assert png.startswith(b"\x89PNG")
        # What a reader sees: the metric's name, the whole spec and each learning curve.
        assert detail["objective_names"] == ["val IoU"]
        assert "```yaml" in detail["note"]["body"] and "optim.lr" in detail["note"]["body"]
        assert f"## Trial {number}: best epoch" in trial["note"]["body"]
        assert b"<html" in get("/dashboard").lower()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---- exports: atomic, idempotent, whole ---------------------------------------------------------
def _complete_numbers(finished) -> list[int]:
    from sweep import best_trials

    return [t.number for t in best_trials("tiny", storage=finished["url"], top=None)]


def test_exporting_twice_succeeds_and_leaves_no_temporary_folder(finished, tmp_path):
    from typer.testing import CliRunner

    from sweep.cli import app

    dest = tmp_path / "exports" / "tiny"
    args = ["best", "--study", "tiny", "--storage", finished["url"], "--export", str(dest)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in dest.iterdir() if p.name != "metrics.json"}
    second = CliRunner().invoke(app, args)  # `make demo` a second time
    assert second.exit_code == 0, second.output
    assert {p.name: p.read_bytes() for p in dest.iterdir() if p.name != "metrics.json"} == before
    assert [p.name for p in dest.parent.iterdir()] == ["tiny"]  # no .tiny.export-* left behind


def test_exporting_trial_b_over_trial_a_replaces_every_file(finished, tmp_path):
    import json

    from cloudseg.training.checkpoint import file_sha256, load_bundle
    from sweep import export_best

    numbers = _complete_numbers(finished)
    assert len(numbers) >= 2, "the shared study needs two complete trials"
    a, b = numbers[-1], numbers[0]
    shared = export_best("tiny", tmp_path / "bundle", storage=finished["url"], trial=a)
    (shared / "learning_curve.png").write_bytes(b"stale")  # even a damaged file goes
    export_best("tiny", shared, storage=finished["url"], trial=b)
    fresh = export_best("tiny", tmp_path / "fresh", storage=finished["url"], trial=b)
    assert sorted(p.name for p in shared.iterdir()) == sorted(p.name for p in fresh.iterdir())
    for p in fresh.iterdir():
        if p.name != "metrics.json":  # its package versions may differ in nothing else
            assert (shared / p.name).read_bytes() == p.read_bytes(), p.name
    metrics = json.loads((shared / "metrics.json").read_text())
    assert metrics["trial"] == b and metrics["study"] == "tiny"
    assert metrics["weights_sha256"] == file_sha256(shared / "model.safetensors")
    assert metrics["weights_sha256"] == finished["study"].trials[b].user_attrs["weights_sha256"]
    load_bundle(shared)


def test_export_refuses_a_folder_it_did_not_write_and_a_trial_without_checkpoint(finished,
                                                                                  tmp_path):
    from typer.testing import CliRunner

    from sweep.cli import app

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    base = ["best", "--study", "tiny", "--storage", finished["url"]]
    out = CliRunner().invoke(app, [*base, "--export", str(mine)])
    assert out.exit_code == 2 and "notes.txt" in out.output
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    pruned = finished["study"].get_trials(states=(TrialState.PRUNED,))[0].number
    out = CliRunner().invoke(app, [*base, "--trial", str(pruned), "--export", str(tmp_path / "p")])
    assert out.exit_code == 2 and f"trial {pruned} cannot be exported: it is PRUNED" in out.output
    out = CliRunner().invoke(app, [*base, "--trial", "999", "--export", str(tmp_path / "p")])
    assert out.exit_code == 2 and "no such trial" in out.output
    assert not (tmp_path / "p").exists()


def test_model_card_states_the_facts_of_the_run(finished, tmp_path):
    import json

    from sweep import export_best

    study = finished["study"]
    for number in _complete_numbers(finished):
        trial = study.trials[number]
        dest = export_best("tiny", tmp_path / str(number), storage=finished["url"], trial=number)
        card = (dest / "README.md").read_text()
        config = trial.user_attrs["config"]
        if config["loss"]["name"] == "weighted-bce":  # pos_weight as training used it
            assert f"| loss.pos_weight | {config['loss']['pos_weight']:.4f} |" in card
        assert "pos_weight | None" not in card and "| — |" not in card.split("## Not tested")[0]
        assert "0: red, 1: green, 2: blue, 3: nir" in card and "uint16" in card
        mean = config["train"]["band_mean"]
        assert f"{mean[0]:.1f}" in card  # normalisation statistics
        assert "cloud where probability > 0.5" in card
        scenes = trial.user_attrs["scenes"]
        assert all(f"`{s}`" in card for s in scenes["train"] + scenes["val"])
        metrics = json.loads((dest / "metrics.json").read_text())
        base = metrics["baseline_all_cloud"]
        val = trial.user_attrs["metrics"]
        assert base["iou"] == pytest.approx((val["tp"] + val["fn"]) /
                                            (val["tp"] + val["fn"] + val["fp"] + val["tn"]))
        assert f"| IoU | {val['iou']:.4f} | {base['iou']:.4f} |" in card
        assert "## Not tested" in card and "test split" in card
        _check_hub_bundle(dest, trial, metrics)


def _check_hub_bundle(dest, trial, metrics):
    """The export's README.md carries the Hub's metadata (tests/test_hub_bundle.py loads an smp
    bundle with smp.from_pretrained); the shared study's complete trials are from-scratch U-Nets."""
    import yaml
    from huggingface_hub import ModelCard

    data = ModelCard.load(dest / "README.md").data.to_dict()
    assert data["license"] == "apache-2.0" and data["pipeline_tag"] == "image-segmentation"
    assert data["datasets"] == ["38-Cloud"]
    results = data["model-index"][0]["results"][0]
    ious = [m["value"] for m in results["metrics"] if m["name"].startswith("IoU")]
    assert ious == [pytest.approx(metrics["validation"]["iou"], abs=1e-6)]
    assert "Cloud-Net: An End-to-end Cloud Detection" in (dest / "README.md").read_text()
    assert trial.params["model.name"] == "vanilla-unet"
    assert data["library_name"] == "pytorch" and not (dest / "config.json").exists()
    assert "encoder" not in yaml.safe_load((dest / "config.yaml").read_text())["model"]


def test_cloudseg_train_of_the_export_reproduces_the_trial_value(finished, tmp_path, capsys):
    """The exported config carries the trial's thread count (the trials here ran on one
    thread), so `cloudseg train` of it trains exactly as the trial did."""
    import json

    import yaml

    from cloudseg.cli import main
    from sweep import best_trials, export_best

    best = best_trials("tiny", storage=finished["url"], top=1)[0]
    dest = export_best("tiny", tmp_path / "export", storage=finished["url"])
    assert yaml.safe_load((dest / "config.yaml").read_text())["train"]["threads"] == 1
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # a fresh `cloudseg train` process: one thread per core
    try:
        assert main(["train", str(dest / "config.yaml"), "--out", str(tmp_path / "again")]) == 0
    finally:
        torch.set_num_threads(before)
    retrained = json.loads((tmp_path / "again" / "best" / "metrics.json").read_text())
    assert retrained["iou"] == pytest.approx(best.value, abs=1e-4)
    counts = ("tp", "fp", "fn", "tn")  # the same pixels, not only the same figure
    assert {k: retrained[k] for k in counts} == {k: best.user_attrs["metrics"][k] for k in counts}
