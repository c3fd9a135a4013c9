"""The checks of GDAL's `validate_cloud_optimized_geotiff.py` (osgeo_utils.samples), on the
file's own bytes: the osgeo bindings are not installed here, rasterio does not expose TIFF
block offsets. Returns (errors, warnings) as the validator words them.

Checked: a classic TIFF whose first IFD follows the header (8 bytes) and the GDAL ghost
header (LAYOUT=IFDS_BEFORE_DATA, KNOWN_INCOMPATIBLE_EDITION=NO); tiles and overviews on an
image wider or taller than 512 px; every IFD before any image data, in order (full resolution,
then smaller overviews); each image's tiles in row-major order; the smallest overview's data
first, the full resolution's last; the same order for the mask IFDs.
"""

from __future__ import annotations

import struct
from pathlib import Path

TYPES = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}


def _ifds(data: bytes, order: str) -> list[tuple[int, dict[int, list[int]]]]:
    (offset,) = struct.unpack_from(order + "I", data, 4)
    out = []
    while offset:
        (n,) = struct.unpack_from(order + "H", data, offset)
        tags: dict[int, list[int]] = {}
        for i in range(n):
            tag, kind, count, value = struct.unpack_from(order + "HHII", data, offset + 2 + 12 * i)
            if kind not in TYPES:
                continue
            fmt, size = TYPES[kind]
            at = offset + 2 + 12 * i + 8 if count * size <= 4 else value
            tags[tag] = list(struct.unpack_from(order + fmt * count, data, at))
        out.append((offset, tags))
        (offset,) = struct.unpack_from(order + "I", data, offset + 2 + 12 * n)
    return out


def validate_cog(path: str | Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) of GDAL's COG validator for the TIFF at `path`."""
    data = Path(path).read_bytes()
    errors: list[str] = []
    warnings: list[str] = []
    order = {b"II": "<", b"MM": ">"}[data[:2]]
    if struct.unpack_from(order + "H", data, 2)[0] != 42:
        return ["not a classic TIFF (BigTIFF is not checked here)"], []
    ifds = _ifds(data, order)
    # The ghost header sits between the TIFF header and the first IFD.
    head = data[8:8 + 43]  # "GDAL_STRUCTURAL_METADATA_SIZE=XXXXXX bytes\n"
    expected = 8
    if head.startswith(b"GDAL_STRUCTURAL_METADATA_SIZE="):
        size = int(head[30:36])
        ghost = data[8 + 43: 8 + 43 + size].decode("ascii", "replace")
        expected += 43 + size + (43 + size) % 2  # IFDs start on a word boundary
        if "LAYOUT=IFDS_BEFORE_DATA" not in ghost:
            errors.append("the ghost header does not say LAYOUT=IFDS_BEFORE_DATA")
        if "KNOWN_INCOMPATIBLE_EDITION=YES" in ghost:
            errors.append("KNOWN_INCOMPATIBLE_EDITION=YES: the file was edited after writing")
    else:
        warnings.append("no GDAL ghost header (GDAL_STRUCTURAL_METADATA): not written as a COG")
    if ifds[0][0] != expected:
        errors.append(f"The offset of the main IFD should be {expected}. It is {ifds[0][0]} "
                      "instead")
    images = [t for _, t in ifds if t.get(254, [0])[0] in (0, 1)]
    masks = [t for _, t in ifds if t.get(254, [0])[0] in (4, 5)]
    main = images[0]
    width, height = main[256][0], main[257][0]
    if (width > 512 or height > 512) and 322 not in main:
        warnings.append("The file is greater than 512xH or Wx512, but is not tiled")
    if (width > 512 or height > 512) and len(images) == 1:
        warnings.append("The file is greater than 512xH or Wx512, it is recommended to include "
                        "internal overviews")
    offsets = [o for o, _ in ifds]
    first_data = min(min(o for o in t[324] if o) for _, t in ifds)
    if offsets != sorted(offsets) or max(offsets) > first_data:
        errors.append("the IFDs are not all before the image data, in order")
    for kind, group in (("image", images), ("mask", masks)):
        widths = [t[256][0] for t in group]
        if widths != sorted(widths, reverse=True):
            errors.append(f"{kind} IFDs are not ordered from full resolution to smallest overview")
        firsts = []
        for index, t in enumerate(group):
            blocks = [o for o in t[324] if o]
            if blocks != sorted(blocks):
                errors.append(f"{kind} {index}: tiles are not in row-major order")
            firsts.append(blocks[0])
        for index in range(len(firsts) - 1):
            if firsts[index] < firsts[index + 1]:
                errors.append(f"The offset of the first block of {kind} {index} should be after "
                              f"the one of overview of index {index}")
    return errors, warnings
