"""Checkpoint bundles: config.yaml + model.safetensors (+ metrics.json), never pickle; a bundle
rebuilds the exact model, and a trained one reproduces its predictions and validation counts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from torch import nn
from torch.utils.data import DataLoader

import cloudseg
from cloudseg.config import load_run_config, parse_run_config
from cloudseg.data import PatchDataset, split_by_scene
from cloudseg.errors import ConfigError
from cloudseg.models import build_model
from cloudseg.normalisation import normalise
from cloudseg.training.checkpoint import (
    check_bundle,
    file_sha256,
    load_bundle,
    load_metrics,
    save_bundle,
)
from cloudseg.training.device import select_device
from cloudseg.training.loop import fit, seed_everything, validate

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
    with pytest.raises(ConfigError, match="do not belong together: model.base_width: 8 in "
                                          "config.yaml, 4 in the weights"):
        load_bundle(tmp_path)
    # Weights without the config inside (saved by other means) are still checked by shape.
    from safetensors.torch import save_model

    save_model(tiny_model(config), str(tmp_path / "model.safetensors"))
    with pytest.raises(ConfigError, match="do not fit model 'vanilla-unet'"):
        load_bundle(tmp_path)


def test_where_and_how_it_runs_may_be_edited_but_not_what_was_trained(tmp_path):
    config = parse_run_config(TINY)
    save_bundle(tmp_path, tiny_model(config), config)
    edited = config.to_dict()
    edited["data"]["root"] = "/elsewhere/38-Cloud"
    edited["train"].update(device="cpu", threshold=0.3, num_workers=2)
    (tmp_path / "config.yaml").write_text(parse_run_config(edited).to_yaml())
    _, loaded = load_bundle(tmp_path)
    assert loaded.train.threshold == 0.3 and str(loaded.data.root) == "/elsewhere/38-Cloud"
    assert check_bundle(tmp_path) == loaded
    edited["optim"]["lr"] = 0.5  # another trial's config: refused, naming the field
    (tmp_path / "config.yaml").write_text(parse_run_config(edited).to_yaml())
    with pytest.raises(ConfigError, match=r"optim.lr: 0.5 in config.yaml, 0.001 in the weights"):
        load_bundle(tmp_path)


def exported_like(folder, seed: int, width: int = 4, study="s", trial=0):
    """A bundle as `sweep best --export` writes it: metrics.json names its weights' digest."""
    config = parse_run_config({"model": {"name": "vanilla-unet", "base_width": width}})
    seed_everything(seed)
    save_bundle(folder, build_model(config.model), config)
    metrics = {"study": study, "trial": trial,
               "weights_sha256": file_sha256(folder / "model.safetensors")}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_a_bundle_with_swapped_weights_is_refused(tmp_path):
    a = exported_like(tmp_path / "a", seed=0, trial=3)
    b = exported_like(tmp_path / "b", seed=1, trial=7)
    load_bundle(a)
    load_bundle(b)
    shutil.copy(b / "model.safetensors", a / "model.safetensors")  # same architecture
    with pytest.raises(ConfigError) as err:
        load_bundle(a)
    message = str(err.value)
    assert "model.safetensors does not belong to this bundle" in message
    assert "study 's' trial 3" in message and "\n" not in message


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "header only"])
def test_damaged_weights_are_one_line_naming_the_file(tmp_path, damage):
    bundle = save_bundle(tmp_path / "b", tiny_model(parse_run_config(TINY)),
                         parse_run_config(TINY))
    weights = bundle / "model.safetensors"
    data = weights.read_bytes()
    header = 8 + int.from_bytes(data[:8], "little")
    weights.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x07" * 300,
                         "empty": b"", "header only": data[:header]}[damage])
    with pytest.raises(ConfigError) as err:
        load_bundle(bundle)
    message = str(err.value)
    assert message.startswith(f"{weights}: not a readable safetensors file")
    assert "\n" not in message


def test_an_unknown_model_name_names_the_file_and_the_field(tmp_path):
    config = parse_run_config(TINY)
    save_bundle(tmp_path, tiny_model(config), config)
    text = (tmp_path / "config.yaml").read_text().replace("vanilla-unet", "vanila-unet")
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"config.yaml: model.name: unknown model "
                                          r"'vanila-unet'; valid: .*vanilla-unet"):
        load_bundle(tmp_path)


def test_cloudseg_predict_and_train_refuse_a_mixed_bundle_in_one_line(tmp_path, capsys):
    from cloudseg.cli import main

    a = exported_like(tmp_path / "a", seed=0)
    exported_like(tmp_path / "b", seed=1, width=8)
    shutil.copy(tmp_path / "b" / "config.yaml", a / "config.yaml")
    (tmp_path / "data").mkdir()
    assert main(["predict", str(a), str(tmp_path / "data"), "--out", str(tmp_path / "o")]) == 2
    assert main(["train", str(a / "config.yaml"), "--out", str(tmp_path / "t")]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 2 and all("do not belong together" in ln for ln in lines), lines


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
