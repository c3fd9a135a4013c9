"""What makes a bundle a Hugging Face Hub model repository (sweep.hub_card): for an smp
architecture, `segmentation_models_pytorch.from_pretrained(folder)` reads config.json and
model.safetensors and builds the same network as `cloudseg.load_bundle`; `ModelCard.load`
reads the card's metadata. (The export writes both: tests/test_sweep_run.py checks its card.)"""

from __future__ import annotations

import json

import pytest
import torch

from cloudseg import build_model, bundle_yaml, parse_run_config, save_bundle
from cloudseg.training.checkpoint import load_bundle
from sweep.hub_card import hub_card, smp_config

VALIDATION = {"iou": 0.71234567, "precision": 0.8, "recall": 0.85}


@pytest.fixture(scope="module")
def smp_bundle(tmp_path_factory):
    config = parse_run_config({"model": {"name": "unet", "encoder": "resnet18"}})
    folder = save_bundle(tmp_path_factory.mktemp("hub") / "bundle", build_model(config.model),
                         config)
    (folder / "config.json").write_text(json.dumps(smp_config(config)))
    hub_card("hub-trial-0", config, {"validation": VALIDATION}, "# A card").save(
        folder / "README.md")
    return folder


def test_smp_from_pretrained_loads_the_bundle(smp_bundle):
    import segmentation_models_pytorch as smp

    assert json.loads((smp_bundle / "config.json").read_text()) == {
        "_model_class": "Unet", "encoder_name": "resnet18", "encoder_weights": None,
        "in_channels": 4, "classes": 1}
    theirs = smp.from_pretrained(str(smp_bundle)).eval()
    ours, _ = load_bundle(smp_bundle)
    x = torch.rand(1, 4, 64, 64)
    with torch.no_grad():
        assert torch.equal(theirs(x), ours(x))


def test_the_card_carries_the_hub_metadata(smp_bundle):
    from huggingface_hub import ModelCard

    card = ModelCard.load(smp_bundle / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "segmentation-models-pytorch"
    assert (data["license"], data["pipeline_tag"]) == ("apache-2.0", "image-segmentation")
    assert data["datasets"] == ["38-Cloud"]
    results = data["model-index"][0]["results"][0]
    assert results["dataset"]["split"] == "validation"
    assert {m["name"].split(" ")[0]: m["value"] for m in results["metrics"]} == {
        "IoU": 0.712346, "precision": 0.8, "recall": 0.85}
    assert "Cloud-Net: An End-to-end Cloud Detection" in card.text


def test_a_from_scratch_model_has_no_hub_config_and_no_encoder():
    config = parse_run_config({"model": {"name": "vanilla-unet", "base_width": 8}})
    assert smp_config(config) is None
    assert "encoder" not in bundle_yaml(config)
    assert hub_card("x", config, {}, "# c").data.library_name == "pytorch"


def test_a_confirmed_config_leads_with_its_confirmed_mean():
    config = parse_run_config({"model": {"name": "vanilla-unet", "base_width": 8}})
    metrics = {"metric": "iou", "validation": VALIDATION,
               "confirmation": {"runs": [3, 4], "mean": 0.6543211, "values": [0.6, 0.7]}}
    results = hub_card("x", config, metrics, "# c").data.eval_results
    assert results[0].metric_name == "iou, confirmed: mean of 2 confirmation run(s)"
    assert results[0].metric_value == 0.654321 and results[1].metric_value == 0.712346


def test_a_final_bundle_carries_its_test_figures():
    config = parse_run_config({"model": {"name": "vanilla-unet", "base_width": 8}})
    figures = {"Jaccard": 78.5, "Precision": 91.24, "Recall": 84.86, "Specificity": 98.68,
               "Accuracy": 96.49}
    metrics = {"validation": VALIDATION,
               "test": {"split": "test", "official": {"per_scene_mean_percent": figures}}}
    results = hub_card("x", config, metrics, "# c").data.eval_results
    tested = [r for r in results if r.dataset_split == "test"]
    assert [(r.metric_type, r.metric_value) for r in tested] == [
        ("jaccard", 78.5), ("precision", 91.24), ("recall", 84.86), ("specificity", 98.68),
        ("accuracy", 96.49)]
