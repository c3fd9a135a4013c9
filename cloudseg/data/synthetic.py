"""A seeded synthetic data set in the exact 38-Cloud layout and file format, for tests, the CPU
demo and benchmarks. Clouds are learnable but not trivial: soft-edged coherent blobs with thin
(unlabelled) haze, bright in every band including NIR, next to bright snow (lower NIR than
visible) and sand (red > blue) that a colour threshold alone confuses with cloud.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from cloudseg.data.layout import (
    BANDS,
    GT,
    NONEMPTY_CSV,
    PATCH_SIZE,
    SCENE_GT_PREFIX,
    SCENE_GTS_DIR,
    TEST_CSV,
    TEST_DIR,
    TRAIN_CSV,
    TRAIN_DIR,
    PatchId,
    format_patch_name,
)
from cloudseg.data.tiff import write_band
from cloudseg.errors import ConfigError
from cloudseg.scenes.grid import SceneGrid

# Typical Landsat-8 L1 DN per band (R, G, B, NIR) at unit illumination; the real sample has
# clear means about (8700, 9200, 10000, 17000) and cloud means about (23600, 24000, 24500, 28600).
_SOIL = np.array([11000, 10500, 10200, 16000], np.float32)
_VEGETATION = np.array([7200, 8300, 9200, 26000], np.float32)  # NIR as bright as cloud
_WATER = np.array([7000, 8000, 9600, 6400], np.float32)
_SAND = np.array([19000, 16500, 13500, 21000], np.float32)  # bright, yellow: red > blue
_SNOW = np.array([28000, 28500, 29000, 19000], np.float32)  # bright, but NIR < visible
_CLOUD = np.array([25500, 25800, 26200, 27500], np.float32)  # white, NIR ~ visible
CLOUD_OPACITY_LABEL = 0.45  # cloud thinner than this (haze) is not labelled


def _upsample(small: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling in numpy (no scipy): smooth fields from a few random numbers."""
    h, w = small.shape
    ys, xs = np.linspace(0, h - 1, height), np.linspace(0, w - 1, width)
    y0, x0 = np.minimum(ys.astype(int), h - 2), np.minimum(xs.astype(int), w - 2)
    wy, wx = (ys - y0)[:, None].astype(np.float32), (xs - x0)[None, :].astype(np.float32)
    a, b = small[y0][:, x0], small[y0][:, x0 + 1]
    c, d = small[y0 + 1][:, x0], small[y0 + 1][:, x0 + 1]
    return (a * (1 - wx) + b * wx) * (1 - wy) + (c * (1 - wx) + d * wx) * wy


