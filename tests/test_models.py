"""MODELS contract: every entry maps (B, 4, H, W) → (B, 1, H, W) logits and trains; the
from-scratch U-Nets match their published sizes; bad names fail with the valid choices."""

from __future__ import annotations

import pytest
import torch

from cloudseg.config import ModelConfig
from cloudseg.errors import ConfigError
from cloudseg.models import MODELS, build_model, check_input_size

SMALL_ENCODER = "resnet18"  # smp's own encoder, cheap at 64 px
SMALL_WIDTH = 4



def small_config(name: str) -> ModelConfig:
    if MODELS.get(name).uses_encoder:
        return ModelConfig(name=name, encoder=SMALL_ENCODER)
    return ModelConfig(name=name, base_width=SMALL_WIDTH)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_maps_four_bands_to_one_logit_map_and_trains(name):
    torch.manual_seed(0)
    model = build_model(small_config(name))
    side = max(64, MODELS.get(name).min_size)
    check_input_size(name, side)
    x = torch.randn(2, 4, side, side, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 1, side, side)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    out.mean().backward()
    # The gradient reaches the input (through every stage) and the weights.
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_registry_holds_smp_architectures_and_the_from_scratch_unets():
    expected = {
        "unet", "unetplusplus", "manet", "linknet", "fpn", "pspnet", "pan", "deeplabv3",
        "deeplabv3plus", "upernet", "segformer", "vanilla-unet", "attention-unet", "r2unet",
    }  # fmt: skip
    assert set(MODELS.names()) == expected


# Published counts at base width 64 (sources in each module's docstring): vanilla U-Net
# (Ronneberger 2015) 31.0 M; attention U-Net 34.88 M and R2U-Net 39.09 M (the 2-D reference
# implementation LeeJunHyun/Image_Segmentation). Counted only, no forward pass.
@pytest.mark.parametrize(
    ("name", "published"),
    [("vanilla-unet", 31.0e6), ("attention-unet", 34.88e6), ("r2unet", 39.09e6)],
)
def test_from_scratch_models_at_paper_width_match_published_parameter_counts(name, published):
    model = build_model(ModelConfig(name=name))  # base_width None → paper width 64
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - published) / published < 0.05, count


def test_base_width_scales_the_from_scratch_models():
    counts = [
        sum(
            p.numel()
            for p in build_model(ModelConfig(name="vanilla-unet", base_width=w)).parameters()
        )
        for w in (4, 8)
    ]
    assert 3.5 < counts[1] / counts[0] < 4.5  # convolutions grow with width squared


def test_unknown_model_names_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown model 'unet3'.*vanilla-unet"):
        build_model(ModelConfig(name="unet3"))


def test_unknown_encoder_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"model\.encoder.*'resnet0'.*resnet34"):
        build_model(ModelConfig(name="unet", encoder="resnet0"))
    with pytest.raises(ConfigError, match="tu-no_such_timm_model"):
        build_model(ModelConfig(name="fpn", encoder="tu-no_such_timm_model"))


def test_timm_universal_encoders_are_accepted():
    model = build_model(ModelConfig(name="unet", encoder="tu-mobilenetv3_small_050"))
    assert model(torch.randn(1, 4, 64, 64)).shape == (1, 1, 64, 64)


def test_architecture_encoder_mismatch_is_a_config_error():
    with pytest.raises(ConfigError, match="'unetplusplus' cannot use encoder 'mit_b0'"):
        build_model(ModelConfig(name="unetplusplus", encoder="mit_b0"))


def test_base_width_on_an_encoder_model_is_rejected():
    with pytest.raises(ConfigError, match=r"'fpn' does not use model\.base_width \(got 16\)"):
        build_model(ModelConfig(name="fpn", base_width=16))


def test_weights_are_never_pretrained():
    # Two builds with different seeds differ: nothing was loaded from a file or the network.
    torch.manual_seed(0)
    a = build_model(ModelConfig(name="unet", encoder=SMALL_ENCODER)).state_dict()
    torch.manual_seed(1)
    b = build_model(ModelConfig(name="unet", encoder=SMALL_ENCODER)).state_dict()
    key = "encoder.conv1.weight"
    assert a[key].shape[1] == 4 and not torch.equal(a[key], b[key])


@pytest.mark.parametrize(("name", "side"), [("unet", 48), ("pan", 64), ("vanilla-unet", 40)])
def test_input_sizes_a_model_cannot_take_are_reported(name, side):
    with pytest.raises(ConfigError, match=f"{name!r} needs .*got {side}"):
        check_input_size(name, side)


def test_pan_really_needs_its_minimum_input():
    # The declared minimum is real: PAN fails below it with a raw torch error.
    model = build_model(ModelConfig(name="pan", encoder=SMALL_ENCODER))
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 4, 96, 96))
