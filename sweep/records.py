"""What the dashboard shows a reader, beside the machine-readable user attributes.

optuna-dashboard cuts every user attribute at 1,024 characters, so a study's spec and a trial's
history stored as attributes show as truncated JSON. The workers still read those attributes;
for people the sweep also writes dashboard notes (Markdown, stored in full): the study's spec as
YAML, and per trial its learning curve as a table with the best epoch marked. The study's metric
gets its name (`study.set_metric_names`), so plots no longer say "Objective 0".

Notes are a courtesy: a failure to write one is logged and never costs a trial or a study.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from sweep.study.spec import StudySpec

from sweep.record import DataInfo, TrialRecord

log = logging.getLogger(__name__)

WRITTEN_KEY = "spec_as_written"  # study user attr: the spec's fields the user set
METRIC_LABELS = {"iou": "val IoU", "scene-iou": "val scene IoU (mean over scenes)",
                 "dice": "val Dice"}
# Per-epoch columns of a trial note: (record key, column title).
COLUMNS = (("train_loss", "train loss"), ("val_loss", "val loss"), ("iou", "IoU"),
           ("scene_iou", "scene IoU"), ("dice", "Dice"), ("precision", "precision"),
           ("recall", "recall"), ("seconds", "s"))


def metric_label(metric: str) -> str:
    """How plots and notes name a spec's metric."""
    return METRIC_LABELS.get(metric, f"val {metric}")


def record_study(study: optuna.Study, spec: StudySpec) -> None:
    """Name the study's metric and write its dashboard note: the confirmed ranking (once
    there is one) above the spec.
    """
    import optuna

    try:
        with warnings.catch_warnings():  # set_metric_names is "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([metric_label(spec.metric)])
        # The spec as its file and --set gave it: a worker rebuilding the spec from the stored
        # (resolved, complete) one can no longer tell which fields the user set.
        study.set_user_attr(WRITTEN_KEY, written_spec(spec))
        record_ranking(study, spec)
    except Exception as exc:  # noqa: BLE001 - a note is not worth a failed run
        log.warning("could not write the dashboard note of study %s: %s", study.study_name, exc)


def record_ranking(study: optuna.Study, spec: StudySpec) -> None:
    """Rewrite the study's note with its confirmed ranking on top (after each confirmation
    run, so the study page tells the confirmed story, not the best single run's).
    """
    try:
        written = study.user_attrs.get(WRITTEN_KEY)
        _save_note(study, ranking_section(study, spec) + study_note(spec, written))
    except Exception as exc:  # noqa: BLE001 - a note is not worth a failed run
        log.warning("could not write the ranking note of study %s: %s", study.study_name, exc)


def ranking_section(study: optuna.Study, spec: StudySpec, top: int = 5) -> str:
    """The confirmed ranking as Markdown: the winner marked, each config's confirmed mean and
    interval, its search run apart, and #1 against #2; empty before any confirmation run.
    """
    from sweep.ranking import rank_configs, study_comparison

    configs = [c for c in rank_configs(study) if c.confirmed][:top]
    if not configs:
        return ""
    level = spec.confirm.level if spec.confirm is not None else 0.95
    rows = [f"| rank | config (search trial) | {metric_label(spec.metric)}, confirmed "
            f"[{level:.0%} interval] | runs | search run (selected it: not counted) |",
            "|---|---|---|---|---|"]
    for rank, c in enumerate(configs, 1):
        ci = c.interval(level)
        shown = f"{c.mean:.4f}" + ("" if ci is None else f" [{ci[0]:.4f}, {ci[1]:.4f}]")
        mark = " **(winner)**" if rank == 1 else ""
        rows.append(f"| {rank}{mark} | {c.origin.number} | {shown} | {c.n} | "
                    f"{c.search_value:.4f} |")
    comparison = study_comparison(study, configs)
    verdict = [] if comparison is None else ["", comparison.line() + (
        "" if comparison.prob_best is None
        else f"; P(#1 is the best) = {comparison.prob_best:.2f}") + "."]
    return "\n".join(["## Confirmed ranking", "", *rows, *verdict, "",
                      "Confirmation runs redraw the training subset, initialisation, crops and "
                      "flips; `sweep best` shows the same table.", "", ""])


def written_spec(spec: StudySpec) -> dict[str, Any]:
    """The fields the spec file (and any --set) gave, not every default: what the user wrote."""
    return spec.model_dump(mode="json", exclude_unset=True)


