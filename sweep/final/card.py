"""The model card's final-fit section: how the final model was trained and chosen without the
test set, and its test-set figures under the 38-Cloud protocol (beside Cloud-Net's when the
scene ids match).
"""

from __future__ import annotations

from typing import Any


def test_lines(test: dict[str, Any] | None) -> list[str]:
    """The card's "Final fit and test set" section; nothing for a bundle without test figures."""
    if not test:
        return []
    fit = test["final_fit"]
    official, at_bundle = test["official"], test["bundle_threshold"]
    lines = [
        "## Final fit and test set",
        f"A final fit of search trial {fit['search_trial']} (rank {fit['search_rank']} in the "
        f"search, value {fit['search_value']:.4f}) on every training scene's patches: "
        f"{test['chosen_without_test']}.",
        "",
        f"38-Cloud protocol on `{test['split']}` ({test['n_scenes']} scenes, "
        f"{official['scored']}), percent:",
        "",
        "| threshold | summary | Jaccard | precision | recall | specificity | accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, rep in (("12/255", official), (f"{at_bundle['threshold']:.6f} (bundle)",
                                              at_bundle)):
        for summary, key in (("per-scene mean", "per_scene_mean_percent"),
                             ("pooled (not comparable with papers)", "pooled_percent")):
            f = rep[key]
            lines.append(f"| {label} | {summary} | {f['Jaccard']:.2f} | {f['Precision']:.2f} | "
                         f"{f['Recall']:.2f} | {f['Specificity']:.2f} | {f['Accuracy']:.2f} |")
    lines.append("")
    if (ref := test.get("cloudnet")) is not None:
        lines += [f"Beside {ref['source']} on the {ref['shared_scenes']} test scenes both have "
                  f"(12/255, per-scene mean Jaccard): ours {ref['ours_jaccard_percent']:.2f}, "
                  f"Cloud-Net {ref['cloudnet_jaccard_percent']:.2f}.", ""]
    return lines
