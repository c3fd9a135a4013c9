"""Truthful records without training: the W&B summary and media step of a trial whose last epoch
is worse than its best, the all-cloud baseline, the overlay's choice of informative patches, the
dashboard's metric name and notes, and the export's refusal to replace a folder it did not
write (atomic swap, no temporary folder left)."""

from __future__ import annotations

import optuna
import pytest
import yaml

from sweep.errors import ExportError
from sweep.export import check_destination
from sweep.export_swap import swap_into_place
from sweep.mirror.payload import trial_payload
from sweep.mirror.upload import with_media
from sweep.model_card import all_cloud_baseline
from sweep.record import from_attrs
from sweep.records import record_study, study_note, trial_note
from sweep.study.spec import parse_spec
from tests.mirror_helpers import epoch
from tests.sweep_helpers import tiny_spec_dict

optuna.logging.set_verbosity(optuna.logging.ERROR)


def frozen_trial(history, best_epoch, state="complete"):
    study = optuna.create_study(direction="maximize")

    def objective(trial):
        trial.set_user_attr("history", history)
        if best_epoch is not None:
            trial.set_user_attr("best_epoch", best_epoch)
            trial.set_user_attr("metrics", {k: history[best_epoch - 1][k]
                                            for k in ("iou", "tp", "fp", "fn", "tn")})
        if state == "failed":
            raise RuntimeError("boom")
        return history[best_epoch - 1]["iou"]

    study.optimize(objective, n_trials=1, catch=(RuntimeError,))
    return study.trials[0]


def test_the_summary_is_the_best_epochs_not_the_last():
    trial = frozen_trial([epoch(1, 0.3), epoch(2, 0.587), epoch(3, 0.0001)], best_epoch=2)
    payload = trial_payload(trial, "s", "salt")
    assert payload.summary["val/iou"] == 0.587 and payload.summary["best/iou"] == 0.587
    assert payload.summary["train/loss"] == pytest.approx(0.5)  # epoch 2's row
    assert payload.summary["summary_epoch"] == 2 and payload.media_step == 2
    assert [s for s, _ in payload.history] == [1, 2, 3]  # the whole curve is still logged
    failed = trial_payload(frozen_trial([epoch(1, 0.3), epoch(2, 0.1)], None, "failed"), "s", "x")
    assert failed.summary["summary_epoch"] == 2  # no best epoch recorded: the last one run


def test_media_go_with_the_best_epoch_or_the_first_open_step():
    rows = [(1, {"a": 1}), (2, {"a": 2}), (3, {"a": 3})]
    media = {"overlay": "img"}
    assert [("overlay" in v) for _, v in with_media(rows, media, 2, 1)] == [False, True, False]
    # a resumed online run that already holds steps < 3: the first step still open
    assert with_media(rows[2:], media, 2, 3) == [(3, {"a": 3, "overlay": "img"})]
    assert with_media([], media, 2, 5) == [(5, media)]


def test_all_cloud_baseline_from_the_best_epochs_counts():
    base = all_cloud_baseline({"tp": 30, "fn": 10, "fp": 50, "tn": 10})
    assert base["iou"] == pytest.approx(40 / 100) and base["precision"] == pytest.approx(0.4)
    assert base["recall"] == 1.0 and base["specificity"] == 0.0
    assert base["dice"] == pytest.approx(80 / 140)
    assert all_cloud_baseline(None) is None and all_cloud_baseline({"iou": 0.5}) is None


