"""`RunConfig.with_overrides`: the one way a config is derived from another (a spec's `fixed`,
a trial's params, a resolved data root), checked against a plain-dict merge parsed from scratch,
and the typed config that travels to a trial process unchanged."""

from __future__ import annotations

import copy
import pickle

import pytest

from cloudseg.config import RunConfig, parse_run_config
from cloudseg.errors import ConfigError

PARTIAL = {"loss": {"name": "focal"}, "train": {"device": "cpu", "amp": False}}
OVERRIDES = {"loss.gamma": 3, "data.root": "/data/38-Cloud", "train.epochs": 4,
             "optim.lr": "1e-3", "data.crop": None}


def merged_by_hand(base: dict, overrides: dict) -> dict:
    """The reference: nested dicts merged key by key, as the sweep did before."""
    tree = copy.deepcopy(base)
    for path, value in overrides.items():
        section, field = path.split(".")
        tree.setdefault(section, {})[field] = value
    return tree


def test_overrides_equal_a_dict_merge_parsed_from_scratch():
    derived = parse_run_config(PARTIAL).with_overrides(OVERRIDES)
    assert derived == parse_run_config(merged_by_hand(PARTIAL, OVERRIDES))
    assert derived.loss.gamma == 3.0 and derived.optim.lr == 0.001
    assert str(derived.data.root) == "/data/38-Cloud" and derived.data.crop is None


def test_a_partial_config_stays_partial():
    derived = parse_run_config(PARTIAL).with_overrides({"loss.gamma": 2.0})
    assert derived.model_dump(exclude_unset=True) == {
        "loss": {"name": "focal", "gamma": 2.0}, "train": {"device": "cpu", "amp": False}}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"optim.lr": -1}, "trial config: optim.lr: Input should be greater than 0 (got -1)"),
        ({"loss.gama": 2}, "trial config: loss.gama: unknown key (got 2)"),
        ({"optimizer.lr": 1}, "trial config: optimizer.lr: not a run-config field"),
        ({"lr": 1}, "trial config: lr: not a run-config field"),
        ({"train.band_mean": [1, 2, 3, 4]}, "band_mean and band_std must be given together"),
    ],
)
def test_a_bad_override_names_the_field(overrides, message):
    with pytest.raises(ConfigError) as err:
        RunConfig().with_overrides(overrides, "trial config")
    assert message in str(err.value)


def test_the_original_is_unchanged_and_equal_inputs_give_equal_configs():
    base = parse_run_config(PARTIAL)
    first = base.with_overrides(OVERRIDES)
    assert base.loss.gamma is None and base == parse_run_config(PARTIAL)
    assert first == base.with_overrides(OVERRIDES)


def test_the_typed_config_survives_the_trip_to_a_trial_process():
    config = parse_run_config(PARTIAL).with_overrides(OVERRIDES)
    again = pickle.loads(pickle.dumps(config))  # what multiprocessing sends to the child
    assert again == config and isinstance(again, RunConfig)
    assert again.to_dict() == config.to_dict()
