"""Device-resident batches: every item once per epoch, its pixels a true window of its patch under
one of the 8 symmetries, fresh draws per epoch, the caller's order kept for validation; and a
whole run_training through them (on the CPU, where `data.on_device: always` puts them in RAM)."""

from __future__ import annotations

import numpy as np
import torch

from cloudseg.config import parse_run_config
from cloudseg.data.device_batches import DeviceBatches, subset_bytes
from cloudseg.training.build import run_training
from cloudseg.training.device import compiled


def _symmetries(a: np.ndarray) -> list[np.ndarray]:
    """The 8 symmetries of the square on the last two axes, written out independently."""
    out = []
    for flip in (False, True):
        b = a[..., ::-1] if flip else a
        for k in range(4):
            out.append(np.rot90(b, k, axes=(-2, -1)))
    return out


def _find(window: np.ndarray, patch: np.ndarray, size: int) -> bool:
    """Is `window` some size×size window of `patch` under some symmetry?"""
    for top in range(384 - size + 1):
        for left in range(384 - size + 1):
            cut = patch[..., top : top + size, left : left + size]
            if any(np.array_equal(window, s) for s in _symmetries(cut)):
                return True
    return False


def test_an_epoch_serves_every_item_once_as_a_window_of_its_patch(synthetic_cache):
    indices = np.array([5, 0, 9, 3, 12, 7])
    batches = DeviceBatches(synthetic_cache, indices, "cpu", 4, crop=380, augment=True, seed=1)
    assert len(batches) == 2
    images, masks = zip(*batches, strict=True)
    images, masks = torch.cat(images).numpy(), torch.cat(masks).numpy()
    assert images.dtype == np.uint16 and images.shape == (6, 4, 380, 380)
    assert masks.shape == (6, 1, 380, 380)
    served = []
    for img, mask in zip(images, masks, strict=True):
        matches = [i for i in indices if _find(img[0], synthetic_cache.images[i][0], 380)]
        assert len(matches) == 1
        assert _find(mask[0], synthetic_cache.masks[matches[0]], 380)
        served.append(matches[0])
    assert sorted(served) == sorted(indices)


def test_epochs_draw_afresh_and_repeat_per_seed(synthetic_cache):
    def first_batch(epoch, seed=0):
        b = DeviceBatches(synthetic_cache, range(8), "cpu", 8, crop=64, augment=True, seed=seed)
        b.set_epoch(epoch)
        return next(iter(b))[0]

    assert torch.equal(first_batch(1), first_batch(1))
    assert not torch.equal(first_batch(1), first_batch(2))
    assert not torch.equal(first_batch(1), first_batch(1, seed=5))


def test_validation_order_is_the_callers_and_windows_are_centred(synthetic_cache):
    indices = [11, 2, 7]
    b = DeviceBatches(synthetic_cache, indices, "cpu", 2, crop=100, random_crop=False,
                      shuffle=False)
    images = torch.cat([x for x, _ in b]).numpy()
    for img, i in zip(images, indices, strict=True):
        np.testing.assert_array_equal(img, synthetic_cache.images[i][:, 142:242, 142:242])
    assert subset_bytes(1) == 384 * 384 * 9


def test_run_training_on_device_batches(synthetic_root, synthetic_cache):
    config = parse_run_config({
        "data": {"root": str(synthetic_root), "cache_dir": str(synthetic_cache.path.parent),
                 "val_fraction": 0.25, "train_fraction": 1.0, "crop": 64, "on_device": "always"},
        "model": {"name": "vanilla-unet", "base_width": 4},
        "optim": {"lr": 0.01, "batch_size": 4},
        "train": {"epochs": 2, "max_steps_per_epoch": 2, "compile": True},
    })
    result = run_training(config)
    assert result.extras["data_on_device"] is True
    assert result.extras["compiled"] is False  # compile is CUDA only: it does not pay on a CPU
    assert len(result.history) == 2 and np.isfinite(result.history[-1].train_loss)
    figures = result.history[-1].metrics()  # the threshold histograms ran in validation
    assert 0 < figures["tuned_threshold"] < 1 and figures["iou_tuned"] >= figures["iou_official"]


def test_compiled_model_trains_the_plain_modules_weights():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 1, 3, padding=1))
    net = compiled(model, backend="eager")
    x = torch.randn(2, 4, 16, 16)
    torch.testing.assert_close(net(x), model(x))
    net(x).sum().backward()
    assert model[0].weight.grad is not None  # the same parameters
    assert all(not k.startswith("_orig_mod") for k in model.state_dict())
