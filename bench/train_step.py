"""Training-step throughput (images/s, peak memory) per model on the current device.

One step is forward + backward + AdamW, as in `cloudseg.fit`. On CUDA every model also runs
in plain fp32 (NCHW) as the baseline, and the AMP and AMP + channels_last ratios against it are
measured in the same run. Inputs are uint16 batches already on the device, normalised as `fit`
does; the host → device copy and the DataLoader are not part of the figure (see
bench/cuda_fit_check.py for whole-epoch images/s).

    python bench/train_step.py                                   # CPU: small, quick
    python bench/train_step.py --size 384 --batch 32 --models unet-resnet34   # GPU
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout

from cloudseg.config import ModelConfig, TrainConfig  # noqa: E402
from cloudseg.models import MODELS, build_model  # noqa: E402
from cloudseg.normalisation import normalise  # noqa: E402
from cloudseg.training.device import DeviceSetup  # noqa: E402

DEFAULT_MODELS = ["unet-resnet34", "unet-resnet18", "vanilla-unet", "attention-unet", "r2unet"]


def model_config(spec: str, base_width: int | None) -> ModelConfig:
    """`vanilla-unet` (a registry name) or `<architecture>-<encoder>`, e.g. `unet-resnet34`."""
    if spec in MODELS:
        uses_encoder = MODELS.get(spec).uses_encoder
        return ModelConfig(name=spec, base_width=None if uses_encoder else base_width)
    name, _, encoder = spec.partition("-")
    return ModelConfig(name=name, encoder=encoder or "resnet34")


def time_steps(model: nn.Module, setup: DeviceSetup, size: int, batch: int, steps: int,
               warmup: int) -> tuple[float, float | None]:
    """(images/s, peak MiB) of `steps` timed training steps after `warmup` untimed ones."""
    g = torch.Generator().manual_seed(0)
    raw = torch.randint(1, 30000, (batch, 4, size, size), generator=g, dtype=torch.int32)
    raw = raw.to(torch.uint16).to(setup.device)
    target = (torch.rand(batch, 1, size, size, generator=g) > 0.5).float().to(setup.device)
    tcfg = TrainConfig()
    model = model.to(setup.device, memory_format=setup.memory_format).train()
    loss_fn = nn.BCEWithLogitsLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True if setup.is_cuda else None)
    scaler = torch.amp.GradScaler("cuda", enabled=setup.needs_scaler)

    def step() -> None:  # the same sequence as one step of cloudseg.training.loop.fit
        x = normalise(raw, tcfg).contiguous(memory_format=setup.memory_format)
        with setup.autocast():
            logits = model(x)
        loss = loss_fn(logits.float(), target)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup):  # cuDNN autotuning, allocator warm-up, lazy inits
        step()
    setup.synchronize()
    if setup.is_cuda:
        torch.cuda.reset_peak_memory_stats(setup.device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    setup.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(setup.device) / 2**20 if setup.is_cuda else None
    return batch * steps / seconds, peak


def modes(device: torch.device, compile_too: bool) -> list[tuple[str, DeviceSetup, bool]]:
    """(label, setup, torch.compile?) per mode; fp32 first, as the baseline."""
    if device.type != "cuda":
        return [("fp32", DeviceSetup(device, None, False), False)]
    amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    tag = "bf16" if amp == torch.bfloat16 else "fp16"
    out = [
        ("fp32", DeviceSetup(device, None, False), False),
        (tag, DeviceSetup(device, amp, False), False),
        (f"{tag}+channels_last", DeviceSetup(device, amp, True), False),
    ]
    if compile_too:
        out.append((f"{tag}+cl+compile", DeviceSetup(device, amp, True), True))
    return out


def main(argv: list[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    p.add_argument("--size", type=int, default=384 if cuda else 64, help="input side (px)")
    p.add_argument("--batch", type=int, default=32 if cuda else 4)
    p.add_argument("--steps", type=int, default=20 if cuda else 3, help="timed steps")
    p.add_argument("--warmup", type=int, default=5 if cuda else 1, help="untimed steps first")
    p.add_argument("--base-width", type=int, default=64 if cuda else 16,
                   help="width of the from-scratch models (paper: 64)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--compile", action="store_true",
                   help="CUDA: also time torch.compile on top of AMP + channels_last")
    args = p.parse_args(argv)
    if args.device == "cuda" and not cuda:
        p.error("--device cuda: no CUDA device available")
    device = torch.device("cuda" if cuda and args.device != "cpu" else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as fit does
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__} on {name}; {args.size}x{args.size}, batch {args.batch}, "
          f"{args.warmup} warmup + {args.steps} timed steps (forward + backward + AdamW)")
    header = f"{'model':<22}{'params':>9}  {'mode':<20}{'img/s':>9}{'ms/step':>9}{'peak MiB':>10}"
    print(header + f"{'vs fp32':>9}")
    print("-" * (len(header) + 9))
    for spec in args.models:
        cfg = model_config(spec, args.base_width)
        baseline = None
        for mode, setup, compiled in modes(device, args.compile):
            torch.manual_seed(0)
            model = build_model(cfg)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            if compiled:
                model = torch.compile(model)
            try:
                ips, peak = time_steps(model, setup, args.size, args.batch, args.steps, args.warmup)
            except torch.cuda.OutOfMemoryError:
                print(f"{spec:<22}{params:>8.2f}M  {mode:<20}{'OOM':>9}")
                continue
            finally:
                del model
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            if mode == "fp32":
                baseline = ips
            if peak is None:  # CPU: the process high-water mark, not per model
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            ms = 1000 * args.batch / ips
            ratio = f"{ips / baseline:>8.2f}x" if baseline else f"{'-':>9}"
            print(f"{spec:<22}{params:>8.2f}M  {mode:<20}{ips:>9.1f}{ms:>9.1f}{peak:>10.0f}{ratio}")
    if device.type == "cpu":
        print("peak MiB on the CPU is the process's max RSS so far (not per model)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
