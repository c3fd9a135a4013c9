"""Study specs and the search space: shipped specs load, every error names file and field, the
space's conditions hold for every drawn trial, every sampler and pruner builds."""

from __future__ import annotations

import math

import optuna
import pytest

from cloudseg.errors import ConfigError
from sweep.study.pruners import PRUNERS
from sweep.study.samplers import SAMPLERS
from sweep.study.space import suggest
from sweep.study.spec import available_studies, find_spec_file, load_spec, parse_spec
from tests.sweep_helpers import tiny_spec_dict, write_spec


@pytest.mark.parametrize("name", ["demo", "loss-search", "model-search"])
def test_shipped_specs_load(name):
    spec = load_spec(name)
    assert spec.name == name
    assert spec.build_sampler() is not None and spec.build_pruner() is not None


def test_threshold_rules_name_the_value_each_trial_reports():
    def key(**changes):
        return parse_spec(tiny_spec_dict(**changes), "tiny.yaml").record_key

    assert key() == "iou" and key(threshold="official") == "iou_official"
    assert key(threshold="tuned", metric="scene-iou") == "scene_iou_tuned"
    assert key(metric="precision", threshold="official") == "precision_official"
    assert load_spec("loss-search").confirm is not None and load_spec("demo").confirm is None


def test_loss_search_is_the_write_up_question():
    spec = load_spec("loss-search")
    fixed_model = spec.fixed.model.model_dump(exclude_unset=True)
    assert fixed_model == {"name": "unet", "encoder": "resnet34"}
    assert spec.space["optim.batch_size"].choices == [8, 12, 16, 32]
    assert spec.space["loss.pos_weight"].relative_to == "measured_pos_weight"
    assert spec.budget.train_fraction == 0.5


def _error(tmp_path, **changes) -> str:
    spec = tiny_spec_dict()
    for dotted, value in changes.items():
        node = spec
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    with pytest.raises(ConfigError) as err:
        load_spec(write_spec(tmp_path, spec))
    return str(err.value)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"epochs_typo": 3}, "epochs_typo: unknown key"),
        ({"budget__epochs": "many"}, "budget.epochs"),
        ({"budget__unknown": 1}, "budget.unknown: unknown key"),
        ({"space__optim.lr": {"type": "float", "low": 0.1, "high": 0.01}}, "space.optim.lr"),
        ({"space__loss.name": {"type": "categorical", "choices": ["bce", "hinge"]}},
         "unknown loss 'hinge'; valid: bce"),
        ({"sampler": {"name": "anneal"}}, "sampler.name: unknown sampler 'anneal'; valid:"),
        ({"sampler": {"name": "tpe", "multivariat": True}}, "sampler.multivariat: unknown key"),
        ({"pruner": {"name": "median", "n_warmup_steps": -1}},
         "pruner.n_warmup_steps: Input should be greater than or equal to 0"),
        ({"space__optim.lr": {"type": "float", "low": 0.01, "high": 0.1,
                              "when": {"loss.kind": ["x"]}}},
         "condition on unknown parameter 'loss.kind'"),
        ({"space__loss.gamma": {"type": "float", "low": 1, "high": 2}},
         "no loss among ['bce', 'dice', 'weighted-bce'] uses 'gamma'"),
        ({"space__model.colour": {"type": "categorical", "choices": [1]}},
         "unknown or reserved run-config field 'model.colour'"),
        ({"space__optim.batch_size": {"type": "categorical", "choices": [8, -1]}},
         "optim.batch_size"),
        ({"fixed__model__name": "transformer9000"}, "fixed.model.name: unknown model"),
        ({"sampler": {"name": "grid"}}, "grid needs every space parameter"),
        ({"threshold": 0.3}, "threshold"),
        ({"threshold": "best"}, "threshold"),
        ({"confirm": {"top": 0, "repeats": 3}}, "confirm.top"),
        ({"confirm": {"top": 2, "repeat": 3}}, "confirm.repeat: unknown key"),
        ({"fixed__train__threshold": 0.4}, "fixed.train.threshold: `threshold: 0.5` scores"),
        ({"fixed__train__select_at": "tuned"}, "fixed.train.select_at: set by `threshold`"),
    ],
)
def test_spec_errors_name_file_and_field(tmp_path, changes, expected):
    message = _error(tmp_path, **changes)
    assert message.startswith(str(tmp_path / "tiny.yaml"))
    assert expected in message


