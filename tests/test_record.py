"""TrialRecord against real Optuna storages: a round trip through SQLite (and PostgreSQL when
configured), a study whose attributes were written the old way (one `set_user_attr` per key, as
the sweep did before the record existed), partial and damaged trials that must not stop
`sweep status`, and the failure classes."""

from __future__ import annotations

import json
import math

import optuna
import pytest
from optuna.trial import TrialState

from cloudseg.training.checkpoint import DIGEST_KEY
from sweep.execution.lineage import Lineage, lineage
from sweep.record import (
    Artifacts,
    DataInfo,
    EpochEntry,
    FailureKind,
    SceneSplit,
    Timings,
    TrialAt,
    TrialRecord,
    failure_of,
    from_attrs,
    load,
    save,
    to_attrs,
)

optuna.logging.set_verbosity(optuna.logging.ERROR)

EPOCHS = [
    {"epoch": 1, "train_loss": 0.7, "val_loss": 0.6, "seconds": 1.5, "images_per_s": 40.0,
     "tp": 10, "fp": 3, "fn": 2, "tn": 85, "iou": 0.6667, "scene_iou": 0.61},
    {"epoch": 2, "train_loss": 0.5, "val_loss": 0.4, "seconds": 1.25, "images_per_s": 42.5,
     "tp": 11, "fp": 2, "fn": 1, "tn": 86, "iou": 0.7857, "scene_iou": float("nan")},
]
# What the objective wrote before the record, key by key (names and shapes as stored then).
OLD_ATTRS = {
    "worker": "gpu-box:42",
    "subset_seed": 1234,
    "config": {"model": {"name": "unet", "encoder": "resnet34"}, "loss": {"name": "dice"}},
    "history": EPOCHS,
    "best_epoch": 2,
    "metrics": {"tp": 11, "fp": 2, "fn": 1, "tn": 86, "iou": 0.7857, "tuned_threshold": 0.31,
                "scene_ious": {"official": {"LC08_c": 0.8}, "tuned": {"LC08_c": 0.82}}},
    "fit_seconds": 2.75,
    "peak_memory_mb": 512.0,
    "images_per_s": 41.2,
    "data": {"n_train": 24, "n_val": 8, "pos_weight": 1.5, "data_on_device": True,
             "compiled": False},
    "scenes": {"train": ["LC08_a", "LC08_b"], "val": ["LC08_c"]},
    "weights_sha256": "ab" * 32,
    "artifacts": {"checkpoint": "id-ckpt", "curve": "id-curve", "overlay": "id-ov",
                  "overlay_masks": "id-masks"},
    "confirms": 3,
    "confirm_repeat": 1,
}


