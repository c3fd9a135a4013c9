"""LOSSES contract: every loss is a finite, differentiable scalar; each one computes what its
name promises (checked against the formula or a sibling loss); configs are validated."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from cloudseg.config import LossConfig
from cloudseg.errors import ConfigError
from cloudseg.losses import LOSS_PARAMS, LOSSES, build_loss, loss_defaults, loss_params

AUTO = 3.0  # stands in for the training subset's background/cloud ratio


@pytest.fixture()
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 16, 16, generator=g)
    target = (torch.rand(2, 1, 16, 16, generator=g) > 0.6).float()
    return logits, target


def build(name: str, **params) -> torch.nn.Module:
    if name == "weighted-bce":
        params.setdefault("pos_weight", "auto")
    return build_loss(LossConfig(name=name, **params), pos_weight_auto=AUTO)


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_is_a_finite_differentiable_scalar(name, batch):
    logits, target = batch
    logits.requires_grad_(True)
    value = build(name)(logits, target)
    assert value.shape == () and torch.isfinite(value) and value > 0
    value.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_is_near_zero_when_perfect_and_large_when_inverted(name, batch):
    _, target = batch
    confident = (2 * target - 1) * 30.0  # large-magnitude logits of the right sign
    loss = build(name)
    assert loss(confident, target).item() == pytest.approx(0.0, abs=1e-4)
    assert loss(-confident, target).item() > 0.5


@pytest.mark.parametrize("name", ["dice", "jaccard", "tversky", "focal-tversky"])
def test_region_losses_give_nothing_on_a_cloud_free_batch(name):
    # smp's convention, documented in cloudseg.losses: no cloud → no overlap term at all.
    logits = torch.full((2, 1, 8, 8), 3.0)  # confident false alarms everywhere
    assert build(name)(logits, torch.zeros_like(logits)).item() == 0.0
    assert build("mixed-focal")(logits, torch.zeros_like(logits)).item() > 1.0


def test_bce_is_binary_cross_entropy_on_logits(batch):
    logits, target = batch
    expected = F.binary_cross_entropy_with_logits(logits, target)
    assert torch.allclose(build("bce")(logits, target), expected)


@pytest.mark.parametrize("pos_weight", [2.5, "auto"])
def test_weighted_bce_charges_a_missed_cloud_pos_weight_times_a_false_alarm(pos_weight):
    loss = build("weighted-bce", pos_weight=pos_weight)
    logit = torch.full((1, 1, 1, 1), 2.0)
    missed_cloud = loss(-logit, torch.ones_like(logit))  # cloud predicted clear
    false_alarm = loss(logit, torch.zeros_like(logit))  # clear predicted cloud, same confidence
    expected = AUTO if pos_weight == "auto" else pos_weight
    assert (missed_cloud / false_alarm).item() == pytest.approx(expected, rel=1e-5)


def test_weighted_bce_needs_an_explicit_pos_weight_and_auto_needs_a_value():
    with pytest.raises(ConfigError, match=r"'weighted-bce' needs loss\.pos_weight"):
        build_loss(LossConfig(name="weighted-bce"), pos_weight_auto=AUTO)
    with pytest.raises(ConfigError, match=r"loss\.pos_weight='auto'.*none was given"):
        build_loss(LossConfig(name="weighted-bce", pos_weight="auto"))


def test_focal_with_gamma_zero_and_no_alpha_is_bce(batch):
    logits, target = batch
    focal = build("focal", gamma=0.0)
    assert torch.allclose(focal(logits, target), build("bce")(logits, target), atol=1e-6)


def test_focal_down_weights_easy_pixels(batch):
    logits, target = batch
    assert build("focal", gamma=2.0)(logits, target) < build("bce")(logits, target)


def test_focal_alpha_weights_cloud_against_clear():
    logit = torch.zeros(1, 1, 1, 1)  # p = 0.5 on both pixels: same unweighted focal term
    focal = build("focal", gamma=2.0, alpha=0.8)
    cloud, clear = focal(logit, torch.ones_like(logit)), focal(logit, torch.zeros_like(logit))
    assert (cloud / clear).item() == pytest.approx(0.8 / 0.2, rel=1e-5)


def soft_tversky_loss(logits, target, alpha, beta):
    """1 - TP / (TP + alpha·FP + beta·FN) on probabilities, over the whole batch."""
    p = torch.sigmoid(logits)
    tp, fp, fn = (p * target).sum(), (p * (1 - target)).sum(), ((1 - p) * target).sum()
    return 1 - tp / (tp + alpha * fp + beta * fn)


def test_tversky_is_one_minus_the_tversky_index(batch):
    logits, target = batch
    value = build("tversky", alpha=0.2, beta=0.8)(logits, target)
    assert value.item() == pytest.approx(soft_tversky_loss(logits, target, 0.2, 0.8).item(), 1e-5)


def test_tversky_with_equal_weights_is_dice(batch):
    logits, target = batch
    tversky = build("tversky", alpha=0.5, beta=0.5)(logits, target)
    assert tversky.item() == pytest.approx(build("dice")(logits, target).item(), rel=1e-5)


def test_focal_tversky_with_gamma_one_is_tversky(batch):
    logits, target = batch
    focal_tversky = build("focal-tversky", alpha=0.3, beta=0.7, gamma=1.0)(logits, target)
    tversky = build("tversky", alpha=0.3, beta=0.7)(logits, target)
    assert focal_tversky.item() == pytest.approx(tversky.item(), rel=1e-6)


def test_focal_tversky_raises_the_tversky_loss_to_gamma(batch):
    logits, target = batch
    focal_tversky = build("focal-tversky", alpha=0.3, beta=0.7, gamma=0.75)(logits, target)
    expected = soft_tversky_loss(logits, target, 0.3, 0.7) ** 0.75
    assert focal_tversky.item() == pytest.approx(expected.item(), rel=1e-5)


def test_jaccard_is_one_minus_soft_iou(batch):
    logits, target = batch
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    expected = 1 - inter / (p.sum() + target.sum() - inter)
    assert build("jaccard")(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)


def test_mixed_focal_is_the_weighted_sum_of_focal_and_dice(batch):
    logits, target = batch
    mixed = build("mixed-focal", focal_weight=0.3, dice_weight=1.7, gamma=1.5, alpha=0.6)
    focal = build("focal", gamma=1.5, alpha=0.6)(logits, target)
    dice = build("dice")(logits, target)
    assert mixed(logits, target).item() == pytest.approx((0.3 * focal + 1.7 * dice).item(), 1e-6)


def test_mixed_focal_defaults_to_equal_halves(batch):
    logits, target = batch
    expected = 0.5 * build("focal")(logits, target) + 0.5 * build("dice")(logits, target)
    assert build("mixed-focal")(logits, target).item() == pytest.approx(expected.item(), 1e-6)


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("dice", "gamma", 2.0),
        ("bce", "pos_weight", 2.0),
        ("focal", "beta", 0.5),
        ("tversky", "gamma", 1.5),
        ("lovasz", "alpha", 0.5),
        ("weighted-bce", "dice_weight", 1.0),
    ],
)
def test_a_field_the_loss_does_not_use_is_rejected(name, field, value):
    with pytest.raises(
        ConfigError, match=rf"loss '{name}' does not use loss\.{field} \(got {value}\)"
    ):
        build(name, **{field: value})


@pytest.mark.parametrize(
    ("name", "params", "field", "shown"),
    [
        ("focal", {"gamma": -1.0}, "gamma", "-1.0"),
        ("focal", {"alpha": 1.5}, "alpha", "1.5"),
        ("focal", {"gamma": float("nan")}, "gamma", "nan"),
        ("tversky", {"alpha": -0.1}, "alpha", "-0.1"),
        ("tversky", {"alpha": 0.0, "beta": 0.0}, "alpha", "0.0"),
        ("focal-tversky", {"gamma": 0.0}, "gamma", "0.0"),
        ("weighted-bce", {"pos_weight": 0.0}, "pos_weight", "0.0"),
        ("weighted-bce", {"pos_weight": -2.0}, "pos_weight", "-2.0"),
        ("mixed-focal", {"focal_weight": -1.0}, "focal_weight", "-1.0"),
        ("mixed-focal", {"focal_weight": 0.0, "dice_weight": 0.0}, "dice_weight", ""),
        ("mixed-focal", {"alpha": 2.0}, "alpha", "2.0"),
    ],
)
def test_invalid_values_name_the_field_and_value(name, params, field, shown):
    with pytest.raises(ConfigError, match=rf"loss '{name}'.*loss\.{field}.*{shown}"):
        build(name, **params)


def test_weighted_bce_rejects_a_non_positive_auto_ratio():
    with pytest.raises(ConfigError, match=r"loss\.pos_weight must be > 0.*got 0\.0"):
        build_loss(LossConfig(name="weighted-bce", pos_weight="auto"), pos_weight_auto=0.0)


def test_unknown_loss_names_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown loss 'hinge'.*focal-tversky.*mixed-focal"):
        build_loss(LossConfig(name="hinge"))


def test_declared_params_are_loss_config_fields_with_defaults():
    assert set(LOSS_PARAMS) == set(LOSSES.names())
    for name, params in LOSS_PARAMS.items():
        assert params == loss_params(name) == set(loss_defaults(name))
        assert params <= set(LossConfig.model_fields) - {"name"}
    assert LOSS_PARAMS["focal-tversky"] == {"alpha", "beta", "gamma"}
    assert LOSS_PARAMS["dice"] == frozenset()


def test_registries_load_without_torch():
    # The sweep reads LOSS_PARAMS and MODELS names while building its search space and its
    # `--help`; neither may pull in torch.
    code = (
        "import sys, cloudseg.losses as l, cloudseg.models as m; "
        "assert l.LOSS_PARAMS and m.MODELS.names(); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_losses_build_without_smp_encoders_and_equal_smp_own_classes(batch):
    """A from-scratch model's trial never imports smp's encoder zoo (timm, torchvision: two
    seconds of every sweep's start); the loss classes it gets are smp's, value for value.
    """
    code = (
        "import json, sys, torch\n"
        "from cloudseg.config import LossConfig\n"
        "from cloudseg.losses import LOSSES, build_loss\n"
        "g = torch.Generator().manual_seed(0)\n"  # the `batch` fixture's tensors
        "logits = torch.randn(2, 1, 16, 16, generator=g)\n"
        "target = (torch.rand(2, 1, 16, 16, generator=g) > 0.6).float()\n"
        "values = {}\n"
        "for name in LOSSES.names():\n"
        "    p = {'pos_weight': 3.0} if name == 'weighted-bce' else {}\n"
        "    values[name] = build_loss(LossConfig(name=name, **p))(logits, target).item()\n"
        "heavy = [m for m in ('segmentation_models_pytorch', 'timm', 'torchvision') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print(json.dumps(values))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    values = json.loads(out)

    import segmentation_models_pytorch.losses as smp_losses

    logits, target = batch
    reference = {  # smp's own classes, imported the ordinary way
        "bce": smp_losses.SoftBCEWithLogitsLoss(),
        "weighted-bce": smp_losses.SoftBCEWithLogitsLoss(pos_weight=torch.tensor(AUTO)),
        "focal": smp_losses.FocalLoss("binary", gamma=2.0),
        "tversky": smp_losses.TverskyLoss("binary", alpha=0.3, beta=0.7),
        "focal-tversky": smp_losses.TverskyLoss("binary", alpha=0.3, beta=0.7, gamma=0.75),
        "dice": smp_losses.DiceLoss("binary"),
        "jaccard": smp_losses.JaccardLoss("binary"),
        "lovasz": smp_losses.LovaszLoss("binary"),
    }
    for name, loss in reference.items():
        assert values[name] == pytest.approx(loss(logits, target).item(), rel=1e-6), name
