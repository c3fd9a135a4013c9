"""LOSSES: loss name → factory of `loss(logits (B,1,H,W), target (B,1,H,W) {0,1}) -> scalar`.

Built on smp.losses. Each entry declares which LossConfig fields it uses and their defaults;
a config that sets a field its loss ignores is an error, so a config always says what ran.
torch and smp's losses load only when a loss is built, so the sweep can read LOSS_PARAMS
cheaply; they load without the rest of smp (cloudseg.smp_loss_classes).

Region losses (dice, jaccard, tversky, focal-tversky) are computed over the whole batch, as smp
does; a batch with no cloud pixel at all contributes 0 to them (smp's convention: the overlap
is undefined there), so on clear-sky-heavy data pair them with a pixel loss (mixed-focal).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cloudseg.config import LossConfig
from cloudseg.errors import ConfigError
from cloudseg.registry import Registry
from cloudseg.smp_loss_classes import smp_losses

if TYPE_CHECKING:
    from torch import nn

PARAM_FIELDS = ("pos_weight", "gamma", "alpha", "beta", "focal_weight", "dice_weight")


def _no_rules(p: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class LossSpec:
    """A factory over resolved parameters, the LossConfig fields it reads and their defaults,
    and its value rules (`check`, torch-free, so a sweep can check a spec before any trial).
    """

    build: Callable[[dict[str, Any], float | None], nn.Module]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    check: Callable[[dict[str, Any]], None] = _no_rules

    @property
    def params(self) -> frozenset[str]:
        """The LossConfig fields this loss reads."""
        return frozenset(self.defaults)


LOSSES: Registry[LossSpec] = Registry("loss")


def _check(p: dict[str, Any], key: str, ok: Callable[[float], bool], rule: str) -> None:
    """`p` holds the resolved parameters and the loss `name`; None means "not used here"."""
    v = p.get(key)
    if v is None:
        return
    if isinstance(v, bool) or not (isinstance(v, int | float) and math.isfinite(v) and ok(v)):
        raise ConfigError(f"loss {p['name']!r}: loss.{key} must be {rule}, got {v!r}")


def _focal_rules(p: dict[str, Any]) -> None:
    _check(p, "gamma", lambda v: v >= 0, ">= 0")
    _check(p, "alpha", lambda v: 0 <= v <= 1, "in [0, 1] or null")


def _focal(p: dict[str, Any], auto: float | None = None) -> nn.Module:
    return smp_losses().FocalLoss("binary", alpha=p["alpha"], gamma=p["gamma"])


def _tversky_rules(p: dict[str, Any]) -> None:
    _check(p, "alpha", lambda v: v >= 0, ">= 0")
    _check(p, "beta", lambda v: v >= 0, ">= 0")
    _check(p, "gamma", lambda v: v > 0, "> 0")
    if p["alpha"] + p["beta"] <= 0:
        raise ConfigError(
            f"loss {p['name']!r}: loss.alpha + loss.beta must be > 0, "
            f"got {p['alpha']!r} + {p['beta']!r}"
        )


def _tversky(p: dict[str, Any], auto: float | None = None) -> nn.Module:
    # smp returns mean_over_classes(1 - TI) ** gamma; with one class that is (1 - TI) ** gamma,
    # the focal Tversky loss; gamma = 1 is the plain Tversky loss.
    return smp_losses().TverskyLoss(
        "binary", alpha=p["alpha"], beta=p["beta"], gamma=p.get("gamma", 1.0)
    )


def _bce(p: dict[str, Any], auto: float | None) -> nn.Module:
    return smp_losses().SoftBCEWithLogitsLoss()


def _weighted_bce_rules(p: dict[str, Any]) -> None:
    if p.get("pos_weight") != "auto":
        _check(p, "pos_weight", lambda v: v > 0, "> 0 or 'auto'")


def _weighted_bce(p: dict[str, Any], auto: float | None) -> nn.Module:
    import torch

    w = p["pos_weight"]
    if w is None:  # no default: whoever runs the config must see which weighting was used
        raise ConfigError(
            "loss 'weighted-bce' needs loss.pos_weight: a number > 0 or 'auto' (the training "
            "subset's background/cloud pixel ratio)"
        )
    if w == "auto":
        if auto is None:
            raise ConfigError(
                "loss 'weighted-bce': loss.pos_weight='auto' needs the training subset's "
                "background/cloud ratio, and none was given"
            )
        w = auto
    _check({**p, "pos_weight": w}, "pos_weight", lambda v: v > 0, "> 0 or 'auto'")
    # A cloud pixel's BCE term is scaled by pos_weight: missing cloud costs w× a false alarm.
    return smp_losses().SoftBCEWithLogitsLoss(pos_weight=torch.tensor(float(w)))


def _smp(class_name: str) -> Callable[[dict[str, Any], float | None], nn.Module]:
    def build(p: dict[str, Any], auto: float | None) -> nn.Module:
        return getattr(smp_losses(), class_name)("binary")

    return build


def _mixed_focal_rules(p: dict[str, Any]) -> None:
    for key in ("focal_weight", "dice_weight"):
        _check(p, key, lambda v: v >= 0, ">= 0")
    if p["focal_weight"] + p["dice_weight"] <= 0:
        raise ConfigError(
            "loss 'mixed-focal': loss.focal_weight and loss.dice_weight must not both be 0"
        )
    _focal_rules(p)


def _mixed_focal(p: dict[str, Any], auto: float | None) -> nn.Module:
    from cloudseg.loss_modules import WeightedSum

    focal = _focal(p)
    return WeightedSum(
        {"focal": (p["focal_weight"], focal),
         "dice": (p["dice_weight"], smp_losses().DiceLoss("binary"))}
    )


def loss_params(name: str) -> frozenset[str]:
    """The LossConfig fields loss `name` reads (the sweep uses this for conditional params)."""
    return LOSSES.get(name).params


def loss_defaults(name: str) -> dict[str, Any]:
    """The value each field of loss `name` takes when the config leaves it unset (None: no
    class weight for focal alpha; a required field for weighted-bce's pos_weight).
    """
    return dict(LOSSES.get(name).defaults)


def resolve_loss_params(cfg: LossConfig) -> dict[str, Any]:
    """`cfg`'s parameters with defaults filled in; a field the loss does not use is an error."""
    spec = LOSSES.get(cfg.name)
    for key in PARAM_FIELDS:
        value = getattr(cfg, key)
        if value is not None and key not in spec.params:
            uses = ", ".join(f"loss.{k}" for k in sorted(spec.params)) or "no parameters"
            raise ConfigError(
                f"loss {cfg.name!r} does not use loss.{key} (got {value!r}); it uses {uses}"
            )
    resolved = {k: getattr(cfg, k) for k in spec.params}
    resolved = {k: spec.defaults[k] if v is None else v for k, v in resolved.items()}
    return resolved


def check_loss_config(cfg: LossConfig) -> None:
    """Every value rule `build_loss` applies, without torch: ConfigError naming loss and field."""
    LOSSES.get(cfg.name).check({**resolve_loss_params(cfg), "name": cfg.name})


def build_loss(cfg: LossConfig, pos_weight_auto: float | None = None) -> nn.Module:
    """The loss module for `cfg`; `pos_weight_auto` is the background/cloud pixel ratio of the
    training subset, used when weighted-bce has pos_weight "auto".
    """
    check_loss_config(cfg)
    spec = LOSSES.get(cfg.name)
    params = {**resolve_loss_params(cfg), "name": cfg.name}
    return spec.build(params, pos_weight_auto)


# Defaults: focal γ = 2 (Lin et al. 2017) with no class weight; Tversky α = 0.3 (FP), β = 0.7
# (FN), which favours recall (Salehi et al. 2017); focal Tversky exponent 0.75 (= 1/γ with
# γ = 4/3 in Abraham & Khan 2019); mixed focal 0.5·focal + 0.5·dice.
LOSSES.add("bce", LossSpec(_bce))
LOSSES.add(  # pos_weight is required
    "weighted-bce", LossSpec(_weighted_bce, {"pos_weight": None}, _weighted_bce_rules)
)
LOSSES.add("focal", LossSpec(_focal, {"gamma": 2.0, "alpha": None}, _focal_rules))
LOSSES.add("tversky", LossSpec(_tversky, {"alpha": 0.3, "beta": 0.7}, _tversky_rules))
LOSSES.add(
    "focal-tversky",
    LossSpec(_tversky, {"alpha": 0.3, "beta": 0.7, "gamma": 0.75}, _tversky_rules),
)
LOSSES.add("dice", LossSpec(_smp("DiceLoss")))
LOSSES.add("jaccard", LossSpec(_smp("JaccardLoss")))
LOSSES.add("lovasz", LossSpec(_smp("LovaszLoss")))
LOSSES.add(
    "mixed-focal",
    LossSpec(
        _mixed_focal,
        {"gamma": 2.0, "alpha": None, "focal_weight": 0.5, "dice_weight": 0.5},
        _mixed_focal_rules,
    ),
)

LOSS_PARAMS: dict[str, frozenset[str]] = {name: LOSSES.get(name).params for name in LOSSES}
