"""cloudseg.training.loop.fit and on-device normalisation, on tiny in-test networks over
in-memory uint16 batches (the real data and registry models are exercised in test_pipeline and
test_checkpoint)."""

from __future__ import annotations

import gc
import math
import weakref

import pytest
import torch
from rich.progress import Progress
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cloudseg.config import TrainConfig, parse_run_config
from cloudseg.errors import ConfigError, DivergedError, OutOfMemoryError
from cloudseg.normalisation import nodata_mask, normalise
from cloudseg.training.device import select_device
from cloudseg.training.loop import StepInfo, fit, seed_everything
from cloudseg.training.schedule import make_scheduler


def toy_data(n: int, seed: int, size: int = 16) -> TensorDataset:
    """uint16 4-band images where cloud is bright in every band, with a no-data margin."""
    g = torch.Generator().manual_seed(seed)
    cloud = torch.rand(n, 1, size, size, generator=g) > 0.6
    level = torch.where(cloud, 26000.0, 9000.0).expand(n, 4, size, size)
    images = (level + 3000 * torch.randn(n, 4, size, size, generator=g)).clamp(1, 60000)
    images[..., :2] = 0  # all four bands 0: no-data, must stay out of the metrics
    return TensorDataset(images.to(torch.int32).to(torch.uint16), cloud.to(torch.uint8))


def toy_net(seed: int = 0) -> nn.Module:
    seed_everything(seed)
    return nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))


def loaders(batch: int = 2, n_train: int = 8, n_val: int = 4):
    train = DataLoader(toy_data(n_train, 0), batch, shuffle=True)
    return train, DataLoader(toy_data(n_val, 1), batch)


def run_config(**sections):
    base = {"optim": {"lr": 0.05, "batch_size": 2}, "train": {"epochs": 2}}
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return parse_run_config(base)


# ---- normalisation ------------------------------------------------------------------------------


def test_normalise_max_and_band_stats():
    images = torch.tensor([0, 65535, 1000, 3000], dtype=torch.int32).view(1, 4, 1, 1)
    images = images.to(torch.uint16)
    assert torch.allclose(normalise(images, TrainConfig()).flatten(),
                          torch.tensor([0.0, 1.0, 1000 / 65535, 3000 / 65535]))
    cfg = TrainConfig(normalisation="band-stats", band_mean=(0, 65535, 0, 1000),
                      band_std=(1, 1, 1000, 1000))
    out = normalise(images, cfg)
    assert out.dtype == torch.float32
    assert out.flatten().tolist() == [0.0, 0.0, 1.0, 2.0]


def test_band_stats_without_statistics_is_a_config_error():
    images = torch.zeros(1, 4, 2, 2, dtype=torch.uint16)
    with pytest.raises(ConfigError, match="band_mean"):
        normalise(images, TrainConfig(normalisation="band-stats"))


def test_nodata_mask_needs_all_four_bands_zero():
    images = torch.full((1, 4, 1, 3), 5, dtype=torch.int32)
    images[0, :, 0, 0] = 0  # all bands 0: no-data
    images[0, :3, 0, 1] = 0  # NIR still has signal: valid
    mask = nodata_mask(images.to(torch.uint16))
    assert mask.shape == (1, 1, 1, 3)
    assert mask.flatten().tolist() == [True, False, False]


def test_cpu_runs_in_fp32_and_a_missing_gpu_is_a_config_error():
    setup = select_device(TrainConfig(device="auto", amp=True, channels_last=True))
    assert (setup.device.type, setup.amp_dtype, setup.channels_last) == ("cpu", None, False)
    assert not setup.needs_scaler
    with pytest.raises(ConfigError, match="train.device: 'cuda' requested"):
        select_device(TrainConfig(device="cuda"))


# ---- schedules ----------------------------------------------------------------------------------


