"""Test-wide set-up: every test runs offline, on the CPU, with caches and W&B files in a temporary
directory. Fixtures for data and storages live in tests/fixtures/ (one module per concern)."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.fixtures.data", "tests.fixtures.storage", "tests.mirror_helpers"]


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
