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
                "value is a single draw, and the draw that selected it (a spec's `confirm` "
                "races the top configs on fresh runs).", ""]
    values = ", ".join(f"{v:.4f}" for v in confirmation["values"])
    times = f"{len(confirmation['values'])} time" + ("" if len(confirmation["values"]) == 1
                                                     else "s")
    ci = confirmation.get("interval")
    shown = "" if not ci else f" ({ci[0]:.4f} to {ci[1]:.4f}, 95% interval)"
    lines = ["## Confirmation",
             f"This config was proposed by search trial {confirmation['config_trial']} "
             f"({confirmation.get('search_value', float('nan')):.4f}: the draw that selected "
             f"it, so not counted). It then ran {times}, each "
             f"with a fresh training subset, initialisation, crops and flips: mean "
             f"{confirmation['mean']:.4f}{shown} (values {values}). These weights are its best "
             f"run. It ranks #{confirmation['rank']} by that mean."]
    test = confirmation.get("comparison")
    if test:
        verdict = {"beats": "beats the runner-up", "tied": "is tied with the runner-up",
                   "unsettled": "is not yet separated from the runner-up"}[test["verdict"]]
        best = ("" if test.get("prob_best") is None
                else f"; probability that it is the best config: {test['prob_best']:.2f}")
        lines.append(f"By {test['test']}, it {verdict} (trial {test['runner_up']}): "
                     f"{test['reason']}{best}.")
    lines.append("")
    return lines