def test_dashboard_gets_the_metric_name_and_readable_notes(tmp_path):
    from optuna_dashboard._note import get_note_from_system_attrs

    spec = parse_spec(tiny_spec_dict(), "tiny.yaml")
    study = optuna.create_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'db'}",
                                direction="maximize")
    record_study(study, spec)
    assert study.metric_names == ["val IoU"]
    system_attrs = study._storage.get_study_system_attrs(study._study_id)
    note = get_note_from_system_attrs(system_attrs, None)["body"]
    assert note == study_note(spec) and "```yaml" in note and "optim.lr" in note
    # the spec as written: the fields it sets, not every default
    written = yaml.safe_load(note.split("```yaml\n")[1].split("```")[0])
    assert written == yaml.safe_load(yaml.safe_dump(tiny_spec_dict()))
    assert "max_consecutive_failures" not in note and "heartbeat_interval" in note
    # a worker rewrites the note from the stored (complete) spec: still as written
    from sweep.records import record_ranking
    from sweep.study.spec import StudySpec

    record_ranking(study, StudySpec.from_stored(spec.to_dict(), "stored"))
    again = get_note_from_system_attrs(study._storage.get_study_system_attrs(study._study_id),
                                       None)["body"]
    assert again == note

    payload = {"history": [epoch(1, 0.587), epoch(2, 0.0001)], "best_epoch": 1,
               "config": {"loss": {"name": "weighted-bce", "pos_weight": 4.07}},
               "data": {"n_train": 10, "n_val": 4}, "fit_seconds": 1.5}
    text = trial_note(3, spec, from_attrs(payload), pruned=False)
    assert "## Trial 3: best epoch 1" in text and "**1** (best)" in text
    assert "**0.5870**" in text and "pos_weight 4.0700" in text
    assert "0.0001" in text


def test_export_leaves_foreign_folders_alone_and_swaps_whole(tmp_path):
    check_destination(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    check_destination(tmp_path / "empty")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    with pytest.raises(ExportError, match="thesis.tex"):
        check_destination(mine)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="not a folder"):
        check_destination(tmp_path / "file")

    dest = tmp_path / "bundle"
    dest.mkdir()
    (dest / "model.safetensors").write_text("old")
    (dest / "overlay.png").write_text("old")
    new = tmp_path / ".bundle.export-1"
    new.mkdir()
    (new / "model.safetensors").write_text("new")
    swap_into_place(new, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["model.safetensors"]
    assert (dest / "model.safetensors").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "empty", "file", "mine"]


def test_no_temporary_folder_survives_a_failed_export(tmp_path, monkeypatch):
    import sweep.export as export

    class Trial:
        number = 1
        value = 0.5
        params: dict = {}
        user_attrs = {"artifacts": {"checkpoint": "missing"}, "config": {}}

    class Study:
        study_name = "s"
        user_attrs: dict = {}

    with pytest.raises(ExportError, match="artifact missing cannot be read"):
        export.export_trial(Study(), Trial(), tmp_path / "out", store=_EmptyStore())
    assert list(tmp_path.iterdir()) == []


class _EmptyStore:
    def open_reader(self, artifact_id):
        raise FileNotFoundError(artifact_id)



def test_scene_baseline_is_the_cloud_share_of_each_validation_scene(synthetic_cache):
    import numpy as np

    from cloudseg.config import parse_run_config
    from cloudseg.data import split_by_scene
    from sweep.model_card import scene_baseline

    config = parse_run_config({
        "data": {"root": str(synthetic_cache.root), "cache_dir": str(synthetic_cache.path.parent),
                 "val_fraction": 0.5},
        "train": {"val_metric": "scene"},
    })
    val = split_by_scene(synthetic_cache.records, 0.5, 0).val
    shares = []  # reference: per scene, cloud pixels over data pixels, then the mean
    for scene in sorted({synthetic_cache.records[i].id.scene for i in val}):
        rows = [i for i in val if synthetic_cache.records[i].id.scene == scene]
        valid = np.stack([synthetic_cache.images[i] for i in rows]).any(axis=1)
        cloud = np.stack([synthetic_cache.masks[i] for i in rows]) > 0
        shares.append((cloud & valid).sum() / valid.sum())
    assert len(shares) == 2
    assert scene_baseline(config) == pytest.approx(float(np.mean(shares)))
    missing = parse_run_config({"data": {"root": "/nonexistent"}, "train": {"val_metric": "scene"}})
    assert scene_baseline(missing) is None