def lrs(schedule: str, warmup_epochs: int, steps: int = 4, epochs: int = 3) -> list[float]:
    cfg = run_config(optim={"lr": 0.1, "schedule": schedule, "warmup_epochs": warmup_epochs})
    opt = torch.optim.AdamW(nn.Linear(1, 1).parameters(), lr=cfg.optim.lr)
    sched = make_scheduler(opt, cfg.optim, steps, epochs)
    out = []
    for _ in range(steps * epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_with_warmup_rises_linearly_then_decays_towards_zero():
    values = lrs("cosine", warmup_epochs=1)
    assert values[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert all(a >= b for a, b in zip(values[4:], values[5:], strict=False))
    assert values[-1] < 0.01


def test_constant_and_onecycle_schedules():
    assert lrs("constant", 0) == pytest.approx([0.1] * 12)
    one = lrs("onecycle", warmup_epochs=1)
    assert max(one) == pytest.approx(0.1)
    assert one.index(max(one)) == 3  # the peak ends the one warmup epoch (4 steps), as cosine
    assert one[0] < 0.01 and one[-1] < 0.001


# ---- the loop -----------------------------------------------------------------------------------


def test_fit_records_each_epoch_and_counts_only_valid_pixels(tmp_path):
    train, val = loaders()
    result = fit(toy_net(), nn.BCEWithLogitsLoss(), train, val, run_config(train={"epochs": 3}),
                 checkpoint_dir=tmp_path)
    assert [r.epoch for r in result.history] == [1, 2, 3]
    valid_pixels = 4 * 16 * 14  # 4 val images, 2 no-data columns each
    for r in result.history:
        m = r.val
        assert m.tp + m.fp + m.fn + m.tn == valid_pixels
        assert math.isfinite(r.train_loss) and math.isfinite(r.val_loss) and r.images_per_s > 0
    ious = [r.val.iou for r in result.history]
    assert result.best_epoch == ious.index(max(ious)) + 1
    assert result.peak_memory_mb is None  # CPU
    assert not result.stopped_early
    assert result.best_checkpoint == tmp_path / "best"
    assert result.last_checkpoint == tmp_path / "last"
    assert result.extras["device"] == "cpu (fp32)"


def test_max_steps_per_epoch_caps_the_training_steps():
    seen: list[StepInfo] = []
    train, val = loaders(batch=1, n_train=8)
    fit(toy_net(), nn.BCEWithLogitsLoss(), train, val,
        run_config(train={"epochs": 2, "max_steps_per_epoch": 3}), progress=seen.append)
    assert [(s.epoch, s.step, s.steps) for s in seen] == [(1, 3, 3), (2, 3, 3)]


class Recorder:
    def __init__(self, stop_at: int | None = None):
        self.epochs: list[int] = []
        self.stop_at = stop_at

    def on_epoch_end(self, epoch, record):
        self.epochs.append(epoch)
        return epoch == self.stop_at


def test_a_callback_stops_training_and_every_callback_sees_every_epoch(tmp_path):
    stopper, watcher = Recorder(stop_at=2), Recorder()
    train, val = loaders()
    result = fit(toy_net(), nn.BCEWithLogitsLoss(), train, val, run_config(train={"epochs": 5}),
                 callbacks=[stopper, watcher], checkpoint_dir=tmp_path)
    assert result.stopped_early
    assert len(result.history) == 2
    assert stopper.epochs == watcher.epochs == [1, 2]
    assert (tmp_path / "last" / "model.safetensors").is_file()  # the stopped run is kept


class Pruned(Exception):
    pass


class Pruner:
    def on_epoch_end(self, epoch, record):
        raise Pruned(f"pruned at {epoch}")


def test_a_callback_exception_propagates_unchanged_after_cleanup():
    train, val = loaders()
    before = torch.are_deterministic_algorithms_enabled()
    with Progress(disable=True) as progress:
        with pytest.raises(Pruned, match="pruned at 1"):
            fit(toy_net(), nn.BCEWithLogitsLoss(), train, val, run_config(),
                callbacks=[Pruner()], progress=progress)
        assert progress.tasks == []  # fit's bar is gone
    assert torch.are_deterministic_algorithms_enabled() == before


def test_the_best_bundle_is_written_before_a_callback_ends_the_run(tmp_path):
    train, val = loaders()
    with pytest.raises(Pruned):
        fit(toy_net(), nn.BCEWithLogitsLoss(), train, val, run_config(),
            callbacks=[Pruner()], checkpoint_dir=tmp_path)
    assert (tmp_path / "best" / "model.safetensors").is_file()
    assert not (tmp_path / "last").exists()  # only a run that ends without an error has one


class NanAfter(nn.Module):
    """BCE that turns non-finite on its n-th training call (a loss hook)."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.calls, self.bce = n, 0, nn.BCEWithLogitsLoss()

    def forward(self, logits, target):
        if torch.is_grad_enabled():
            self.calls += 1
        loss = self.bce(logits, target)
        return loss * math.nan if self.calls == self.n else loss


@pytest.mark.parametrize(("call", "epoch", "step"), [(13, 1, 13), (25, 2, 5)])
def test_non_finite_loss_raises_diverged_with_its_epoch_and_step(call, epoch, step):
    train, val = loaders(batch=1, n_train=20, n_val=1)  # 20 steps per epoch
    with pytest.raises(DivergedError) as info:
        fit(toy_net(), NanAfter(call), train, val, run_config(train={"epochs": 3}))
    assert (info.value.epoch, info.value.step) == (epoch, step)
    assert math.isnan(info.value.loss)


def test_an_absurd_learning_rate_diverges_at_the_second_step():
    train, val = loaders()
    with pytest.raises(DivergedError) as info:
        fit(toy_net(), nn.BCEWithLogitsLoss(), train, val, run_config(optim={"lr": 1e30}))
    assert (info.value.epoch, info.value.step) == (1, 2)  # step 1's loss predates the update


def test_same_seed_same_run_and_the_seed_matters():
    def run(seed: int):
        train, val = loaders()
        model = toy_net(0)  # same initial weights; only the seed given to fit changes
        result = fit(model, nn.BCEWithLogitsLoss(), train, val,
                     run_config(train={"epochs": 2, "seed": seed}))
        return [(r.train_loss, r.val_loss, r.val) for r in result.history]

    assert run(3) == run(3)
    assert run(3) != run(4)  # the seed drives the shuffling: the comparison can fail


class OutOfMemoryNet(nn.Module):
    """Raises the real CUDA OOM exception type on its second forward, as a full GPU would."""

    def __init__(self):
        super().__init__()
        self.conv, self.calls, self.batch = nn.Conv2d(4, 1, 1), 0, None

    def forward(self, x):
        self.calls += 1
        if self.calls == 2:
            self.batch = weakref.ref(x)  # on a GPU this would be the memory to give back
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.conv(x)


def test_out_of_memory_becomes_a_typed_error_with_the_batch_size():
    train, val = loaders(batch=2)
    net = OutOfMemoryNet()
    with pytest.raises(OutOfMemoryError) as info:
        fit(net, nn.BCEWithLogitsLoss(), train, val, run_config(optim={"batch_size": 2}))
    err = info.value
    gc.collect()
    assert net.batch() is None  # the batch died although the error (and fit's frame) lives on
    assert err.batch_size == 2
    assert "Tried to allocate 2.00 GiB" in str(err)
    # Raised outside the handler: the OOM traceback (and the batch tensors its frames pin)
    # is not chained to the error the sweep keeps.
    assert err.__context__ is None and err.__cause__ is None


def test_progress_accepts_a_rich_progress():
    train, val = loaders(batch=1, n_train=12)
    seen = []

    class Inspect:  # looks at fit's bar at the end of each epoch
        def on_epoch_end(self, epoch, record):
            (task,) = progress.tasks
            seen.append((task.description, task.completed, task.total, task.fields["loss"]))

    with Progress(disable=True) as progress:
        fit(toy_net(), nn.BCEWithLogitsLoss(), train, val, run_config(), callbacks=[Inspect()],
            progress=progress)
        assert progress.tasks == []
    assert [s[:3] for s in seen] == [("epoch 1/2", 12, 12), ("epoch 2/2", 12, 12)]
    assert all(math.isfinite(s[3]) for s in seen)


def test_empty_loaders_are_a_config_error():
    _, val = loaders()
    empty = DataLoader(toy_data(0, 0), 2)
    with pytest.raises(ConfigError, match="at least one batch"):
        fit(toy_net(), nn.BCEWithLogitsLoss(), empty, val, run_config())