def test_unknown_study_lists_the_available_ones():
    with pytest.raises(ConfigError) as err:
        find_spec_file("no-such-study")
    assert "unknown study 'no-such-study'; available:" in str(err.value)
    assert {"demo", "loss-search", "model-search"} <= set(available_studies())
    assert "loss-search" in str(err.value)


def test_space_conditions_hold_for_every_trial():
    spec = parse_spec(
        tiny_spec_dict(space={
            "loss.name": {"type": "categorical",
                          "choices": ["bce", "weighted-bce", "focal", "tversky", "mixed-focal"]},
            "loss.pos_weight": {"type": "float", "low": 0.5, "high": 2.0, "log": True,
                                "relative_to": "measured_pos_weight"},
            "loss.gamma": {"type": "float", "low": 0.5, "high": 4.0},
            "loss.alpha": {"type": "float", "low": 0.2, "high": 0.8,
                           "when": {"loss.name": ["tversky"]}},
            "loss.beta": {"type": "float", "low": 0.2, "high": 0.8,
                          "when": {"loss.name": ["tversky"]}},
            "loss.focal_weight": {"type": "float", "low": 0.1, "high": 0.9,
                                  "complement": "loss.dice_weight"},
        }),
        "conditions.yaml",
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        params = suggest(trial, spec.space, spec.fixed, {"measured_pos_weight": 3.0})
        loss = params["loss.name"]
        seen.add(loss)
        assert ("loss.pos_weight" in params) == (loss == "weighted-bce")
        if loss == "weighted-bce":
            assert 1.5 <= params["loss.pos_weight"] <= 6.0
        assert ("loss.gamma" in params) == (loss in ("focal", "mixed-focal"))
        assert ("loss.alpha" in params) == ("loss.beta" in params) == (loss == "tversky")
        assert ("loss.focal_weight" in params) == (loss == "mixed-focal")
        if loss == "mixed-focal":
            assert math.isclose(params["loss.focal_weight"] + params["loss.dice_weight"], 1.0)
        study.tell(trial, 0.0)
    assert len(seen) == 5


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_sampler_builds(name):
    spec = parse_spec(tiny_spec_dict(sampler={"name": name, "seed": 3},
                                     space={"loss.name": {"type": "categorical",
                                                          "choices": ["bce", "dice"]}}), "s.yaml")
    sampler = spec.build_sampler()
    expected = {"tpe": "TPESampler", "random": "RandomSampler", "grid": "GridSampler",
                "gp": "GPSampler", "cmaes": "CmaEsSampler"}
    assert type(sampler.sampler).__name__ == expected[name] and sampler.seed == 3
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: float(t.suggest_categorical("loss.name", ["bce", "dice"]) == "bce"),
                   n_trials=2)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert {t.params["loss.name"] for t in study.trials} <= {"bce", "dice"}


@pytest.mark.parametrize("name", PRUNERS.names())
def test_every_pruner_builds(name):
    extra = {"patience": 1} if name != "patient" else {}
    if name == "threshold":
        extra["lower"] = 0.05
    spec = parse_spec(tiny_spec_dict(pruner={"name": name, **extra}), "p.yaml")
    assert isinstance(spec.build_pruner(), optuna.pruners.BasePruner)


