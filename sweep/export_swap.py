"""Putting a finished export in place, and cleaning up after exports that died.

An export writes its bundle into `.DIR.export-XXXX` beside DIR while holding an exclusive
`flock` on that folder. The finished folder is swapped with DIR in one step (Linux
`renameat2(RENAME_EXCHANGE)`), so DIR is the old bundle or the new one at every instant, never
missing; the old bundle, now at the temporary name, is then removed. Where the exchange is not
supported, two renames (DIR → `.DIR.old-XXXX`, temporary → DIR) do it, and a death between them
is repaired by the next export (the old bundle goes back to DIR first). A temporary folder that
nobody holds a lock on belongs to an export that died (kill -9, power): the next export into
DIR's parent removes it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from sweep.errors import ExportError

_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap `a` and `b` atomically; False where the system cannot (then nothing changed)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _unheld(folder: Path) -> bool:
    """Whether no process holds the export lock on `folder` (its export died)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    else:
        return True
    finally:
        os.close(fd)  # closing releases our lock


def clean_stale(dest: Path) -> list[Path]:
    """Repair and remove what exports into `dest` that died left behind; returns the removed."""
    parent = dest.parent
    if not parent.is_dir():
        return []
    olds = sorted(parent.glob(f".{dest.name}.old-*"))
    if not dest.exists() and olds:  # died between the two renames: the old bundle goes back
        with contextlib.suppress(OSError):
            os.rename(olds.pop(), dest)
    removed = []
    for stale in [*olds, *parent.glob(f".{dest.name}.export-*")]:
        if stale.is_dir() and not stale.is_symlink() and _unheld(stale):
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale)
    return removed


@contextlib.contextmanager
def temporary_bundle(dest: Path) -> Iterator[Path]:
    """A locked temporary folder beside `dest` for the new bundle; removed at the end unless
    it was put in place (`swap_into_place`).
    """
    clean_stale(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.export-", dir=dest.parent))
    fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Flush every file of `folder` and the folder itself to the disk before it is swapped in."""
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def swap_into_place(tmp: Path, dest: Path) -> None:
    """Put the finished bundle `tmp` at `dest`, replacing a bundle there as a whole: a reader
    sees the old bundle or the new one (with the exchange: never no folder).
    """
    error: OSError | None = None
    for _ in range(10):  # another export into the same folder may win a race: try again
        if dest.exists() and _exchange(tmp, dest):
            shutil.rmtree(tmp, ignore_errors=True)  # the old bundle, now at the temporary name
            return
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
            try:
                os.rename(dest, old)
            except FileNotFoundError:
                old = None
        try:
            os.rename(tmp, dest)
        except OSError as err:  # a concurrent export put its bundle there first
            error = err
            if old is not None:  # put the old one back (unless the other export's is there)
                with contextlib.suppress(OSError):
                    os.rename(old, dest)
                shutil.rmtree(old, ignore_errors=True)
            continue
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return
    raise ExportError(f"{dest}: could not be replaced: {error}")
