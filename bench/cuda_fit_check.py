"""One-shot CUDA check of the training path that the CPU test suite cannot reach: fit with AMP
and channels_last, run_training with pinned uint16 batches and DataLoader workers, and the
out-of-memory path (typed error, GPU memory released). Exits non-zero on the first failure.

    python bench/cuda_fit_check.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout

from cloudseg.config import parse_run_config  # noqa: E402
from cloudseg.data import write_synthetic  # noqa: E402
from cloudseg.errors import OutOfMemoryError  # noqa: E402
from cloudseg.models import build_model  # noqa: E402
from cloudseg.training.build import run_training  # noqa: E402
from cloudseg.training.loop import fit, seed_everything  # noqa: E402


def check(ok: bool, what: str) -> None:
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok:
        sys.exit(1)


def toy(n: int, size: int, seed: int) -> TensorDataset:
    """Bright clouds on darker ground, uint16, as the real loaders deliver them."""
    g = torch.Generator().manual_seed(seed)
    cloud = torch.rand(n, 1, size // 16, size // 16, generator=g) > 0.6
    cloud = cloud.repeat_interleave(16, 2).repeat_interleave(16, 3)
    level = torch.where(cloud, 26000.0, 9000.0).expand(n, 4, size, size)
    images = (level + 3000 * torch.randn(n, 4, size, size, generator=g)).clamp(1, 60000)
    return TensorDataset(images.to(torch.int32).to(torch.uint16), cloud.to(torch.uint8))


def main() -> int:
    check(torch.cuda.is_available(), f"CUDA available ({torch.__version__})")
    print(torch.cuda.get_device_name(0), "bf16:", torch.cuda.is_bf16_supported())

    # 1. fit on the device: AMP + channels_last, peak memory, learning.
    config = parse_run_config({
        "model": {"name": "unet", "encoder": "resnet18"},
        "optim": {"lr": 3e-3, "batch_size": 16},
        "train": {"epochs": 6, "device": "cuda"},
    })
    seed_everything(0)
    model = build_model(config.model)
    train = DataLoader(toy(256, 128, 0), 16, shuffle=True, pin_memory=True)
    val = DataLoader(toy(32, 128, 1), 16, pin_memory=True)
    t = time.perf_counter()
    result = fit(model, nn.BCEWithLogitsLoss(), train, val, config)
    print(f"fit: {time.perf_counter() - t:.1f} s, {result.extras['device']}, "
          f"peak {result.peak_memory_mb:.0f} MiB, "
          f"img/s per epoch {[round(r.images_per_s) for r in result.history]}, "
          f"val IoU {[round(r.val.iou, 3) for r in result.history]}")
    check("channels_last" in result.extras["device"], "fit ran with channels_last")
    check(result.peak_memory_mb is not None and result.peak_memory_mb > 0, "peak memory recorded")
    m = result.best
    all_cloud = (m.tp + m.fn) / (m.tp + m.fp + m.fn + m.tn)  # IoU of predicting cloud everywhere
    check(m.iou > all_cloud + 0.1,
          f"learnt under AMP: IoU {m.iou:.3f} vs all-cloud {all_cloud:.3f}")

    # 2. run_training end to end: cache, split, pinned uint16 batches, 2 workers.
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic(Path(tmp) / "syn", train_scenes=4, test_scenes=1,
                               scene_size=(600, 700), seed=0)
        config = parse_run_config({
            "data": {"root": str(root), "cache_dir": f"{tmp}/cache", "val_fraction": 0.25,
                     "train_fraction": 1.0, "crop": 256},
            "model": {"name": "unet", "encoder": "resnet34"},
            "loss": {"name": "weighted-bce", "pos_weight": "auto"},
            "optim": {"lr": 1e-3, "batch_size": 4},
            "train": {"epochs": 2, "num_workers": 2, "normalisation": "band-stats"},
        })
        result = run_training(config, out_dir=Path(tmp) / "out")
        print(f"run_training: {result.extras['n_train']} train / {result.extras['n_val']} val "
              f"patches, pos_weight {result.config.loss.pos_weight:.3f}, "
              f"val IoU {[round(r.val.iou, 3) for r in result.history]}")
        check((Path(tmp) / "out" / "best" / "model.safetensors").is_file(), "bundles written")

    # 3. out of memory: a typed error with the batch size, and the memory is given back.
    del model, train, val
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    config = parse_run_config({
        "model": {"name": "vanilla-unet"},  # paper width, 31 M parameters
        "optim": {"batch_size": 1024},
        "train": {"epochs": 1, "device": "cuda"},
    })
    huge = DataLoader(TensorDataset(torch.zeros(1024, 4, 384, 384, dtype=torch.uint16),
                                    torch.zeros(1024, 1, 384, 384, dtype=torch.uint8)), 1024)
    try:
        fit(build_model(config.model), nn.BCEWithLogitsLoss(), huge, huge, config)
        check(False, "batch 1024 of 384x384 on vanilla-unet should not fit")
    except OutOfMemoryError as err:
        after = torch.cuda.memory_allocated()
        print(f"OOM: {err}; allocated before {before / 2**20:.0f} MiB, "
              f"after {after / 2**20:.0f} MiB")
        check(err.batch_size == 1024, "OutOfMemoryError carries the batch size")
        check(after - before < 64 * 2**20, "GPU memory released after the OOM")
    return 0


if __name__ == "__main__":
    sys.exit(main())
