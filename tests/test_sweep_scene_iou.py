"""`metric: scene-iou`: every trial validates whole scenes (train.val_metric "scene") and its
value is the per-scene mean IoU of its best epoch; a capped validation set is a spec error."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from cloudseg.errors import ConfigError
from sweep.execution.runner import run_study
from sweep.study.spec import parse_spec
from tests.sweep_helpers import tiny_spec_dict, trial_threads


def _spec_dict(**budget) -> dict:
    spec = tiny_spec_dict("scene", metric="scene-iou")
    spec["budget"] = {**spec["budget"], "epochs": 1, "batches_per_epoch": 2, **budget}
    spec["space"] = {"optim.lr": {"type": "float", "low": 0.003, "high": 0.03, "log": True}}
    return spec


def test_a_scene_iou_study_stores_the_scene_iou_as_the_trial_value(synthetic_root, tmp_path):
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    with trial_threads(1):
        run_study(parse_spec(_spec_dict(), "scene.yaml"), 1, storage=url, data=synthetic_root,
                  progress=False)
    (trial,) = optuna.load_study(study_name="scene", storage=url).trials
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("failure_message")
    attrs = trial.user_attrs
    assert attrs["config"]["train"]["val_metric"] == "scene"
    assert attrs["config"]["data"]["crop"] == 64  # training crops; validation is whole patches
    best = attrs["history"][attrs["best_epoch"] - 1]
    assert trial.value == attrs["metrics"]["scene_iou"] == best["scene_iou"]
    assert trial.intermediate_values == {1: best["scene_iou"]}
    assert 0.0 <= trial.value <= 1.0


def test_scene_iou_with_a_capped_validation_set_is_a_spec_error():
    with pytest.raises(ConfigError, match=r"scene.yaml: budget.max_val_patches: .*got 4"):
        parse_spec(_spec_dict(max_val_patches=4), "scene.yaml")
    spec = _spec_dict()
    spec["fixed"]["train"]["val_metric"] = "scene"
    with pytest.raises(ConfigError, match=r"scene.yaml: fixed.train.val_metric: set by `metric`"):
        parse_spec(spec, "scene.yaml")
    patch = parse_spec({**_spec_dict(), "metric": "iou"}, "scene.yaml")
    assert (patch.val_metric, patch.record_key) == ("patch", "iou")
