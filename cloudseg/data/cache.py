"""Pack the training patches once into memory-mapped arrays that every trial and DataLoader worker
shares through the page cache, instead of decoding five TIFFs per sample per epoch.

On disk, `<cache_dir>/<fingerprint>/` holds images.npy (N,4,384,384) uint16, masks.npy
(N,384,384) uint8 {0,1}, index.json, moments.npz (per-patch sums, computed while packing:
cloudseg.data.moments) and a COMPLETE marker written last. A build happens under a
file lock in a temporary folder that is renamed into place, so two processes preparing at once
leave one valid cache and a crash leaves nothing that is ever used.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from filelock import FileLock

from cloudseg.data.index import PatchRecord, index_dataset
from cloudseg.data.layout import BANDS, GT, PATCH_SIZE, DatasetLayout, PatchId, find_layout
from cloudseg.data.progress import parallel_map
from cloudseg.data.sums import PatchSums, ensure_sums, has_sums
from cloudseg.data.tiff import read_band
from cloudseg.errors import CacheError, DiskFullError

CACHE_VERSION = 1
COMPLETE = "COMPLETE"


def default_cache_dir(root: str | Path) -> Path:
    """`$CLOUDSEG_CACHE_DIR/<key>` else `~/.cache/cloudseg/<key>`; key from the absolute root."""
    root = Path(root).expanduser().resolve()
    base = os.environ.get("CLOUDSEG_CACHE_DIR") or Path.home() / ".cache" / "cloudseg"
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    return Path(base) / f"{root.name}-{digest}"


def fingerprint(layout: DatasetLayout, include_additional: bool = True) -> str:
    """Hash of every training file's name, size and mtime (+ the CSVs): any change rebuilds."""
    h = hashlib.sha256(f"v{CACHE_VERSION} additional={include_additional}".encode())
    folders = [d for dirs in layout.train_dirs.values()
               for d in (dirs if include_additional else dirs[:1])]
    entries = [(str(p.relative_to(layout.root)), p.stat()) for p in
               [*layout.train_csvs, *layout.nonempty_csvs]]
    for folder in folders:
        with os.scandir(folder) as it:
            entries += [(f"{folder.name}/{e.name}", e.stat()) for e in it]
    for name, st in sorted(entries, key=lambda e: e[0]):
        h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


@dataclass
class PatchCache:
    """The packed training patches; `records[i]` describes row i of `images` and `masks`."""

    path: Path
    root: Path
    records: list[PatchRecord]
    images: np.ndarray = field(repr=False)  # np.memmap uint16 (N, 4, 384, 384), R G B NIR
    masks: np.ndarray = field(repr=False)  # np.memmap uint8 (N, 384, 384), {0, 1}
    fingerprint: str = ""

    def __len__(self) -> int:
        return len(self.records)

    @property
    def scenes(self) -> list[str]:
        """The scenes the cache holds, sorted."""
        return sorted({r.id.scene for r in self.records})

    def __getstate__(self) -> dict:
        """Pickle by path (spawned DataLoader workers): never copy gigabytes of pixels."""
        state = dict(self.__dict__)
        state.pop("images"), state.pop("masks")
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.images, self.masks = _open_arrays(self.path, len(self.records))


