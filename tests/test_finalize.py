"""`sweep finalize`: an interrupted final fit is queued again and finished by the next call,
final fits never join the search study, and the report's per-scene figures are `cloudseg
evaluate`'s on the same predictions, beside Cloud-Net's (the synthetic test scenes carry the
real 38-Cloud test scene ids)."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from cloudseg import cloudnet_scene_ids, write_synthetic
from cloudseg.cli import main as cloudseg_main
from cloudseg.scenes.evaluate import read_scene_table

LR = {"optim.lr": optuna.distributions.FloatDistribution(0.001, 0.01, log=True)}


@pytest.fixture(scope="module")
def real_id_root(tmp_path_factory):
    """4 training scenes and 2 test scenes named like the first two real 38-Cloud test scenes."""
    return write_synthetic(tmp_path_factory.mktemp("data") / "real-ids", 4, 2, (600, 700), 0,
                           test_ids=cloudnet_scene_ids())


def test_interrupted_final_fit_resumes_and_the_report_is_cloudseg_evaluate(tmp_path, capsys,
                                                                            real_id_root):
    from sweep.api import ranked_configs
    from sweep.execution.runner import create_study, prepare
    from sweep.final.finalize import finalize
    from sweep.final.queue import enqueue_final_fits, final_of, open_final_study
    from sweep.record import FailureKind, TrialRecord, save
    from sweep.study.spec import parse_spec
    from tests.sweep_helpers import tiny_spec_dict, trial_threads

    spec = parse_spec(tiny_spec_dict(name="fin", pruner={"name": "none"},
                                     space={"optim.lr": {"type": "float", "low": 0.001,
                                                         "high": 0.01, "log": True}}),
                      "fin.yaml")
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    root = prepare(spec, 1, url, real_id_root)
    study = create_study(spec, 1, url, root)
    study.add_trial(optuna.trial.create_trial(params={"optim.lr": 0.005}, distributions=LR,
                                              value=0.5))
    # a final fit stopped by Ctrl-C: FAILED "interrupted", as the objective leaves it
    final = open_final_study(study, url, 1)
    assert enqueue_final_fits(final, ranked_configs("fin", storage=url)[0]) == 1
    stopped = final.ask()
    save(stopped, TrialRecord(failure=FailureKind.INTERRUPTED, failure_message="Ctrl-C"))
    final.tell(stopped, state=TrialState.FAIL)

    with trial_threads(1):
        result = finalize("fin", storage=url, top=1, data=root, out=tmp_path / "out",
                          device="cpu")
    fits = final.get_trials(deepcopy=False)
    assert [(t.state, final_of(t)) for t in fits] == [(TrialState.FAIL, 0),
                                                      (TrialState.COMPLETE, 0)]
    assert len(study.get_trials(deepcopy=False)) == 1  # nothing joined the search study
    assert fits[1].params == {"optim.lr": 0.005}
    assert fits[1].user_attrs["config"]["data"]["train_fraction"] == 1.0

    # the report's per-scene figures are cloudseg evaluate's on the same predictions
    score = result.scores[0]
    csv = tmp_path / "eval.csv"
    assert cloudseg_main(["evaluate", str(score.predictions), str(root / "38-Cloud_test"),
                          "--csv", str(csv), "--compare", "cloudnet"]) == 0
    out = capsys.readouterr().out
    evaluated = dict(read_scene_table(csv))
    summary = json.loads((result.out / "final.json").read_text())
    reported = summary["fits"][0]["official"]["per_scene_percent"]
    assert sorted(reported) == sorted(evaluated) == cloudnet_scene_ids()[:2]
    for scene, row in evaluated.items():
        assert reported[scene]["Jaccard"] == pytest.approx(100 * row["iou"], abs=1e-4)
        assert reported[scene]["Precision"] == pytest.approx(100 * row["precision"], abs=1e-4)
    page = result.report_html.read_text()
    for scene, row in reported.items():  # the page and evaluate's tables show the same
        assert f"<td>{scene}</td><td>{row['Jaccard']:.2f}</td>" in page
        assert f"{row['Jaccard']:.2f}" in out
    assert page.count("data:image/png;base64,") == 3  # bars + 2 worst scenes, inline
    assert "Cloud-Net J" in page

    bundle = score.bundle
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert metrics["test"]["official"]["per_scene_percent"] == reported
    assert metrics["test"]["cloudnet"]["shared_scenes"] == 2
    card = (bundle / "README.md").read_text()
    assert "## Final fit and test set" in card and "held out of the final fit" in card
    recorded = optuna.load_study(study_name="fin.final", storage=url)  # the answer is stored
    assert recorded.user_attrs["test_summary"][0]["test_jaccard_per_scene_mean"] == (
        pytest.approx(summary["fits"][0]["official"]["per_scene_mean_percent"]["Jaccard"]))
    from optuna.artifacts import get_all_artifact_meta

    assert [m.filename for m in get_all_artifact_meta(recorded)] == ["report.html"]


def test_only_queued_final_fits_train_and_final_studies_are_never_the_latest(tmp_path):
    """A trial the sampler proposes in a final-fit study, or a second copy of a queued fit,
    ends before the objective runs; `latest_study` (commands without --study) skips it."""
    from sweep.final.queue import FINAL_OF
    from sweep.final.run import FinalFitObjective, NotQueued
    from sweep.status import latest_study
    from sweep.storage import open_storage

    url = f"sqlite:///{tmp_path / 's.db'}"
    search = optuna.create_study(study_name="s", storage=open_storage(url))
    search.set_user_attr("last_run", "2026-01-01T00:00:00")
    final = optuna.create_study(study_name="s.final", storage=open_storage(url))
    final.set_user_attr("final_of_study", "s")
    final.set_user_attr("last_run", "2027-01-01T00:00:00")
    for _ in range(2):  # two workers queued the same fit at once
        final.enqueue_trial({"x": 0.5}, user_attrs={FINAL_OF: 0})
    ran = []
    objective = FinalFitObjective(lambda t: ran.append(t.number) or t.suggest_float("x", 0, 1))
    final.optimize(objective, n_trials=3, catch=(NotQueued,))
    assert ran == [0]  # the first copy trained; the copy and the sampler's proposal did not
    assert [t.state for t in final.trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                               TrialState.FAIL]
    assert [t.user_attrs.get("failure") for t in final.trials] == [None, "duplicate", "surplus"]
    assert latest_study(open_storage(url)) == "s"
