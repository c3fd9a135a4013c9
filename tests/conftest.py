"""Test-wide set-up: every test runs offline, on the CPU, with caches and W&B files in a temporary
directory. Fixtures for data and storages live in tests/fixtures/ (one module per concern)."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.fixtures.data", "tests.fixtures.storage", "tests.mirror_helpers",
                  "tests.fault_helpers"]

# Modules whose tests run studies with worker processes, heartbeats, signals, servers or
# schedulers: `make test` runs them alone (`-m serial`), after the rest has run two at a time
# (`-n 2 -m "not serial"`), so no test with a grace period or a deadline shares the cores.
SERIAL = {
    "test_compare", "test_confirm", "test_faults", "test_faults_disks", "test_faults_edges",
    "test_finalize",
    "test_mirror_background", "test_sampling", "test_shipped_studies", "test_slurm",
    "test_storage_backends", "test_sweep_run", "test_sweep_scene_iou", "test_sweep_workers",
    "test_trial_killed", "test_worker_join", "test_worker_visibility",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.stem in SERIAL:
            item.add_marker(pytest.mark.serial)


@pytest.fixture(scope="session", autouse=True)
def _ctrl_c_reaches_children():
    """A suite started in the background (as `cmd &` without job control) inherits SIGINT
    ignored, and exec passes an ignored signal on: the workers and scripts the tests Ctrl-C
    would never see it. A handled SIGINT is reset to the default in every child instead."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory):
    root = tmp_path_factory.mktemp("env")
    values = {
        "CLOUDSEG_CACHE_DIR": str(root / "cache"),
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(root / "wandb"),
        "WANDB_CACHE_DIR": str(root / "wandb-cache"),
        "WANDB_CONFIG_DIR": str(root / "wandb-config"),
        "WANDB_SILENT": "true",
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    os.environ.pop("WANDB_API_KEY", None)
    os.environ.pop("CLOUDSWEEP_DATA", None)
    # Tiny test models gain nothing from more intra-op threads; on 2 cores, spinning threads
    # in every process make the suite several times slower.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
