"""The hard-case panel end to end: a study fixes it at creation, every complete trial keeps its
predictions on exactly those patches, and `sweep compare` draws them as one grid (rows: panel
patches, columns: configs) attached to the study."""

from __future__ import annotations

import io

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore
from PIL import Image
from typer.testing import CliRunner

from sweep.cli import app
from sweep.execution.runner import run_study
from sweep.mirror.media import MASKS_KEY, load_overlay_masks, read_artifact
from sweep.study.spec import parse_spec
from tests.sweep_helpers import tiny_spec_dict, trial_threads


def assert_prediction_column(overlay: np.ndarray, drawn: list[dict]) -> None:
    """The overlay's third column (cells of every second pixel of a 384 px patch, rows as far
    apart as the columns, the last at the bottom) shows each patch's stored prediction against
    its truth: TP white, FP red, FN blue, TN black (no-data grey, as the false colour is).
    """
    colours = {(1, 1): (255, 255, 255), (1, 0): (230, 26, 26), (0, 1): (26, 102, 255),
               (0, 0): (0, 0, 0)}
    size, rows = 192, len(drawn)
    gap = (overlay.shape[1] - 3 * size) // 2  # three columns, two gaps between them
    pitch = size + gap
    for r, patch in enumerate(drawn):
        top = overlay.shape[0] - (rows - 1 - r) * pitch - size
        cell = overlay[top:top + size, -size:]
        image, pred, truth = (patch[k][::2, ::2] for k in ("image", "prediction",
                                                            "ground_truth"))
        nodata = (image == 128).all(axis=-1)
        expected = np.zeros((size, size, 3), np.uint8)
        for (p, g), rgb in colours.items():
            expected[(pred == p) & (truth == g)] = rgb
        assert (cell[~nodata] == expected[~nodata]).all()


def test_every_trial_draws_the_study_panel_and_compare_grids_them(tmp_path, synthetic_root):
    spec = parse_spec(tiny_spec_dict(
        name="panel", pruner={"name": "none"},
        space={"optim.lr": {"type": "float", "low": 0.003, "high": 0.03, "log": True}},
    ), "panel.yaml")
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    with trial_threads(1):
        run_study(spec, 2, storage=url, data=synthetic_root, progress=False)
    study = optuna.load_study(study_name="panel", storage=url)
    panel = [p["patch"] for p in study.user_attrs["panel"]]
    assert panel and len(set(panel)) == len(panel)
    store = FileSystemArtifactStore(study.user_attrs["artifact_dir"])
    for t in study.trials:
        drawn = load_overlay_masks(read_artifact(store, t.user_attrs["artifacts"][MASKS_KEY]))
        assert [p["patch"] for p in drawn] == panel  # the same patches, in the same order
        overlay = np.asarray(Image.open(io.BytesIO(
            read_artifact(store, t.user_attrs["artifacts"]["overlay"]))).convert("RGB"))
        assert_prediction_column(overlay, drawn)

    out = tmp_path / "grid.png"
    result = CliRunner().invoke(app, ["compare", "--study", "panel", "--top", "2", "--out",
                                      str(out), "--storage", url])
    assert result.exit_code == 0, result.output
    width, height = Image.open(out).size
    assert height > width * len(panel) / (2 + 2) * 0.8  # a row per patch, 2 + 2 columns
    from optuna.artifacts import get_all_artifact_meta

    attached = get_all_artifact_meta(study)
    assert [m.filename for m in attached] == ["grid.png"]  # on the study's dashboard page

    bad = CliRunner().invoke(app, ["compare", "--study", "panel", "--out", str(tmp_path / "g"),
                                   "--storage", url])
    assert bad.exit_code == 2 and "name the file *.png" in bad.output

    # `sweep confirm` on the finished study: one more run of the best config, then the ranking
    with trial_threads(1):
        confirmed = CliRunner().invoke(app, ["confirm", "--study", "panel", "--top", "1",
                                             "--repeats", "1", "--storage", url])
    assert confirmed.exit_code == 0, confirmed.output
    best = max((t for t in study.trials if t.number < 2), key=lambda t: t.value)
    runs = [t for t in optuna.load_study(study_name="panel", storage=url).trials
            if t.user_attrs.get("confirms") == best.number]
    assert len(runs) == 1 and runs[0].state.name == "COMPLETE"
    assert "confirmed" in confirmed.output and "search run" in confirmed.output  # shown apart
    assert f"│ 1    │ {best.number} " in confirmed.output



def test_row_labels_keep_the_whole_patch_name(tmp_path):
    from sweep.artifacts import grid_png
    from sweep.compare import patch_label

    name = "patch_12_2_by_4_LC08_L1TP_029032_20160720_20160720_01_T1"
    lines = patch_label(name)
    assert lines[0] == "patch_12_2_by_4_" and "".join(lines) == name
    assert all(len(line) <= 26 for line in lines)
    cell = np.zeros((16, 16, 3), np.uint8)
    label = "\n".join(["bright clear ground", *lines])
    grid_png([[cell, cell]], ["a", "b"], tmp_path / "g.png", row_labels=[label], step=1)
    picture = np.asarray(Image.open(tmp_path / "g.png").convert("L"))
    assert picture.shape[0] >= 13 * 4  # the row grew to hold its four label lines
    inked = np.flatnonzero((picture[:, :164] < 128).any(axis=1))
    assert inked.size and inked[-1] < picture.shape[0] - 1  # the last line is not cut off
