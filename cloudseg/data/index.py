"""Scan a data root into a patch index and validate the whole tree once, so a bad file is one
clear LayoutError at start-up listing every problem, never a traceback in trial 17.
"""

from __future__ import annotations

import contextlib
import csv
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudseg.data.layout import (
    ADDITIONAL_DIR,
    BANDS,
    EXPECTED_TREE,
    GT,
    DatasetLayout,
    NotADatasetError,
    PatchId,
    find_layout,
    format_patch_name,
    link_problem,
    parse_csv_name,
    parse_patch_name,
)
from cloudseg.data.progress import parallel_map
from cloudseg.data.tiff import check_file, read_band
from cloudseg.errors import ConfigError, LayoutError


@dataclass(frozen=True)
class PatchRecord:
    """One patch: its id, one file per band (+ "gt" for training), and what we know of it."""

    id: PatchId
    files: dict[str, Path]
    nonempty: bool  # at least one valid (non-zero) pixel
    cloud_fraction: float | None  # fraction of gt pixels that are cloud; None without gt

    @property
    def name(self) -> str:
        """The patch's name as the CSVs and file names spell it."""
        return self.id.name


def read_csv_names(path: Path) -> set[str]:
    """The `name` column of a 38-Cloud patch CSV (first column when the header differs);
    LayoutError when the file is not a readable text CSV.
    """
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        why = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else (
            getattr(err, "strerror", None) or str(err))
        raise LayoutError(path, [f"{path.name}: not a readable patch CSV ({why})"]) from None
    if not rows:
        return set()
    header = [h.strip().lower() for h in rows[0]]
    col = header.index("name") if "name" in header else 0
    start = 1 if parse_csv_name(rows[0][col]) is None else 0
    return {r[col].strip() for r in rows[start:] if len(r) > col and r[col].strip()}


def _scan(layout: DatasetLayout, folders: dict[str, list[Path]], problems: list[str]
          ) -> dict[PatchId, dict[str, Path]]:
    """Group the files of every band folder by patch; strays and duplicates become problems."""
    patches: dict[PatchId, dict[str, Path]] = defaultdict(dict)
    for band, dirs in folders.items():
        for folder in dirs:
            for path in sorted(folder.iterdir()):
                rel = path.relative_to(layout.root)
                if problem := link_problem(path):
                    problems.append(problem.replace(str(path), str(rel), 1))
                    continue
                try:
                    got, pid = parse_patch_name(path.name)
                except LayoutError:
                    got, pid = None, None
                if got != band or pid is None or not path.is_file():
                    problems.append(f"stray file {rel}: not a {band}_patch_*.TIF patch file")
                elif band in patches[pid]:
                    first = patches[pid][band].relative_to(layout.root)
                    problems.append(f"duplicate patch {pid.name} ({band}): {first} and {rel}")
                else:
                    patches[pid][band] = path
    return patches


