"""Checkpoint bundles: config.yaml + model.safetensors (+ metrics.json), never pickle; a bundle
rebuilds the exact model, and a trained one reproduces its predictions and validation counts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from torch import nn
from torch.utils.data import DataLoader

import cloudseg
from cloudseg.checkpoint import load_bundle, load_metrics, save_bundle
from cloudseg.config import load_run_config, parse_run_config
from cloudseg.data import PatchDataset, split_by_scene
from cloudseg.device import select_device
from cloudseg.errors import ConfigError
from cloudseg.models import build_model
from cloudseg.normalise import normalise
from cloudseg.train import fit, seed_everything, validate

TINY = {"model": {"name": "vanilla-unet", "base_width": 4}}



def tiny_model(config):
    seed_everything(0)
    return build_model(config.model)


def inputs(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 4, 32, 32, generator=g)


def test_round_trip_rebuilds_the_same_model(tmp_path):
    config = parse_run_config(TINY)
    model = tiny_model(config).eval()
    path = save_bundle(tmp_path / "b", model, config, metrics={"iou": 0.5, "epoch": 3})
    assert sorted(p.name for p in path.iterdir()) == ["config.yaml", "metrics.json",
                                                      "model.safetensors"]
    loaded, loaded_config = load_bundle(path)
    assert loaded_config == config
    assert not loaded.training
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    with torch.no_grad():
        assert torch.equal(loaded(inputs()), model(inputs()))
    assert load_metrics(path) == {"iou": 0.5, "epoch": 3}


def test_weights_are_safetensors_with_the_config_inside(tmp_path):
    config = parse_run_config(TINY)
    save_bundle(tmp_path, tiny_model(config), config)
    weights = tmp_path / "model.safetensors"
    assert not weights.read_bytes().startswith(b"\x80")  # not a pickle stream
    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata()
        names = list(f.keys())
    assert "head.weight" in names
    assert json.loads(meta["cloudseg_config"]) == config.to_dict()
    assert load_run_config(tmp_path / "config.yaml") == config
    assert load_metrics(tmp_path) is None


def test_channels_last_weights_save_and_overwrite_cleanly(tmp_path):
    config = parse_run_config(TINY)
    model = tiny_model(config).to(memory_format=torch.channels_last).eval()
    save_bundle(tmp_path, model, config)
    save_bundle(tmp_path, model, config, metrics={"epoch": 2})  # overwrite in place
    assert not list(tmp_path.glob("*.tmp"))
    loaded, _ = load_bundle(tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert load_metrics(tmp_path) == {"epoch": 2}


def test_not_a_bundle_names_the_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="missing config.yaml"):
        load_bundle(tmp_path)
    config = parse_run_config(TINY)
    (tmp_path / "config.yaml").write_text(config.to_yaml())
    with pytest.raises(ConfigError, match="missing model.safetensors"):
        load_bundle(tmp_path)


def test_weights_that_do_not_fit_the_config_are_a_config_error(tmp_path):
    config = parse_run_config(TINY)
    save_bundle(tmp_path, tiny_model(config), config)
    wider = parse_run_config({"model": {"name": "vanilla-unet", "base_width": 8}})
    (tmp_path / "config.yaml").write_text(wider.to_yaml())
    with pytest.raises(ConfigError, match="do not fit model 'vanilla-unet'"):
        load_bundle(tmp_path)


def test_a_trained_bundle_reproduces_predictions_and_validation_counts(synthetic_cache, tmp_path):
    config = parse_run_config({
        **TINY,
        "optim": {"lr": 0.01, "batch_size": 2},
        "train": {"epochs": 2, "max_steps_per_epoch": 2},
    })
    split = split_by_scene(synthetic_cache.records, 0.25, 0)
    train = DataLoader(PatchDataset(synthetic_cache, split.train[:4], crop=32, augment=True),
                       batch_size=2, shuffle=True)
    val = DataLoader(PatchDataset(synthetic_cache, split.val[:2], crop=32, random_crop=False),
                     batch_size=2)
    model = tiny_model(config)
    result = fit(model, nn.BCEWithLogitsLoss(), train, val, config, checkpoint_dir=tmp_path)

    # `last` is the model fit leaves in memory: identical predictions, bit for bit.
    last, _ = load_bundle(result.last_checkpoint)
    images, _ = next(iter(val))
    x = normalise(images, config.train)
    model.eval()
    with torch.no_grad():
        assert torch.equal(last(x), model(x))
    # `best` recomputes exactly the validation counts and loss of its epoch.
    best, best_config = load_bundle(result.best_checkpoint)
    assert best_config == config
    loss, metrics = validate(best, nn.BCEWithLogitsLoss(), val, select_device(config.train),
                             config.train)
    record = result.history[result.best_epoch - 1]
    assert metrics == record.val
    assert loss == pytest.approx(record.val_loss, rel=1e-6)
    assert load_metrics(result.best_checkpoint)["epoch"] == result.best_epoch


def test_bundle_functions_load_lazily_from_the_package():
    assert cloudseg.load_bundle is load_bundle and cloudseg.save_bundle is save_bundle
    code = ("import sys, cloudseg; assert 'torch' not in sys.modules; "
            "from cloudseg import fit, run_training, load_bundle, save_bundle; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cloudseg.nope  # noqa: B018
