"""`cloudseg train`: one fit from a RunConfig YAML (the config.yaml `sweep best --export` writes),
with a live progress bar and the per-epoch metrics table at the end. Registered on import by
cloudseg.cli; torch and rich load only when the command runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cloudseg.cli.registry import command

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from cloudseg.training.results import EpochRecord, FitResult


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="RunConfig YAML (e.g. an exported config.yaml)")
    p.add_argument(
        "--data", type=Path, default=None,
        help="data root; overrides data.root (default: data.root, else $CLOUDSWEEP_DATA)",
    )
    p.add_argument(
        "--threads", type=_positive_int, default=None, metavar="N",
        help="torch threads; overrides train.threads (an exported config carries the count its "
        "trial ran with, so the run reproduces the trial; unset: one per core)",
    )
    p.add_argument(
        "--out", type=Path, default=None,
        help="where the best/ and last/ checkpoint bundles go (default: runs/<config>-<time>)",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


@command("train", "train one model from a RunConfig YAML", _train_arguments)
def train(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cloudseg.config import load_run_config
    from cloudseg.cores import available_cores, loader_workers
    from cloudseg.data import open_cache
    from cloudseg.training.build import resolve_data_root, run_training, with_data_root
    from cloudseg.training.checkpoint import CONFIG_FILE, WEIGHTS_FILE, check_bundle

    config = load_run_config(args.config)
    if args.config.name == CONFIG_FILE and (args.config.parent / WEIGHTS_FILE).is_file():
        check_bundle(args.config.parent)  # a bundle's config.yaml must be its weights' config
    if args.data is not None:
        config = with_data_root(config, args.data)
    if args.threads is not None:
        config = config.with_overrides({"train.threads": args.threads}, "--threads")
    workers = loader_workers(config.train.num_workers)
    if workers < config.train.num_workers:
        print(f"note: train.num_workers {config.train.num_workers} -> {workers}: this process "
              f"may run on {available_cores()} cores", file=sys.stderr)
    out = args.out or Path("runs") / f"{args.config.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    console = Console() if Console().is_terminal else Console(width=120)

    # Pack the cache first, with its own progress output, before the training bar goes live.
    open_cache(resolve_data_root(config), cache_dir=config.data.cache_dir, progress=True,
               include_additional=config.data.include_additional)
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[ips]:.1f} img/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        result = run_training(
            config, callbacks=[_EpochLine(progress.console)], out_dir=out, progress=progress
        )
    console.print(metrics_table(result))
    _print_summary(console, result)
    return 0


class _EpochLine:
    """Callback: one line per finished epoch above the live bar."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def on_epoch_end(self, epoch: int, record: EpochRecord) -> None:
        self.console.print(
            f"epoch {epoch}: train loss {record.train_loss:.4f}  val loss {record.val_loss:.4f}  "
            f"val IoU {record.val.iou:.4f}  {record.images_per_s:.1f} img/s"
        )


def metrics_table(result: FitResult) -> Table:
    """Per-epoch validation metrics (pooled pixel counts over the validation patches)."""
    from rich.table import Table

    table = Table(title="validation metrics per epoch (pixels pooled over all val patches)")
    for name in ("epoch", "train loss", "val loss", "IoU", "Dice", "precision", "recall",
                 "specificity", "accuracy", "img/s"):
        table.add_column(name, justify="right")
    for r in result.history:
        m = r.val
        best = r.epoch == result.best_epoch
        table.add_row(
            f"{r.epoch}{' *' if best else ''}", f"{r.train_loss:.4f}", f"{r.val_loss:.4f}",
            *(f"{v:.4f}" for v in (m.iou, m.dice, m.precision, m.recall)),
            f"{m.specificity:.4f}", f"{m.accuracy:.4f}",
            f"{r.images_per_s:.1f}", style="bold" if best else None,
        )
    return table


def _print_summary(console: Console, result: FitResult) -> None:
    ex = result.extras
    console.print(
        f"best epoch {result.best_epoch} (* above): val IoU {result.best.iou:.4f}; "
        f"{ex.get('n_train', '?')} training / {ex.get('n_val', '?')} validation patches; "
        f"device {ex.get('device', '?')}; {result.fit_seconds:.1f} s"
        + (f"; peak GPU memory {result.peak_memory_mb:.0f} MiB" if result.peak_memory_mb else "")
        + (" (stopped early)" if result.stopped_early else "")
    )
    if result.best_checkpoint is not None:
        console.print(f"best checkpoint: {result.best_checkpoint}")
        console.print(f"last checkpoint: {result.last_checkpoint}")