def _noise(rng: np.random.Generator, height: int, width: int, scales: tuple[int, ...]
           ) -> np.ndarray:
    """Multi-octave value noise in [0, 1]; `scales` are cell sizes in pixels."""
    out = np.zeros((height, width), np.float32)
    for i, s in enumerate(scales):
        small = rng.random((height // s + 2, width // s + 2), dtype=np.float32)
        out += _upsample(small, height, width) * 0.5**i
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0, 1)
    return t * t * (3 - 2 * t)


def _footprint(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A tilted rectangle like a Landsat path/row footprint: corners outside are no-data."""
    angle = np.deg2rad(rng.uniform(-13, 13))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yc, xc = yy - height / 2, xx - width / 2
    u = xc * np.cos(angle) + yc * np.sin(angle)
    v = -xc * np.sin(angle) + yc * np.cos(angle)
    return (np.abs(u) < width * 0.47) & (np.abs(v) < height * 0.47)


def make_scene(rng: np.random.Generator, height: int, width: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """(bands uint16 (4,H,W), gt uint8 (H,W) {0,255}) for one scene.

    No single band separates cloud: vegetation is as bright as cloud in NIR, snow and sand in
    the visible bands, and illumination (sun elevation) scales whole scenes differently.
    """
    big = max(8, min(height, width) // 5)
    texture = _noise(rng, height, width, (big // 4 + 1, 7, 3))[None]
    veg = _noise(rng, height, width, (big, big // 3 + 1, 9))[None]
    surface = _SOIL[:, None, None] + veg * (_VEGETATION - _SOIL)[:, None, None]
    surface *= 0.85 + 0.3 * texture
    covers = (
        (_WATER, 0.7 + rng.uniform(0, 0.2), (big, 12)),
        (_SAND, rng.choice([0.6, 1.1]), (big, 16)),  # only some scenes have sand / snow
        (_SNOW, rng.choice([0.55, 0.65, 1.1]), (big // 2 + 1, 8, 3)),
    )
    for colour, level, scales in covers:
        if level < 1:
            cover = _smoothstep(_noise(rng, height, width, scales), level, level + 0.04)[None]
            surface += cover * (colour[:, None, None] * (0.85 + 0.3 * texture) - surface)
    coverage = rng.uniform(0.15, 0.7)
    field = _noise(rng, height, width, (big, big // 3 + 1, 12, 5))
    opacity = _smoothstep(field, 1.0 - coverage - 0.1, 1.0 - coverage + 0.2)
    haze = rng.uniform(0.0, 0.4) * _noise(rng, height, width, (big * 2, big // 2 + 1))
    opacity = np.maximum(opacity, haze)
    cloud = _CLOUD[:, None, None] * rng.uniform(0.8, 1.2) * (0.8 + 0.35 * field[None])
    image = (surface + opacity[None] * (cloud - surface)) * rng.uniform(0.7, 1.25)
    image += rng.normal(0, 200, image.shape).astype(np.float32)
    valid = _footprint(rng, height, width)
    bands = np.where(valid[None], np.clip(image, 1, 60000), 0).astype(np.uint16)
    gt = np.where(valid & (opacity >= CLOUD_OPACITY_LABEL), 255, 0).astype(np.uint8)
    return bands, gt


def _scene_id(i: int, split: str) -> str:
    path_row = f"{100 + i:03d}{30 + (split == 'test') * 20:03d}"
    return f"LC08_L1TP_{path_row}_2020{1 + i % 12:02d}15_2020{1 + i % 12:02d}28_01_T1"


def _write_csv(path: Path, names: list[str]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name"])
        w.writerows([n] for n in names)


def _write_scene(root: Path, split: str, scene: str, bands: np.ndarray, gt: np.ndarray
                 ) -> tuple[list[str], list[str]]:
    """Cut one scene, zero-padded around its centre as 38-Cloud does, into patches; returns
    (all names, non-empty names).
    """
    height, width = gt.shape
    grid = SceneGrid.of_scene(height, width, patch=PATCH_SIZE)
    n_rows, n_cols = grid.rows, grid.cols
    bands, gt = grid.pad(bands), grid.pad(gt)
    prefix = "train" if split == "train" else "test"
    top = root / (TRAIN_DIR if split == "train" else TEST_DIR)
    names, nonempty = [], []
    for r in range(n_rows):
        for c in range(n_cols):
            pid = PatchId(scene, r + 1, c + 1, r * n_cols + c + 1)
            window = np.s_[r * PATCH_SIZE:(r + 1) * PATCH_SIZE, c * PATCH_SIZE:(c + 1) * PATCH_SIZE]
            for b, band in enumerate(BANDS):
                write_band(top / f"{prefix}_{band}" / format_patch_name(band, pid),
                           bands[b][window])
            if split == "train":
                write_band(top / f"{prefix}_{GT}" / format_patch_name(GT, pid), gt[window])
            names.append(pid.name)
            if bands[:, window[0], window[1]].any():
                nonempty.append(pid.name)
    return names, nonempty


def write_synthetic(out: str | Path, train_scenes: int = 4, test_scenes: int = 2,
                    scene_size: tuple[int, int] = (800, 800), seed: int = 0, *,
                    coarse: int = 1, workers: int = 1,
                    test_ids: Sequence[str] | None = None,
                    train_scene_gts: bool = False) -> Path:
    """Write a synthetic 38-Cloud tree at `out` (must not exist yet); returns its path.

    `test_ids` names the test scenes (at least `test_scenes` ids, the first ones are used),
    e.g. the real 38-Cloud test scene ids (`cloudseg.cloudnet_scene_ids()`), so results can be
    put beside published per-scene tables; by default they get made-up ids.
    `train_scene_gts` also writes the training scenes' `Entire_scene_gts/` (as 38-Cloud has
    them; `train.ignore_nodata: padding` reads the scene sizes there).

    Built in a temporary sibling folder and renamed, so a crash leaves nothing at `out`.
    `coarse` > 1 draws each scene at 1/coarse of its size and enlarges it (blocky but 1/coarse²
    of the work: full-size 38-Cloud trees for benchmarks); `workers` processes draw scenes in
    parallel. Neither changes the tree for coarse=1, whatever the worker count.
    """
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"synthetic output {out} already exists and is not empty")
    if train_scenes < 1 or test_scenes < 0:
        raise ConfigError(f"train_scenes must be >= 1 and test_scenes >= 0, got "
                          f"{train_scenes} and {test_scenes}")
    if min(scene_size) < 64 * coarse or coarse < 1:
        raise ConfigError(f"scene_size must be at least {64 * coarse} px a side (64 x coarse "
                          f"{coarse}), got {scene_size}")
    if test_ids is not None and len(test_ids) < test_scenes:
        raise ConfigError(f"test_ids: {len(test_ids)} id(s) for {test_scenes} test scenes")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _write_tree(tmp, train_scenes, test_scenes, scene_size, seed, coarse, workers,
                    test_ids, train_scene_gts)
        _readable_by_all(tmp)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _readable_by_all(root: Path) -> None:
    """Modes of any data tree (dirs 0755, files 0644) whatever the umask, and not mkdtemp's
    0700: a worker container's user (another uid) must read it.
    """
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _synth_scene(root: Path, split: str, scene: str, rng: np.random.Generator,
                 size: tuple[int, int], coarse: int, scene_gts: bool = False
                 ) -> tuple[list[str], list[str]]:
    """Draw one scene, write its patches (and its whole-scene gt for a test scene)."""
    h, w = size
    bands, gt = make_scene(rng, -(-h // coarse), -(-w // coarse))
    if coarse > 1:
        grow = np.s_[..., :h, :w]
        bands = bands.repeat(coarse, -2).repeat(coarse, -1)[grow]
        gt = gt.repeat(coarse, -2).repeat(coarse, -1)[grow]
    if split == "test" or scene_gts:  # 38-Cloud ships whole-scene gts of training scenes too
        top = TEST_DIR if split == "test" else TRAIN_DIR
        write_band(root / top / SCENE_GTS_DIR / f"{SCENE_GT_PREFIX}{scene}.TIF", gt)
    return _write_scene(root, split, scene, bands, gt)


def _write_tree(root: Path, train_scenes: int, test_scenes: int, size: tuple[int, int],
                seed: int, coarse: int = 1, workers: int = 1,
                test_ids: Sequence[str] | None = None, train_scene_gts: bool = False) -> None:
    for folder in [f"{TRAIN_DIR}/train_{b}" for b in (*BANDS, GT)] + (
            [f"{TRAIN_DIR}/{SCENE_GTS_DIR}"] if train_scene_gts else []) + (
            [f"{TEST_DIR}/test_{b}" for b in BANDS] + [f"{TEST_DIR}/{SCENE_GTS_DIR}"]
            if test_scenes else []):
        (root / folder).mkdir(parents=True)
    rngs = np.random.default_rng(seed).spawn(train_scenes + test_scenes)
    jobs = []
    for i, rng in enumerate(rngs):
        split = "train" if i < train_scenes else "test"
        scene = (_scene_id(i, split) if split == "train" or test_ids is None
                 else test_ids[i - train_scenes])
        jobs.append((root, split, scene, rng, size, coarse, train_scene_gts))
    if workers > 1:
        with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
            written = list(pool.map(_synth_scene, *zip(*jobs, strict=True)))
    else:
        written = [_synth_scene(*job) for job in jobs]
    csvs: dict[str, list[str]] = {"train": [], "nonempty": [], "test": []}
    for (_, split, *_rest), (names, nonempty) in zip(jobs, written, strict=True):
        csvs[split] += names
        if split == "train":
            csvs["nonempty"] += nonempty
    _write_csv(root / TRAIN_DIR / TRAIN_CSV, csvs["train"])
    _write_csv(root / NONEMPTY_CSV, csvs["nonempty"])
    if test_scenes:
        _write_csv(root / TEST_DIR / TEST_CSV, csvs["test"])
