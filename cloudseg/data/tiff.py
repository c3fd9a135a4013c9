"""Reading, checking and writing single-band 38-Cloud TIFFs with rasterio, in the exact format of
the published files (plain TIFF, PackBits, 21-row strips, 72 dpi, no CRS): one place that knows.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from cloudseg.data.layout import PATCH_SIZE

ROWS_PER_STRIP = 21
# 38-Cloud patches are plain TIFFs by design; rasterio would warn on every open. A process-wide
# filter because warnings.catch_warnings is not thread-safe and we read from a thread pool.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
_TAGS = {"TIFFTAG_XRESOLUTION": "72", "TIFFTAG_YRESOLUTION": "72",
         "TIFFTAG_RESOLUTIONUNIT": "2"}


def read_band(path: str | Path, out: np.ndarray | None = None) -> np.ndarray:
    """The first band of `path`; into `out` when given (no extra copy)."""
    with rasterio.open(path) as src:
        return src.read(1, out=out)


def write_band(path: str | Path, array: np.ndarray) -> None:
    """Write a 2-D uint16 band or uint8 gt exactly like the published patches."""
    height, width = array.shape
    profile = {
        "driver": "GTiff", "dtype": array.dtype.name, "count": 1, "width": width,
        "height": height, "compress": "packbits", "tiled": False,
        "blockysize": ROWS_PER_STRIP, "interleave": "band",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.update_tags(**_TAGS)
        dst.write(array, 1)


def check_file(path: Path, dtype: str, shape: tuple[int, int] = (PATCH_SIZE, PATCH_SIZE)
               ) -> tuple[str | None, tuple[int, int] | None]:
    """(problem or None, shape) for one patch file; reads the header and strip table only.

    A truncated file still opens (the directory sits at the start), so the strip table is
    compared with the file size: the check costs microseconds instead of a full decode.
    """
    try:
        with rasterio.open(path) as src:
            got = (src.height, src.width)
            if src.count != 1:
                return f"{path.name}: {src.count} bands, expected 1", got
            if src.dtypes[0] != dtype:
                return f"{path.name}: dtype {src.dtypes[0]}, expected {dtype}", got
            if got != shape:
                return (f"{path.name}: shape {got[0]}x{got[1]}, expected "
                        f"{shape[0]}x{shape[1]}"), got
            end = _data_end(src)
    except RasterioIOError as err:
        return f"{path.name}: unreadable or truncated TIFF ({_gdal_reason(err, path)})", None
    size = os.path.getsize(path)
    if end is not None and end > size:
        return f"{path.name}: truncated TIFF ({size} bytes, strips need {end})", got
    return None, got


def _gdal_reason(err: Exception, path: Path) -> str:
    """GDAL's reason without the path it repeats (the caller names the file), never cut."""
    text = " ".join(str(err).split())
    for shown in sorted({str(path), str(Path(path).resolve()), os.fspath(path)}, key=len,
                        reverse=True):
        text = text.replace(f"'{shown}' ", "").replace(f"{shown}: ", "").replace(shown, "it")
    return text.rstrip(".")


def _data_end(src: rasterio.DatasetReader) -> int | None:
    """Largest strip offset + byte count, from GDAL's TIFF metadata domain."""
    end = None
    n_blocks = -(-src.height // src.block_shapes[0][0])
    for y in range(n_blocks):
        off = src.get_tag_item(f"BLOCK_OFFSET_0_{y}", "TIFF", bidx=1)
        size = src.get_tag_item(f"BLOCK_SIZE_0_{y}", "TIFF", bidx=1)
        if off is None or size is None:
            return None
        end = max(end or 0, int(off) + int(size))
    return end