def study_note(spec: StudySpec, written: dict[str, Any] | None = None) -> str:
    """The study's dashboard note: its metric, strategies and budget, then the spec as the user
    wrote it (`written`, else the fields `spec` was given) as YAML.
    """
    import yaml

    text = yaml.safe_dump(written if written is not None else written_spec(spec),
                          sort_keys=False, allow_unicode=True)
    lines = [f"## Study `{spec.name}`"]
    if getattr(spec, "description", None):
        lines += ["", spec.description]
    lines += [
        "",
        f"Each trial is scored by **{metric_label(spec.metric)}** of its best epoch "
        f"({spec.direction}); sampler `{spec.sampler_name}`, pruner `{spec.pruner_name}`, "
        f"{spec.budget.epochs} epochs per trial.",
        "",
        "### Spec",
        "As written (fields left out take their defaults; the study's `spec` attribute holds "
        "the whole resolved spec).",
        "",
        "```yaml",
        text.rstrip(),
        "```",
    ]
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def trial_note(number: int, spec: StudySpec, record: TrialRecord, pruned: bool,
               confirms: tuple[int, int] | None = None) -> str:
    """A trial's learning curve as a Markdown table, best epoch in bold, and its data;
    `confirms` = (search trial, repeat) for a confirmation run.
    """
    history, best = record.history, record.best_epoch
    shown = [(k, t) for k, t in COLUMNS if any(e.value(k) is not None for e in history)]
    head = "| epoch | " + " | ".join(t for _, t in shown) + " |"
    rows = [head, "|---" * (len(shown) + 1) + "|"]
    for e in history:
        cells = [_fmt(e.value(k)) for k, _ in shown]
        mark = e.epoch == best and not pruned
        epoch = f"**{e.epoch}** (best)" if mark else str(e.epoch)
        rows.append(f"| {epoch} | " + " | ".join(f"**{c}**" if mark else c for c in cells) + " |")
    loss = record.config_part("loss")
    loss_text = ", ".join(f"{k} {_fmt(v)}" for k, v in loss.items()
                          if k != "name" and v is not None)
    data = record.data or DataInfo()
    state = f"pruned after epoch {len(history)}" if pruned else f"best epoch {best}"
    role = ("" if confirms is None else
            f" (confirmation run {confirms[1]} of the config of search trial {confirms[0]})")
    lines = [
        f"## Trial {number}{role}: {state}",
        "",
        f"Loss `{loss.get('name')}`" + (f" ({loss_text})" if loss_text else "")
        + f"; {_or_unknown(data.n_train)} training / {_or_unknown(data.n_val)} validation "
        f"patches; {_fmt(record.timings.fit_seconds)} s.",
        "",
        "### Learning curve",
        *rows,
    ]
    if not pruned:
        lines += ["", "The checkpoint, the overlay and the summary metrics are those of the best "
                      "epoch; the curve image is under Artifacts."]
    return "\n".join(lines) + "\n"


def failure_note(number: int, kind: str, message: str, history: int, worst: bool) -> str:
    """A failed trial's note: why (its failure kind and message), how far it got, and where
    its traceback is.
    """
    first, *rest = (message or "no message recorded").strip().splitlines() or [""]
    lines = [f"## Trial {number}: failed ({kind})", "", f"**Why:** {first}"]
    if rest:
        lines += ["", "```", *rest[-20:], "```"]
    lines += ["", f"It ran {history} epoch(s) before failing." if history
              else "It failed before its first epoch ended."]
    if worst:
        lines.append("It is stored as COMPLETE with the worst value, so the sampler learns to "
                     "avoid this region; no ranking or export picks it.")
    lines.append("The full traceback, when there is one, is `traceback.txt` under Artifacts; "
                 "`sweep status` lists failures by kind.")
    return "\n".join(lines) + "\n"


def write_failure_note(trial: optuna.Trial, kind: str, message: str, history: int,
                       worst: bool) -> None:
    """Write `failure_note` as the trial's dashboard note; a failure is only logged."""
    try:
        _save_note(trial, failure_note(trial.number, kind, message, history, worst))
    except Exception as exc:  # noqa: BLE001
        log.warning("could not write the dashboard note of trial %s: %s", trial.number, exc)


def _or_unknown(count: int | None) -> str:
    return "?" if count is None else str(count)


def write_trial_note(
    trial: optuna.Trial, spec: StudySpec, record: TrialRecord, pruned: bool
) -> None:
    """Write `trial_note` as the trial's dashboard note; a failure is only logged."""
    from sweep.record import load

    marks = load(trial, ("confirms", "confirm_repeat"))
    confirms = None if marks.confirms is None else (marks.confirms, marks.confirm_repeat or 0)
    try:
        _save_note(trial, trial_note(trial.number, spec, record, pruned, confirms))
    except Exception as exc:  # noqa: BLE001
        log.warning("could not write the dashboard note of trial %s: %s", trial.number, exc)


def _save_note(study_or_trial: optuna.Study | optuna.Trial, body: str) -> None:
    from optuna_dashboard import save_note

    save_note(study_or_trial, body)