def _grid_problems(ids: list[PatchId]) -> list[str]:
    """Patches whose index disagrees with their place in the scene's grid.

    `idx = (row - 1) * n_cols + col`. n_cols is what the scene's patches agree on (a tree may
    hold only some of a scene's patches, so the largest col seen is a lower bound, not n_cols);
    with no row > 1 to tell, it is the largest col.
    """
    by_scene: dict[str, list[PatchId]] = defaultdict(list)
    for pid in ids:
        by_scene[pid.scene].append(pid)
    problems = []
    for scene_ids in by_scene.values():
        widest = max(p.col for p in scene_ids)
        votes = Counter((p.idx - p.col) // (p.row - 1) for p in scene_ids
                        if p.row > 1 and p.idx > p.col and (p.idx - p.col) % (p.row - 1) == 0
                        and (p.idx - p.col) // (p.row - 1) >= widest)
        n_cols = min(votes, key=lambda n: (-votes[n], n)) if votes else widest
        for p in sorted(scene_ids):
            expected = (p.row - 1) * n_cols + p.col
            if p.row < 1 or p.col < 1:
                problems.append(f"{p.name}: row and col count from 1 (got row {p.row}, "
                                f"col {p.col})")
            elif p.idx != expected:
                problems.append(
                    f"{p.name}: index {p.idx} does not match its grid position row {p.row}, "
                    f"col {p.col} (idx = (row-1)*n_cols + col = {expected} with the scene's "
                    f"{n_cols} columns)")
    return problems


def _listed_without_files(layout: DatasetLayout, csvs: list[Path], present: set[str],
                          include_additional: bool) -> list[str]:
    """Entries of the patch CSVs (the all-patches and the non-empty lists) with no files."""
    problems = []
    for path in csvs:
        parts = [part.lower() for part in path.relative_to(layout.root).parts]
        if not include_additional and ADDITIONAL_DIR.lower() in parts:
            continue  # 95-Cloud's own lists, for folders this index leaves out
        rel = path.relative_to(layout.root)
        try:
            listed = {n for n in read_csv_names(path) if parse_csv_name(n)}
        except LayoutError as err:
            problems += [p.replace(path.name, str(rel), 1) for p in err.problems]
            continue
        problems += [f"{rel} lists {n} but its files are missing"
                     for n in sorted(listed - present)]
    return problems


def _check_patch(item: tuple[PatchId, dict[str, Path], bool]
                 ) -> tuple[list[str], float | None, bool | None]:
    """Header checks for one patch; cloud fraction from its gt; non-empty from pixels if asked."""
    pid, files, need_pixels = item
    problems, shapes = [], {}
    for band, path in files.items():
        problem, shapes[band] = check_file(path, "uint8" if band == GT else "uint16")
        if problem:
            problems.append(problem)
    known = {b: s for b, s in shapes.items() if s is not None}
    if len(set(known.values())) > 1:
        problems.append(f"{pid.name}: bands disagree in shape (" + ", ".join(
            f"{b} {s[0]}x{s[1]}" for b, s in known.items()) + ")")
    if problems:
        return problems, None, None
    fraction = None
    if GT in files:
        gt = read_band(files[GT])
        if not np.isin(gt, (0, 255)).all():
            return [f"{files[GT].name}: gt values {np.unique(gt)[:6].tolist()}, expected 0/255"
                    ], None, None
        fraction = float(np.count_nonzero(gt)) / gt.size
    nonempty = any(read_band(files[b]).any() for b in BANDS) if need_pixels else None
    return [], fraction, nonempty


def index_dataset(root: str | Path, split: str = "train", include_additional: bool = True,
                  progress: bool = False) -> list[PatchRecord]:
    """Every patch of `split` ("train" or "test") under `root`, sorted by scene, row, col.

    Raises one LayoutError listing every problem (missing band/gt, wrong shape or dtype,
    unreadable or truncated TIFF, duplicates, stray files, CSV entries without files).
    """
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    layout = find_layout(root)
    if split == "train":
        wanted = {b: d if include_additional else d[:1] for b, d in layout.train_dirs.items()}
        bands, where = (*BANDS, GT), "38-Cloud_training/train_"
        csvs = [*layout.train_csvs, *layout.nonempty_csvs]
    else:
        wanted = {b: [d] for b, d in layout.test_dirs.items()}
        bands, where, csvs = BANDS, "38-Cloud_test/test_", layout.test_csvs
    if not wanted:
        raise NotADatasetError(layout.root, f"no {split} folders in {layout.root}; expected "
                                            f"{EXPECTED_TREE}")
    problems = [f"missing folder {where}{b}/" for b in bands if b not in wanted]
    patches = _scan(layout, wanted, problems)
    for pid, files in sorted(patches.items()):
        for band in bands:
            if band not in files and band in wanted:
                problems.append(f"{pid.name}: missing {band} ({where}{band}/"
                                f"{format_patch_name(band, pid)})")
    problems += _grid_problems(list(patches))
    problems += _listed_without_files(layout, csvs, {p.name for p in patches}, include_additional)

    nonempty_names: set[str] = set()
    for path in layout.nonempty_csvs if split == "train" else []:
        with contextlib.suppress(LayoutError):  # an unreadable CSV is listed above already
            nonempty_names |= read_csv_names(path)
    covered = {listed.scene for n in nonempty_names if (listed := parse_csv_name(n))}
    complete = sorted((pid, files) for pid, files in patches.items()
                      if all(b in files for b in bands))
    items = [(pid, files, pid.scene not in covered) for pid, files in complete]
    records = []
    for (pid, files, _), (errs, fraction, nonempty) in zip(
            items, parallel_map(_check_patch, items, len(items), f"index {split}", progress),
            strict=True):
        problems += errs
        if not errs:
            flag = pid.name in nonempty_names if nonempty is None else nonempty
            records.append(PatchRecord(pid, dict(files), flag, fraction))
    if problems:
        raise LayoutError(layout.root, problems)
    if not records:
        raise NotADatasetError(layout.root, f"no {split} patches under {layout.root}; expected "
                                            f"{EXPECTED_TREE}")
    return records
