"""MODELS: architecture name → factory of a (B, 4, H, W) → (B, 1, H, W) logit network.

smp architectures take `ModelConfig.encoder` and are always built with `encoder_weights=None`
(no download, ever). The from-scratch U-Nets (cloudseg.nets) take `base_width` instead.
torch and smp load only when a model is built, so listing names stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cloudseg.config import ModelConfig
from cloudseg.errors import ConfigError
from cloudseg.registry import Registry

if TYPE_CHECKING:
    from torch import nn

IN_CHANNELS = 4  # R, G, B, NIR
CLASSES = 1  # one cloud logit map
PAPER_WIDTH = 64  # base width of the from-scratch models in their papers


@dataclass(frozen=True)
class ModelSpec:
    """How to build one architecture and which inputs it accepts."""

    build: Callable[[ModelConfig], nn.Module]
    uses_encoder: bool  # smp: ModelConfig.encoder matters; scratch: base_width matters
    multiple: int  # input height and width must be multiples of this
    min_size: int  # smallest input side that works


MODELS: Registry[ModelSpec] = Registry("model")

# smp 0.6 class name → (our name, input multiple, min side). Every architecture takes an
# encoder and a 4-band input; PAN's feature-pyramid attention pools the stride-32 map and needs
# at least 4×4 there. Segformer resizes internally, so any side ≥ 32 works. DPT is left out: it
# needs a timm ViT encoder, so it cannot share the encoder choice the other entries use.
_SMP = {
    "Unet": ("unet", 32, 32),
    "UnetPlusPlus": ("unetplusplus", 32, 32),
    "MAnet": ("manet", 32, 32),
    "Linknet": ("linknet", 32, 32),
    "FPN": ("fpn", 32, 32),
    "PSPNet": ("pspnet", 32, 32),
    "PAN": ("pan", 32, 128),
    "DeepLabV3": ("deeplabv3", 32, 32),
    "DeepLabV3Plus": ("deeplabv3plus", 32, 32),
    "UPerNet": ("upernet", 32, 32),
    "Segformer": ("segformer", 1, 32),
}


def smp_class_name(name: str) -> str | None:
    """The smp class behind architecture `name` (`"unet"` → `"Unet"`); None for the
    from-scratch U-Nets. An unknown name is the registry's ConfigError listing the choices.
    """
    MODELS.get(name)
    return next((cls for cls, (ours, _, _) in _SMP.items() if ours == name), None)


def model_imports(name: str) -> tuple[str, ...]:
    """The packages that building model `name` imports beyond torch, so that a process which
    will build it can import them ahead (smp's: seconds, for timm and torchvision).
    """
    return ("segmentation_models_pytorch",) if MODELS.get(name).uses_encoder else ()


def smp_encoder_names() -> list[str]:
    """Every encoder name smp accepts, sorted (the valid names an unknown-encoder error lists)."""
    import segmentation_models_pytorch as smp

    return sorted(smp.encoders.get_encoder_names())


def check_encoder(name: str) -> None:
    """`smp`'s own encoders, or `tu-<model>` for any timm model: else a ConfigError listing them."""
    if name.startswith("tu-"):
        import timm

        if timm.is_model(name[3:]):
            return
    elif name in smp_encoder_names():
        return
    raise ConfigError(
        f"model.encoder: unknown encoder {name!r}; valid: {', '.join(smp_encoder_names())}, "
        "or tu-<timm model name>"
    )


def _smp_factory(class_name: str) -> Callable[[ModelConfig], nn.Module]:
    def build(cfg: ModelConfig) -> nn.Module:
        import segmentation_models_pytorch as smp

        check_encoder(cfg.encoder)
        try:
            return getattr(smp, class_name)(
                encoder_name=cfg.encoder,
                encoder_weights=None,
                in_channels=IN_CHANNELS,
                classes=CLASSES,
            )
        except (ValueError, KeyError) as err:  # smp's arch/encoder incompatibilities
            raise ConfigError(
                f"model {cfg.name!r} cannot use encoder {cfg.encoder!r}: {err}"
            ) from None

    return build


for _cls, (_name, _multiple, _min) in _SMP.items():
    MODELS.add(_name, ModelSpec(_smp_factory(_cls), True, _multiple, _min))


def _scratch_factory(class_name: str) -> Callable[[ModelConfig], nn.Module]:
    def build(cfg: ModelConfig) -> nn.Module:
        from cloudseg import nets

        width = PAPER_WIDTH if cfg.base_width is None else cfg.base_width
        return getattr(nets, class_name)(IN_CHANNELS, CLASSES, base_width=width)

    return build


MODELS.add("vanilla-unet", ModelSpec(_scratch_factory("VanillaUNet"), False, 16, 16))
MODELS.add("attention-unet", ModelSpec(_scratch_factory("AttentionUNet"), False, 16, 16))
MODELS.add("r2unet", ModelSpec(_scratch_factory("R2UNet"), False, 16, 16))


def build_model(cfg: ModelConfig) -> nn.Module:
    """A freshly initialised network for `cfg` (never pretrained weights)."""
    spec = MODELS.get(cfg.name)
    if spec.uses_encoder and cfg.base_width is not None:
        raise ConfigError(
            f"model {cfg.name!r} does not use model.base_width (got {cfg.base_width}); "
            "it is for the from-scratch models: "
            + ", ".join(n for n in MODELS if not MODELS.get(n).uses_encoder)
        )
    return spec.build(cfg)


def check_input_size(name: str, height: int, width: int | None = None) -> None:
    """Raise a ConfigError if model `name` cannot take an input of this size (e.g. a crop)."""
    spec = MODELS.get(name)
    for side in (height, height if width is None else width):
        if side < spec.min_size or side % spec.multiple:
            raise ConfigError(
                f"model {name!r} needs input sides that are multiples of {spec.multiple} and at "
                f"least {spec.min_size}; got {side}"
            )
