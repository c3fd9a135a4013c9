"""38-Cloud / 95-Cloud naming and folder layout, declared once (torchgeo style) so every other
module asks this one where things are instead of globbing on its own.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cloudseg.errors import LayoutError
from cloudseg.scenes.grid import SceneGrid

BANDS: tuple[str, ...] = ("red", "green", "blue", "nir")
GT = "gt"
PATCH_SIZE = 384
TRAIN_DIR = "38-Cloud_training"
TEST_DIR = "38-Cloud_test"
ADDITIONAL_DIR = "95-cloud_training_only_additional_to38-cloud"
SCENE_GTS_DIR = "Entire_scene_gts"
SCENE_GT_PREFIX = "edited_corrected_gts_"
TRAIN_CSV = "training_patches_38-Cloud.csv"
NONEMPTY_CSV = "training_patches_38-cloud_nonempty.csv"
TEST_CSV = "test_patches_38-Cloud.csv"

_PATCH_RE = re.compile(
    r"^(?P<band>red|green|blue|nir|gt)_patch_(?P<idx>\d+)_(?P<row>\d+)_by_(?P<col>\d+)_"
    r"(?P<scene>[A-Za-z0-9_]+)\.TIF$",
    re.IGNORECASE,
)
_ID_RE = re.compile(r"^patch_(?P<idx>\d+)_(?P<row>\d+)_by_(?P<col>\d+)_(?P<scene>[A-Za-z0-9_]+)$")
EXPECTED_TREE = (
    f"a 38-Cloud/95-Cloud tree: {TRAIN_DIR}/train_{{red,green,blue,nir,gt}}/ and/or "
    f"{TEST_DIR}/test_{{red,green,blue,nir}}/ holding "
    "{band}_patch_{idx}_{row}_by_{col}_{sceneid}.TIF files"
)


class NotADatasetError(LayoutError):
    """The root (or one of its folders) is missing, a dead link, or holds no 38-Cloud folders:
    one line, what was expected where.
    """

    def __init__(self, root: object, message: str) -> None:
        super().__init__(root, [message])
        Exception.__init__(self, message)


@dataclass(frozen=True, order=True)
class PatchId:
    """One 384x384 patch of a scene; `idx = (row - 1) * n_cols + col`, all 1-based."""

    scene: str
    row: int
    col: int
    idx: int

    @property
    def name(self) -> str:
        """The band-less name used in the patch CSVs: `patch_{idx}_{row}_by_{col}_{scene}`."""
        return f"patch_{self.idx}_{self.row}_by_{self.col}_{self.scene}"


def parse_patch_name(filename: str | Path) -> tuple[str, PatchId]:
    """`red_patch_192_10_by_12_LC08_....TIF` -> ("red", PatchId(...)); LayoutError otherwise."""
    name = Path(filename).name
    m = _PATCH_RE.match(name)
    if not m:
        raise LayoutError(filename, [f"{name}: not a patch name {{band}}_patch_{{idx}}_{{row}}"
                                     "_by_{col}_{sceneid}.TIF"])
    pid = PatchId(m["scene"], int(m["row"]), int(m["col"]), int(m["idx"]))
    return m["band"].lower(), pid


def format_patch_name(band: str, pid: PatchId) -> str:
    """The file name of one band of a patch, as 38-Cloud spells it."""
    return f"{band}_{pid.name}.TIF"


def parse_csv_name(name: str) -> PatchId | None:
    """A CSV entry `patch_1_1_by_1_<scene>` -> PatchId, None when it is not one."""
    m = _ID_RE.match(name.strip())
    return PatchId(m["scene"], int(m["row"]), int(m["col"]), int(m["idx"])) if m else None


def scene_grid(height: int, width: int) -> tuple[int, int]:
    """(rows, cols) of patches for a scene zero-padded to a multiple of 384 (`SceneGrid`)."""
    grid = SceneGrid.of_scene(height, width, PATCH_SIZE)
    return grid.rows, grid.cols


@dataclass(frozen=True)
class DatasetLayout:
    """Where the parts of one data root are; folders absent from the tree are simply missing."""

    root: Path
    train_dirs: dict[str, list[Path]] = field(default_factory=dict)  # band/gt -> folders
    test_dirs: dict[str, Path] = field(default_factory=dict)  # band -> folder
    train_csvs: list[Path] = field(default_factory=list)
    nonempty_csvs: list[Path] = field(default_factory=list)
    test_csvs: list[Path] = field(default_factory=list)
    scene_gts: dict[str, Path] = field(default_factory=dict)  # scene id -> whole-scene gt

    @property
    def has_train(self) -> bool:
        """Whether the tree has training folders."""
        return bool(self.train_dirs)

    @property
    def has_test(self) -> bool:
        """Whether the tree has test folders."""
        return bool(self.test_dirs)


def link_problem(path: Path) -> str | None:
    """Why `path` is a symlink that leads nowhere (a loop, a missing target), else None:
    `Path.exists()` says False for both, which would read as "missing".
    """
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return f"{path} is a symlink loop (following it leads back to itself)"
        return f"{path} is a broken symlink (its target {os.readlink(path)} does not exist)"
    return None


def _child(folder: Path, name: str) -> Path | None:
    """Case-insensitive child lookup: the published archives disagree on 'Cloud' vs 'cloud'.
    A child that is a symlink loop or dangling link is an error, not an absent folder.
    """
    if not folder.is_dir():
        return None
    exact = folder / name
    low = name.lower()
    found = exact if exact.exists() else next(
        (p for p in folder.iterdir() if p.name.lower() == low), None)
    if found is not None and (problem := link_problem(found)):
        raise NotADatasetError(found, problem)
    return found


def find_layout(root: str | Path) -> DatasetLayout:
    """Discover the folders and CSVs of a 38-Cloud or 95-Cloud root (no file is read)."""
    root = Path(root).expanduser()
    if problem := link_problem(root):
        raise NotADatasetError(root, f"data root {problem}")
    if not root.exists():
        raise NotADatasetError(root, f"data root {root} does not exist; expected {EXPECTED_TREE}")
    if not root.is_dir():
        raise NotADatasetError(root, f"data root {root} is not a folder; expected {EXPECTED_TREE}")
    root = root.resolve()
    train_dirs: dict[str, list[Path]] = {}
    test_dirs: dict[str, Path] = {}
    train_root, test_root = _child(root, TRAIN_DIR), _child(root, TEST_DIR)
    extra_root = _child(root, ADDITIONAL_DIR)
    for band in (*BANDS, GT):
        folders = [_child(train_root, f"train_{band}") if train_root else None]
        if extra_root:
            folders.append(_child(extra_root, f"train_{band}_additional_to38cloud"))
        if present := [f for f in folders if f is not None and f.is_dir()]:
            train_dirs[band] = present
        if band != GT and test_root and (t := _child(test_root, f"test_{band}")) and t.is_dir():
            test_dirs[band] = t
    if not train_dirs and not test_dirs:
        raise NotADatasetError(root, f"no 38-Cloud folders in {root}; expected {EXPECTED_TREE}")
    csvs = [p for d in (root, train_root, test_root, extra_root) if d and d.is_dir()
            for p in sorted(d.iterdir()) if p.suffix.lower() == ".csv" and p.is_file()]
    scene_gts: dict[str, Path] = {}
    for d in (root, test_root, train_root):
        gts = _child(d, SCENE_GTS_DIR) if d else None
        for p in sorted(gts.iterdir()) if gts and gts.is_dir() else []:
            if p.name.lower().startswith(SCENE_GT_PREFIX) and p.suffix.lower() == ".tif":
                scene_gts.setdefault(p.stem[len(SCENE_GT_PREFIX):], p)
    return DatasetLayout(
        root=root,
        train_dirs=train_dirs,
        test_dirs=test_dirs,
        train_csvs=[p for p in csvs if p.name.lower().startswith("training_patches")
                    and "nonempty" not in p.name.lower()],
        nonempty_csvs=[p for p in csvs if "nonempty" in p.name.lower()],
        test_csvs=[p for p in csvs if p.name.lower().startswith("test_patches")],
        scene_gts=scene_gts,
    )
