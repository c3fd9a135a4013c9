"""run_training and `cloudseg train` on the synthetic 38-Cloud tree: a tiny model learns, the
resolved config is complete and reloadable, runs repeat exactly, errors name what to fix."""

from __future__ import annotations

import pytest

from cloudseg.cli import main
from cloudseg.config import RunConfig, load_run_config, parse_run_config
from cloudseg.data import compute_stats, resample, split_by_scene
from cloudseg.errors import ConfigError, DivergedError
from cloudseg.metrics import Metrics
from cloudseg.training.build import run_training
from cloudseg.training.checkpoint import load_bundle


@pytest.fixture
def make_config(synthetic_root, synthetic_cache):
    """RunConfig over the session's synthetic tree and its already packed cache."""

    def make(**sections) -> RunConfig:
        base = {
            "data": {"root": str(synthetic_root), "cache_dir": str(synthetic_cache.path.parent),
                     "val_fraction": 0.25, "train_fraction": 1.0, "crop": 64},
            "model": {"name": "vanilla-unet", "base_width": 4},
            "optim": {"lr": 0.01, "batch_size": 4},
            "train": {"epochs": 1, "max_steps_per_epoch": 1},
        }
        for name, values in sections.items():
            base.setdefault(name, {}).update(values)
        return parse_run_config(base)

    return make


def trivial_ious(m: Metrics) -> tuple[float, float]:
    """IoU of predicting all clear and all cloud on the same validation pixels."""
    cloud, clear = m.tp + m.fn, m.fp + m.tn
    return Metrics(0, 0, cloud, clear).iou, Metrics(cloud, clear, 0, 0).iou


def test_a_tiny_model_learns_the_synthetic_clouds(make_config):
    # width 8: at width 4 the tiny U-Net needs far more steps than a test can afford
    config = make_config(
        model={"base_width": 8},
        train={"epochs": 8, "max_steps_per_epoch": None, "normalisation": "band-stats"},
    )
    result = run_training(config)
    best = result.best
    all_clear, all_cloud = trivial_ious(best)
    assert 0.2 < all_cloud < 0.9  # both classes present: the bar is not vacuous
    assert best.iou > max(all_clear, all_cloud) + 0.1
    assert result.history[-1].train_loss < result.history[0].train_loss


def test_the_resolved_config_records_what_the_run_used(make_config, synthetic_cache, tmp_path):
    config = make_config(
        loss={"name": "weighted-bce", "pos_weight": "auto"},
        train={"normalisation": "band-stats"},
        data={"train_fraction": 0.5, "subset_seed": 3, "max_val_patches": 2},
    )
    result = run_training(config, out_dir=tmp_path)

    records = synthetic_cache.records
    split = split_by_scene(records, 0.25, config.data.split_seed)
    subset = resample(records, split.train, 0.5, 3)
    stats = compute_stats(synthetic_cache, subset)  # training subset only
    resolved = result.config
    assert resolved.loss.pos_weight == pytest.approx(stats.pos_weight)
    assert resolved.train.band_mean == pytest.approx(stats.band_mean)
    assert resolved.train.band_std == pytest.approx(stats.band_std)
    assert resolved.data.root.is_absolute()
    assert resolved.model == config.model and resolved.optim == config.optim

    extras = result.extras
    assert extras["n_train"] == len(subset) and extras["n_val"] == 2
    assert extras["pos_weight"] == resolved.loss.pos_weight
    assert set(extras["scenes"]["val"]) <= set(split.val_scenes)
    assert not set(extras["scenes"]["train"]) & set(extras["scenes"]["val"])

    # The bundle carries the resolved config: it trains and predicts the same way again.
    assert load_run_config(tmp_path / "best" / "config.yaml") == resolved
    _, bundle_config = load_bundle(tmp_path / "last")
    assert bundle_config == resolved


def test_same_seed_twice_gives_identical_metrics_on_cpu(make_config):
    config = make_config(train={"epochs": 2, "max_steps_per_epoch": 2, "seed": 5})

    def summary(result):
        return [(r.train_loss, r.val_loss, r.val) for r in result.history]

    first = summary(run_training(config))
    assert summary(run_training(config)) == first
    other = make_config(train={"epochs": 2, "max_steps_per_epoch": 2, "seed": 6})
    assert summary(run_training(other)) != first  # the seed reaches weights and batches


def test_an_absurd_learning_rate_raises_diverged(make_config):
    config = make_config(optim={"lr": 1e30, "batch_size": 2},
                         train={"max_steps_per_epoch": None})
    with pytest.raises(DivergedError) as info:
        run_training(config)
    assert info.value.epoch == 1 and info.value.step >= 2


def test_missing_data_root_says_how_to_get_data(make_config, monkeypatch, synthetic_root):
    bare = make_config(data={"root": None})
    with pytest.raises(ConfigError) as info:
        run_training(bare)
    for hint in ("--data", "CLOUDSWEEP_DATA", "cloudseg synth"):
        assert hint in str(info.value)
    monkeypatch.setenv("CLOUDSWEEP_DATA", str(synthetic_root))
    assert run_training(bare).config.data.root == synthetic_root


def test_a_crop_the_model_cannot_take_fails_before_any_data_work(make_config):
    config = make_config(data={"crop": 40, "root": "/nonexistent"})
    with pytest.raises(ConfigError, match="multiples of 16"):
        run_training(config)


# ---- cloudseg train ----------------------------------------------------------------------------


def test_cloudseg_train_runs_a_yaml_and_prints_the_table(make_config, tmp_path, capsys):
    config = make_config(train={"epochs": 2})
    path = tmp_path / "run.yaml"
    # the YAML names no data root: --data supplies it, as for an exported config.yaml
    path.write_text(make_config(train={"epochs": 2}, data={"root": None}).to_yaml())
    code = main(["train", str(path), "--data", str(config.data.root), "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert code == 0
    assert "validation metrics per epoch" in out
    for column in ("IoU", "Dice", "precision", "recall"):
        assert column in out
    assert "best epoch" in out and "best checkpoint" in out
    assert (tmp_path / "o" / "best" / "model.safetensors").is_file()
    assert load_run_config(tmp_path / "o" / "last" / "config.yaml").data.root == config.data.root


@pytest.mark.parametrize(("yaml_text", "field"), [
    ("optim:\n  lr: -1\n", "optim.lr"),
    ("train:\n  epoch: 3\n", "train.epoch: unknown key"),
    ("model: [unet]\n", "model"),
])
def test_cloudseg_train_bad_config_exits_2_naming_the_field(tmp_path, capsys, yaml_text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and field in err
    assert "Traceback" not in err


def test_cloudseg_train_without_data_exits_2_with_the_hint(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  name: vanilla-unet\n  base_width: 4\n")
    assert main(["train", str(path)]) == 2
    assert "CLOUDSWEEP_DATA" in capsys.readouterr().err
