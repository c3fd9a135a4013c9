"""The model card's account of how this bundle was chosen: its threshold and, when the study
ran confirmation runs, the spread of its config over fresh training subsets and the paired
test against the runner-up.
"""

from __future__ import annotations

from typing import Any


def threshold_lines(threshold: dict[str, Any]) -> list[str]:
    """The card's threshold section: which rule chose it and the figures at each threshold."""
    rule, value = threshold["rule"], threshold["value"]
    why = {
        "fixed": "the training config's fixed threshold",
        "official": "the 38-Cloud benchmark's threshold, 12/255",
        "tuned": "the threshold with the best IoU on the validation scenes (chosen on them, so "
                 "its validation figures flatter it)",
    }[rule]
    lines = ["## Threshold",
             f"Cloud where the predicted probability > {value:.6f}: {why}. It is this "
             "bundle's `train.threshold`, so `cloudseg predict` writes masks with it.", ""]
    at = threshold.get("figures") or {}
    if at:
        lines += ["| threshold | IoU | precision | recall |", "| --- | --- | --- | --- |"]
        lines += [f"| {name} | {f['iou']:.4f} | {f['precision']:.4f} | {f['recall']:.4f} |"
                  for name, f in at.items()]
        lines.append("")
    return lines


def confirmation_lines(confirmation: dict[str, Any] | None) -> list[str]:
    """The card's confirmation section: the config's runs and the test against #2."""
    if not confirmation:
        return ["## Confirmation",
                "Not confirmed: this config trained once, on one random training subset; its "
                "value is a single draw (a spec's `confirm: {top, repeats}` retrains the top "
                "configs on fresh subsets).", ""]
    values = ", ".join(f"{v:.4f}" for v in confirmation["values"])
    sd = confirmation["sd"]
    lines = ["## Confirmation",
             f"This config (search trial {confirmation['config_trial']}) ran "
             f"{len(confirmation['values'])} times on fresh training subsets: "
             f"{confirmation['mean']:.4f}" + ("" if sd is None else f" ± {sd:.4f}")
             + f" (values {values}); these weights are its best run. It ranks "
             f"#{confirmation['rank']} by the mean."]
    test = confirmation.get("paired_test")
    if test:
        verdict = ("beats the runner-up" if test["verdict"] == "beats"
                   else "is tied with the runner-up")
        lines.append(f"By a {test['test']}, it {verdict} ({test['reason']}).")
    lines.append("")
    return lines
