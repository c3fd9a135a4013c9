"""Every model model-search can draw builds and trains one step on the CPU with the four bands:
one contract test over the choices the shipped spec lists (each architecture with each encoder
family its condition allows, each encoder with the first architecture, each from-scratch U-Net
at each width), so a choice no trial could train fails here, not in trial 17."""

from __future__ import annotations

import pytest
import torch

from cloudseg import MODELS, ModelConfig, build_loss, build_model
from sweep.study.spec import load_spec

SPEC = load_spec("model-search")


# ResNets of one family share their stages (34 and 50 differ in depth and block, not in what
# a decoder sees: 50 has 4x the channels, tested with unet, the spec's first choice): every
# architecture is tested with one encoder of each family, every encoder with unet.
FAMILY = {"resnet18": "resnet", "resnet34": "resnet", "resnet50": "resnet"}


def space_models() -> list[ModelConfig]:
    names = SPEC.space["model.name"].choices or []
    encoder, width = SPEC.space["model.encoder"], SPEC.space["model.base_width"]
    encoders = list(encoder.choices or [])
    configs = []
    for name in names:
        if name in encoder.when["model.name"]:
            seen: set[str] = set()
            for e in encoders:
                family = FAMILY.get(e, e)
                if name == names[0] or family not in seen:
                    configs.append(ModelConfig(name=name, encoder=e))
                    seen.add(family)
        else:
            configs += [ModelConfig(name=name, base_width=w) for w in width.choices or []]
    return configs


def test_the_space_lists_every_architecture_with_encoders_or_widths():
    configs = space_models()
    assert {c.name for c in configs} == set(SPEC.space["model.name"].choices)
    encoders = {c.encoder for c in configs if c.base_width is None}
    assert encoders == set(SPEC.space["model.encoder"].choices)  # every encoder choice
    assert len(configs) == 5 + 7 * 3 + 3 * 3


def label(config: ModelConfig) -> str:
    return f"{config.name}-{config.encoder if config.base_width is None else config.base_width}"


@pytest.mark.parametrize("config", space_models(), ids=label)
def test_every_model_search_choice_trains_one_step_on_four_bands(config):
    """At the smallest side the model takes (the spec's crop is checked against every model
    when the spec loads)."""
    torch.manual_seed(0)
    model = build_model(config)
    loss_fn = build_loss(SPEC.fixed.loss)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    side = max(32, MODELS.get(config.name).min_size)
    x = torch.rand(2, 4, side, side)
    y = (torch.rand(2, 1, side, side) > 0.5).float()
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))  # it learned