FOCAL = {"type": "categorical", "choices": ["focal", "focal-tversky"]}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # conditions that form a cycle: two parameters waiting for each other, and one on itself
        ({"space__optim.lr": {"type": "float", "low": 0.01, "high": 0.1,
                              "when": {"optim.batch_size": [4]}},
          "space__optim.batch_size": {"type": "categorical", "choices": [4, 8],
                                      "when": {"optim.lr": [0.01]}}},
         "space: conditions form a cycle: optim.batch_size -> optim.lr -> optim.batch_size"),
        ({"space__optim.batch_size": {"type": "categorical", "choices": [4, 8],
                                      "when": {"optim.batch_size": [4]}}},
         "optim.batch_size -> optim.batch_size (a parameter conditioned on itself"),
        ({"space__loss.name": {"type": "categorical", "choices": ["focal", "dice"],
                               "when": {"loss.gamma": [2.0]}},
          "space__loss.gamma": {"type": "categorical", "choices": [2.0]},
          "space__loss.pos_weight": None},
         "loss.gamma -> loss.name -> loss.gamma"),
        # an int parameter with fractional bounds would be truncated (2 drawn below low=2.5)
        ({"space__optim.batch_size": {"type": "int", "low": 2.5, "high": 8.5}},
         "space.optim.batch_size: Value error, int takes whole numbers; got low=2.5, high=8.5"),
        ({"space__optim.warmup_epochs": {"type": "int", "low": 0, "high": 4, "step": 1.5}},
         "step=1.5"),
        # loss values checked by the loss's own rules when the spec loads
        ({"space__loss.name": FOCAL, "space__loss.pos_weight": None,
          "space__loss.gamma": {"type": "float", "low": -3, "high": -1}},
         "space.loss.gamma: loss 'focal': loss.gamma must be >= 0, got -3.0"),
        ({"space__loss.name": None, "space__loss.pos_weight": None,
          "fixed__loss": {"name": "focal", "gamma": -1}},
         "fixed.loss: loss 'focal': loss.gamma must be >= 0, got -1"),
        ({"space__loss.pos_weight": {"type": "float", "low": -1, "high": 2.0}},
         "space.loss.pos_weight: loss 'weighted-bce': loss.pos_weight must be > 0"),
        ({"space__loss.name": {"type": "categorical", "choices": ["mixed-focal"]},
          "space__loss.pos_weight": None,
          "space__loss.focal_weight": {"type": "float", "low": 0.5, "high": 1.5,
                                       "complement": "loss.dice_weight"}},
         "loss.dice_weight must be >= 0, got -0.5"),
        # values Optuna cannot take: unhashable choices, infinite bounds, a step <= 0
        ({"space__loss.name": {"type": "categorical", "choices": [["bce"], "dice"]}},
         "choices, grid and when values must be numbers, strings, booleans or null; got ['bce']"),
        ({"space__optim.lr": {"type": "float", "low": 0.01, "high": float("inf")}},
         "low, high and step must be finite"),
        ({"space__optim.batch_size": {"type": "int", "low": 1, "high": 8, "step": 0}},
         "`step` must be > 0 (step=0.0)"),
        # a crop the model cannot take fails every trial: said at load time
        ({"budget__crop": 100}, "budget.crop: model 'vanilla-unet' needs input sides that are "
                                "multiples of 16"),
    ],
)
def test_spec_value_errors_are_found_when_the_spec_loads(tmp_path, changes, expected):
    spec = tiny_spec_dict()
    for dotted, value in changes.items():
        node = spec
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        if value is None:
            node.pop(last)
        else:
            node[last] = value
    with pytest.raises(ConfigError) as err:
        load_spec(write_spec(tmp_path, spec))
    message = str(err.value)
    assert message.startswith(str(tmp_path / "tiny.yaml")) and expected in message, message


def test_a_gamma_range_valid_for_its_conditioned_loss_only_is_accepted(tmp_path):
    spec = tiny_spec_dict()
    spec["space"]["loss.name"] = FOCAL
    # 0 is fine for focal (>= 0) but not for focal-tversky (> 0): the condition keeps them apart
    spec["space"]["loss.gamma"] = {"type": "float", "low": 0, "high": 2,
                                   "when": {"loss.name": ["focal"]}}
    del spec["space"]["loss.pos_weight"]
    assert load_spec(write_spec(tmp_path, spec)).space["loss.gamma"].low == 0