def same_json(a, b) -> bool:
    """Equal as stored JSON (NaN written the same way on both sides)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def run_one(url: str, objective, name: str = "s") -> optuna.trial.FrozenTrial:
    study = optuna.create_study(storage=url, study_name=name, direction="maximize")
    study.optimize(objective, n_trials=1, catch=(RuntimeError,))
    return study.trials[0]


def test_round_trip_through_a_real_storage(storage_url):
    record = TrialRecord(
        worker="host:1", subset_seed=7, config=OLD_ATTRS["config"],
        history=tuple(EpochEntry.model_validate(e) for e in EPOCHS), best_epoch=2,
        metrics=OLD_ATTRS["metrics"], timings=Timings(fit_seconds=2.75, images_per_s=41.2),
        peak_memory_mb=512.0, data=DataInfo(n_train=24, n_val=8, compiled=True),
        scenes=SceneSplit(train=("a",), val=("b", "c")),
        artifacts=Artifacts(checkpoint="id-1", overlay="id-2"), weights_sha256="cd" * 32,
        failure=FailureKind.OOM, failure_message="CUDA out of memory",
    )

    def objective(trial):
        save(trial, record)
        return 0.0

    trial = run_one(storage_url, objective)
    loaded = load(trial)
    assert loaded.model_dump(exclude={"history"}) == record.model_dump(exclude={"history"})
    assert same_json([e.as_dict() for e in loaded.history], EPOCHS)
    assert loaded.metrics["tp"] == 11 and isinstance(loaded.metrics["tp"], int)
    assert math.isnan(loaded.history[1].value("scene_iou"))
    # on disk: the names the sweep always used, readable by optuna-dashboard and old readers
    assert trial.user_attrs["failure"] == "oom" and trial.user_attrs["fit_seconds"] == 2.75
    assert trial.user_attrs["artifacts"] == {"checkpoint": "id-1", "overlay": "id-2"}
    assert trial.user_attrs[DIGEST_KEY] == "cd" * 32
    assert trial.user_attrs["data"] == {"n_train": 24, "n_val": 8, "compiled": True}
    assert trial.user_attrs["scenes"] == {"train": ["a"], "val": ["b", "c"]}
    assert "timings" not in trial.user_attrs and "extra" not in trial.user_attrs


def test_a_study_written_the_old_way_loads(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"

    def objective(trial):
        for key, value in OLD_ATTRS.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("wandb_run", "cloudsweep/s-x-t0")  # an attribute the record lacks
        return 0.7857

    trial = run_one(url, objective)
    record = load(trial)
    assert record.worker == "gpu-box:42" and record.subset_seed == 1234
    assert record.config_part("loss") == {"name": "dice"} and record.best_epoch == 2
    assert [e.epoch for e in record.history] == [1, 2]
    assert record.history[0].train_loss == 0.7 and record.history[0].value("iou") == 0.6667
    assert record.timings == Timings(fit_seconds=2.75, images_per_s=41.2)
    assert record.peak_memory_mb == 512.0
    assert record.data == DataInfo(n_train=24, n_val=8, pos_weight=1.5, data_on_device=True,
                                   compiled=False)
    assert record.scenes == SceneSplit(train=("LC08_a", "LC08_b"), val=("LC08_c",))
    assert record.artifacts.checkpoint == "id-ckpt" and record.artifacts.overlay_masks == "id-masks"
    assert record.weights_sha256 == "ab" * 32 and record.failure is None and not record.failed
    assert record.confirms == 3 and record.confirm_repeat == 1
    assert record.scene_ious("tuned") == {"LC08_c": 0.82} and record.scene_ious("fixed") == {}
    assert record.metrics["tp"] == 11 and record.metrics["tuned_threshold"] == 0.31
    assert record.extra == {"wandb_run": "cloudsweep/s-x-t0"}
    # a view over every trial reads only what it shows
    assert load(trial, ("worker",)) == TrialRecord(worker="gpu-box:42")
    assert load(trial, ("timings", "extra")) == TrialRecord(
        timings=record.timings, extra={"wandb_run": "cloudsweep/s-x-t0"})
    # and writing the record back gives the very attributes it was read from
    assert same_json(to_attrs(record), {**OLD_ATTRS, "wandb_run": "cloudsweep/s-x-t0"})


def test_partial_and_damaged_trials_load_with_defaults(tmp_path):
    """A worker that died after two attributes, and attributes of the wrong shape: status
    must still read them; what cannot be read is left at its default."""
    url = f"sqlite:///{tmp_path / 'partial.db'}"

    def objective(trial):
        save(trial, TrialRecord(subset_seed=5))
        trial.set_user_attr("history", [{"epoch": 1, "iou": 0.5}, "junk", {"iou": 0.2},
                                        {"epoch": 2, "iou": "n/a"}])
        trial.set_user_attr("best_epoch", "two")
        trial.set_user_attr("metrics", [1, 2])
        trial.set_user_attr("artifacts", "not a mapping")
        trial.set_user_attr("fit_seconds", "slow")
        trial.set_user_attr("images_per_s", 12)
        raise RuntimeError("worker gone")

    trial = run_one(url, objective)
    assert trial.state == TrialState.FAIL
    record = load(trial)
    assert record.subset_seed == 5 and [e.epoch for e in record.history] == [1]
    assert record.best_epoch is None and record.metrics is None and record.config is None
    assert record.artifacts == Artifacts() and record.artifacts.by_name() == {}
    assert record.timings == Timings(images_per_s=12.0)
    assert record.failure is None and record.data is None and record.scenes is None

    empty = from_attrs({})
    assert empty == TrialRecord() and empty.history == () and empty.config_part("model") == {}


def test_save_writes_only_what_the_record_sets(tmp_path):
    url = f"sqlite:///{tmp_path / 'steps.db'}"
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(storage=storage, study_name="steps")
    trial = study.ask()
    save(trial, TrialRecord(subset_seed=3, config={"loss": {"name": "bce"}}))
    save(trial, TrialRecord(timings=Timings(fit_seconds=1.0)))
    save(TrialAt(storage, trial._trial_id), TrialRecord(failure=FailureKind.KILLED))
    attrs = storage.get_trial(trial._trial_id).user_attrs
    assert attrs == {"subset_seed": 3, "config": {"loss": {"name": "bce"}},
                     "fit_seconds": 1.0, "failure": "killed"}
    assert to_attrs(TrialRecord()) == {}


def test_failure_kinds():
    written = {"oom", "diverged", "data", "timeout", "killed", "bug", "interrupted", "surplus",
               "duplicate"}
    assert written < {k.value for k in FailureKind}
    assert FailureKind("timeout") is FailureKind.TIMEOUT
    with pytest.raises(ValueError, match="'exploded' is not a valid FailureKind"):
        FailureKind("exploded")  # code that names a kind must name a real one
    # stored kinds are read, never refused: a newer sweep's kind shows as "unknown"
    assert FailureKind.read("exploded") is FailureKind.UNKNOWN
    assert FailureKind.read(3) is FailureKind.UNKNOWN
    assert FailureKind.read("") is None and FailureKind.read(None) is None
    record = from_attrs({"failure": "exploded", "failure_message": "boom"})
    assert record.failure is FailureKind.UNKNOWN and record.failed
    assert record.failure_message == "boom"

    class Stored:
        user_attrs = {"failure": "oom"}

    assert failure_of(Stored()) is FailureKind.OOM and load(Stored()).failure is FailureKind.OOM


def test_status_and_best_read_partial_trials(tmp_path):
    """`sweep status` and `sweep best` on a study holding a trial cut short after one attribute,
    one with attributes of the wrong shape and a failure kind this version does not know."""
    from typer.testing import CliRunner

    from sweep.cli import app

    url = f"sqlite:///{tmp_path / 'partial.db'}"
    study = optuna.create_study(storage=url, study_name="partial", direction="maximize")
    study.set_user_attr("target", 4)
    study.set_user_attr("spec", {"metric": "iou"})
    for attrs, value in (
        ({"subset_seed": 1}, None),
        ({"worker": 42, "history": "x", "metrics": 0.5, "failure": "exploded"}, None),
        ({"worker": "box:7", "best_epoch": 1, "metrics": {"iou": 0.4}}, 0.4),
    ):
        trial = study.ask()
        for key, stored in attrs.items():
            trial.set_user_attr(key, stored)
        if value is None:
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, value)
    runner = CliRunner()
    status = runner.invoke(app, ["status", "--storage", url], env={"COLUMNS": "200"})
    assert status.exit_code == 0, status.output
    assert "partial: 1 complete, 0 pruned, 2 failed" in status.output
    assert "failures: unknown 1; best 0.4000 (trial 2," in status.output
    best = runner.invoke(app, ["best", "--study", "partial", "--storage", url])
    assert best.exit_code == 0, best.output
    assert "partial: best 1 config(s)" in best.output


def test_lineage_of_a_retry():
    class Stored:
        system_attrs = {"failed_trial": 3, "retry_history": [3, 5], "other": "x"}

    line = lineage(Stored())
    assert line == Lineage(failed_trial=3, retry_history=(3, 5))
    assert line.retry_of(8) == {"failed_trial": 3, "retry_history": [3, 5, 8],
                                "killed_retry_of": 8}
    Stored.system_attrs = {"failed_trial": "three", "killed_retry_of": 2}
    assert lineage(Stored()) == Lineage(killed_retry_of=2)
    assert Lineage().retry_of(4) == {"failed_trial": 4, "retry_history": [4],
                                     "killed_retry_of": 4}