def _open_arrays(path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    images = np.load(path / "images.npy", mmap_mode="r")
    masks = np.load(path / "masks.npy", mmap_mode="r")
    if images.shape != (n, len(BANDS), PATCH_SIZE, PATCH_SIZE) or masks.shape != (
            n, PATCH_SIZE, PATCH_SIZE) or images.dtype != np.uint16 or masks.dtype != np.uint8:
        raise CacheError(f"{path}: arrays {images.shape}/{masks.shape} do not match {n} records")
    return images, masks


def _load(path: Path) -> PatchCache:
    meta = json.loads((path / "index.json").read_text())
    root = Path(meta["root"])
    records = [PatchRecord(PatchId(r["scene"], r["row"], r["col"], r["idx"]),
                           {b: root / f for b, f in r["files"].items()},
                           r["nonempty"], r["cloud_fraction"]) for r in meta["records"]]
    images, masks = _open_arrays(path, len(records))
    return PatchCache(path, root, records, images, masks, meta["fingerprint"])


def _usable(path: Path) -> PatchCache | None:
    """The cache at `path` when it is complete and readable; None otherwise."""
    if not (path / COMPLETE).is_file():
        return None
    try:
        return _load(path)
    except (OSError, ValueError, KeyError, CacheError):
        return None


def open_cache(root: str | Path, cache_dir: str | Path | None = None, progress: bool = False,
               include_additional: bool = True) -> PatchCache:
    """The packed cache for `root`, built first when missing or stale (fingerprint)."""
    layout = find_layout(root)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(layout.root)
    cache = _usable(cache_dir / fingerprint(layout, include_additional)[:20])
    if cache is None:
        return prepare_cache(root, cache_dir, progress, include_additional)
    return _with_sums(cache, progress)


def _with_sums(cache: PatchCache, progress: bool) -> PatchCache:
    """`cache`, its per-patch sums computed first when it was packed before they were kept."""
    if not has_sums(cache.path):
        ensure_sums(cache.path, cache.images, cache.masks, progress)
    return cache


def prepare_cache(root: str | Path, cache_dir: str | Path | None = None, progress: bool = False,
                  include_additional: bool = True, force: bool = False) -> PatchCache:
    """The cache for `root`, (re)built when missing, stale, broken or forced: the tree is
    validated first, then built under a file lock (one builder at a time).
    """
    layout = find_layout(root)
    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir(layout.root)
    fp = fingerprint(layout, include_additional)
    final = cache_dir / fp[:20]
    if not force and (cache := _usable(final)):
        return _with_sums(cache, progress)
    # The tree is validated before anything is written: a rejected tree leaves no folder or lock.
    records = index_dataset(layout.root, "train", include_additional, progress)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(cache_dir / ".lock"))
        lock.acquire()
    except OSError as err:
        raise CacheError(f"cache folder {cache_dir}: cannot write there ({err.strerror}); "
                         "choose another with --cache or CLOUDSEG_CACHE_DIR") from None
    try:
        if not force and (cache := _usable(final)):
            return _with_sums(cache, progress)  # another process built it meanwhile
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
        try:
            tmp.chmod(0o755)
            _build(tmp, layout.root, records, fp, progress)
            for stale in cache_dir.iterdir():  # old versions, crash leftovers, this one if forced
                if stale.is_dir() and stale != tmp:
                    shutil.rmtree(stale, ignore_errors=True)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return _load(final)
    finally:
        lock.release()


def _build(out: Path, root: Path, records: list[PatchRecord], fp: str, progress: bool) -> None:
    n = len(records)
    shape = (n, len(BANDS), PATCH_SIZE, PATCH_SIZE)
    sizes = {"images.npy": 2 * int(np.prod(shape)), "masks.npy": n * PATCH_SIZE * PATCH_SIZE}
    _check_free_space(out, sum(sizes.values()))
    images = np.lib.format.open_memmap(out / "images.npy", "w+", np.uint16, shape)
    masks = np.lib.format.open_memmap(out / "masks.npy", "w+", np.uint8, (n, *shape[2:]))
    for name, size in sizes.items():  # a write into a hole the disk cannot fill is SIGBUS:
        _reserve(out / name, size + 4096)  # every block is allocated before one is written

    def pack(i: int) -> None:
        files = records[i].files
        for b, band in enumerate(BANDS):
            read_band(files[band], out=images[i, b])
        np.minimum(read_band(files[GT]), 1, out=masks[i])
        sums.add(i, images[i], masks[i])  # from the pixels just decoded, still in cache

    sums = PatchSums(n)
    for _ in parallel_map(pack, range(n), n, "pack patches", progress):
        pass
    images.flush()
    masks.flush()
    sums.save(out)
    meta = {
        "version": CACHE_VERSION, "root": str(root), "fingerprint": fp, "n": n,
        "records": [{"scene": r.id.scene, "row": r.id.row, "col": r.id.col, "idx": r.id.idx,
                     "nonempty": r.nonempty, "cloud_fraction": r.cloud_fraction,
                     "files": {b: str(p.relative_to(root)) for b, p in r.files.items()}}
                    for r in records],
    }
    (out / "index.json").write_text(json.dumps(meta))
    with open(out / COMPLETE, "w") as fh:  # written last: its presence means "usable"
        fh.write(fp)
        fh.flush()
        os.fsync(fh.fileno())


def _full(out: Path, detail: str) -> DiskFullError:
    return DiskFullError(f"cache folder {out.parent}: {detail}; free some space or choose "
                         "another folder with --cache or CLOUDSEG_CACHE_DIR (nothing was kept)")


def _check_free_space(out: Path, needed: int) -> None:
    """Refuse to start a build the disk cannot hold (the arrays are written through a memmap)."""
    free = shutil.disk_usage(out).free
    if free < needed:
        raise _full(out, f"no space left on the device for the cache: it needs "
                    f"{needed / 2**20:.0f} MiB, {free / 2**20:.0f} MiB are free")


def _reserve(path: Path, size: int) -> None:
    """Allocate `size` bytes of `path` on the disk now (ENOSPC here, not SIGBUS later)."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            if err.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                return  # a filesystem without fallocate: the free-space check must do
            raise
        raise _full(path.parent, "no space left on the device while reserving the cache") from None
    finally:
        os.close(fd)