def test_a_binary_spec_file_is_one_error_naming_the_file(tmp_path):
    path = tmp_path / "blob.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    assert str(err.value).startswith(f"{path}: not a text file (byte 128 is not UTF-8)")


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        ("name: a\nseed: 1\nseed: 2\n", "'seed'", "line 2 and again line 3"),
        ("name: a\nbudget:\n  epochs: 2\n  epochs: 3\n", "'epochs'", "line 3 and again line 4"),
        ("name: a\nbudget: {epochs: 2, epochs: 3}\n", "'epochs'", "line 2 and again line 2"),
    ],
)
def test_duplicate_yaml_keys_are_rejected_naming_key_and_file(tmp_path, text, key, lines):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    assert str(err.value).startswith(f"{path}: duplicate key {key} ({lines})"), str(err.value)


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    from cloudseg.yaml_io import read_yaml

    path = tmp_path / "merge.yaml"
    path.write_text("a: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n")
    assert read_yaml(path) == {"a": {"x": 1, "y": 2}, "c": {"x": 3, "y": 2}}


def test_the_stored_spec_rebuilds_the_same_typed_spec_without_checking_it_again():
    import json

    from sweep.study.pruners import MedianSettings
    from sweep.study.samplers import RandomSettings
    from sweep.study.spec import StudySpec

    spec = parse_spec(tiny_spec_dict(), "tiny.yaml")
    stored = json.loads(json.dumps(spec.to_dict()))  # what the study's user attr holds
    assert stored["fixed"] == tiny_spec_dict()["fixed"]  # partial: only what the spec sets
    assert stored["sampler"] == {"name": "random", "seed": 0}
    again = StudySpec.from_stored(stored, "study tiny")
    assert again.to_dict() == spec.to_dict() and again.fixed == spec.fixed
    assert isinstance(again.sampler, RandomSettings) and isinstance(again.pruner, MedianSettings)
    # a model removed since the study was created: the stored spec still loads for its workers
    stored["space"]["model.name"]["choices"] = ["vanilla-unet", "retired-net"]
    assert StudySpec.from_stored(stored, "study tiny").space["model.name"].choices[1] == (
        "retired-net")
    with pytest.raises(ConfigError, match="space.model.name: unknown model 'retired-net'"):
        parse_spec(stored, "tiny.yaml")


def test_a_trial_config_is_fixed_then_budget_then_params(tmp_path):
    """Checked against the nested-dict merge the sweep did before, parsed from scratch."""
    from cloudseg.config import parse_run_config
    from sweep.execution.objective import trial_config

    raw = tiny_spec_dict()
    spec = parse_spec(raw, "tiny.yaml")
    params = {"loss.name": "weighted-bce", "loss.pos_weight": 1.5, "optim.lr": 0.01}
    config = trial_config(spec, params, tmp_path, subset_seed=7)
    tree = {section: dict(values) for section, values in raw["fixed"].items()}
    for path, value in {
        "train.epochs": 2, "data.train_fraction": 0.75, "data.crop": 64,
        "train.max_steps_per_epoch": 3, "data.max_val_patches": None,
        "train.val_metric": "patch", "data.root": str(tmp_path), "data.subset_seed": 7,
        "data.device_share": 1.0, **params,
    }.items():
        section, field = path.split(".")
        tree.setdefault(section, {})[field] = value
    assert config == parse_run_config(tree)


@pytest.mark.parametrize(
    ("pruner", "inner", "patience"),
    [({"name": "median", "patience": 3, "min_delta": 0.01}, "MedianPruner", 3),
     ({"name": "patient"}, None, 2),
     ({"name": "patient", "patience": 5}, None, 5),
     ({"name": "hyperband"}, None, None)],
)
def test_patience_wraps_any_pruner(pruner, inner, patience):
    built = parse_spec(tiny_spec_dict(pruner=pruner), "p.yaml").build_pruner()
    if patience is None:
        assert isinstance(built, optuna.pruners.HyperbandPruner)
        return
    assert isinstance(built, optuna.pruners.PatientPruner) and built._patience == patience
    assert type(built._wrapped_pruner).__name__ == inner if inner else built._wrapped_pruner is None
    assert built._min_delta == pruner.get("min_delta", 0.0)
