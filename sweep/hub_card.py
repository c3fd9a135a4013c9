"""What makes an exported bundle a Hugging Face Hub model repository: the card's YAML metadata
(licence, library, pipeline tag, data set, `model-index` with the validation figures and,
for a `sweep finalize` bundle, the test split's), written
with `huggingface_hub`'s `ModelCard`, the 38-Cloud citation, and for smp architectures the
`config.json` that `segmentation_models_pytorch.from_pretrained(folder)` reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from cloudseg import RunConfig

CARD_FILE = "README.md"  # the Hub shows a repository's README.md as its model card
HUB_CONFIG_FILE = "config.json"  # smp's hub mixin: the model class and its init arguments
LICENSE = "apache-2.0"
DATASET = "38-Cloud"
# The card's metadata metrics: (metrics.json validation key, Hub metric id, pretty name).
EVAL_METRICS = (
    ("scene_iou", "iou", "scene IoU (mean over validation scenes)"),
    ("iou", "iou", "IoU (validation pixels pooled)"),
    ("precision", "precision", "precision (validation)"),
    ("recall", "recall", "recall (validation)"),
)

CITATION = """\
## Citation

The data set is 38-Cloud (Landsat 8 scenes cut into 384 × 384 patches, with manual cloud masks).
If you use this model, cite the data set's papers:

```bibtex
@inproceedings{mohajerani2019cloudnet,
  author    = {Mohajerani, Sorour and Saeedi, Parvaneh},
  title     = {Cloud-Net: An End-to-end Cloud Detection Algorithm for Landsat 8 Imagery},
  booktitle = {IGARSS 2019 - 2019 IEEE International Geoscience and Remote Sensing Symposium},
  pages     = {1029--1032},
  year      = {2019},
  doi       = {10.1109/IGARSS.2019.8898776}
}

@inproceedings{mohajerani2018cloud,
  author    = {Mohajerani, Sorour and Krammer, Thomas A. and Saeedi, Parvaneh},
  title     = {A Cloud Detection Algorithm for Remote Sensing Images Using Fully Convolutional
               Neural Networks},
  booktitle = {2018 IEEE 20th International Workshop on Multimedia Signal Processing (MMSP)},
  pages     = {1--5},
  year      = {2018},
  doi       = {10.1109/MMSP.2018.8547095}
}
```
"""


def smp_config(config: RunConfig) -> dict[str, Any] | None:
    """config.json for `smp.from_pretrained`: the smp class and the arguments that build this
    network (never pretrained encoder weights); None for the from-scratch U-Nets.
    """
    from cloudseg import smp_class_name

    class_name = smp_class_name(config.model.name)
    if class_name is None:
        return None
    from cloudseg import CLASSES, IN_CHANNELS

    return {"_model_class": class_name, "encoder_name": config.model.encoder,
            "encoder_weights": None, "in_channels": IN_CHANNELS, "classes": CLASSES}


def hub_card(name: str, config: RunConfig, metrics: dict[str, Any], body: str) -> ModelCard:
    """The bundle's README.md: the Hub's metadata on top of `body` (the model card's text)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    val = metrics.get("validation") or {}
    results = confirmed_result(metrics) + test_results(metrics)
    results += [
        EvalResult(task_type="image-segmentation", task_name="cloud segmentation",
                   dataset_type=DATASET, dataset_name=f"{DATASET} (validation scenes)",
                   dataset_split="validation", metric_type=metric, metric_name=label,
                   metric_value=round(float(val[key]), 6))
        for key, metric, label in EVAL_METRICS if isinstance(val.get(key), int | float)
    ]
    smp = smp_config(config) is not None
    data = ModelCardData(
        license=LICENSE,
        library_name="segmentation-models-pytorch" if smp else "pytorch",
        pipeline_tag="image-segmentation",
        datasets=[DATASET],
        tags=["cloud-detection", "remote-sensing", "landsat-8", "cloudsweep",
              *(["segmentation-models-pytorch"] if smp else [])],
        metrics=sorted({metric for _, metric, _ in EVAL_METRICS}),
        model_name=name,
        eval_results=results or None,
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body.rstrip()}\n\n{CITATION}")


def confirmed_result(metrics: dict[str, Any]) -> list[Any]:
    """The confirmed score as the card's first result, when the study confirmed this config:
    the mean of its confirmation runs (the figure the selection rests on), not the best run's.
    """
    from huggingface_hub import EvalResult

    confirmation = metrics.get("confirmation") or {}
    if not confirmation.get("runs") or not isinstance(confirmation.get("mean"), int | float):
        return []
    metric = str(metrics.get("metric", "iou"))
    n = len(confirmation["runs"])
    return [EvalResult(
        task_type="image-segmentation", task_name="cloud segmentation", dataset_type=DATASET,
        dataset_name=f"{DATASET} (validation scenes)", dataset_split="validation",
        metric_type="iou" if metric in ("iou", "scene-iou") else metric,
        metric_name=f"{metric}, confirmed: mean of {n} confirmation run(s)",
        metric_value=round(float(confirmation["mean"]), 6),
    )]


def test_results(metrics: dict[str, Any]) -> list[Any]:
    """The test split's 38-Cloud figures (a `sweep finalize` bundle): per-scene means at 12/255,
    the protocol papers report, in percent as the card's table shows them.
    """
    from huggingface_hub import EvalResult

    test = metrics.get("test") or {}
    figures = (test.get("official") or {}).get("per_scene_mean_percent") or {}
    return [
        EvalResult(task_type="image-segmentation", task_name="cloud segmentation",
                   dataset_type=DATASET, dataset_name=f"{DATASET} (test scenes)",
                   dataset_split=str(test.get("split", "test")), metric_type=metric,
                   metric_name=f"{key} % (38-Cloud protocol, 12/255, per-scene mean)",
                   metric_value=round(float(figures[key]), 4))
        for key, metric in (("Jaccard", "jaccard"), ("Precision", "precision"),
                            ("Recall", "recall"), ("Specificity", "specificity"),
                            ("Accuracy", "accuracy"))
        if isinstance(figures.get(key), int | float)
    ]


def load_lines(config: RunConfig) -> list[str]:
    """The card's "Load" section: cloudseg always; smp.from_pretrained for smp models."""
    lines = ["## Load", "```python", "import cloudseg", "",
             "model, config = cloudseg.load_bundle(\"<this folder>\")  # eval mode, checked",
             "```", "`cloudseg.load_bundle` refuses a folder whose config.yaml, "
             "model.safetensors and metrics.json do not belong together."]
    if smp_config(config) is not None:
        lines += ["", "Or with segmentation-models-pytorch alone (its hub mixin reads "
                  "config.json and model.safetensors):", "```python",
                  "import segmentation_models_pytorch as smp", "",
                  "model = smp.from_pretrained(\"<this folder or Hub repo>\").eval()",
                  "```"]
    lines += ["Inputs are (B, 4, H, W) float tensors, normalised as the input contract says; "
              "the output is one logit per pixel.", ""]
    return lines
