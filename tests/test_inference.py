"""CPU inference folds BatchNorm into the convolutions only where that keeps the function."""

from __future__ import annotations

import pytest
import torch

from cloudseg.config import ModelConfig
from cloudseg.models import build_model
from cloudseg.scenes.inference import fold_batchnorm

CASES = [
    (ModelConfig(name="vanilla-unet", base_width=4), True),
    (ModelConfig(name="attention-unet", base_width=4), True),
    (ModelConfig(name="r2unet", base_width=4), False),  # a conv used with and without its norm
    (ModelConfig(name="unet", encoder="resnet18"), True),
]


@pytest.mark.parametrize(("config", "folds"), CASES, ids=[c.name for c, _ in CASES])
def test_folding_keeps_the_models_output(config, folds):
    torch.manual_seed(0)
    model = build_model(config).eval()
    for m in model.modules():  # trained-looking statistics, so folding has work to do
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    folded = fold_batchnorm(model)
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert (norms == 0) == folds and (folded is model) == (not folds)
    x = torch.randn(2, 4, 96, 96)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-3, atol=1e-4)
