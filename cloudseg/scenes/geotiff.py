"""Scene products as Cloud-Optimized GeoTIFFs (rasterio, GDAL's COG driver): tiled, deflate,
uint8, internal overviews (a GIS opens an 8,000 px scene at any zoom without reading it all),
a band description and `CLOUDSEG_*` tags saying what the values mean, georeferenced when the
source is.

Encodings (documented in the README too):
- probability `<scene>_prob.tif`: v = ceil(255·p), i.e. v means p ∈ ((v−1)/255, v/255]. Then
  `v > k` ⇔ `p > k/255` exactly for every integer k, so scoring the file at the official
  12/255 (or any k/255) gives the same counts as thresholding the float output itself; rounding
  would move pixels with 12/255 < p ≤ 12.5/255 to "clear".
  Tagged `CLOUDSEG_SCALE`; overviews average.
- mask `<scene>_mask.tif`: 255 where p > the bundle's threshold (compared in float), else 0;
  the threshold is tagged `CLOUDSEG_THRESHOLD`; a colour table (0 clear black, 255 cloud
  white); overviews take the nearest pixel, so they stay 0/255.
- Both hold the network's output on every pixel (the official protocol scores no-data margins
  too) and declare the scene footprint (pixels where any band is non-zero) as a GDAL mask band:
  GIS tools and `rasterio`'s `read(masked=True)` treat the margin as no-data. There is no
  nodata value: every byte value is a valid probability bin or mask class (0 is "p = 0" or
  "clear"), so any value chosen would turn real pixels into holes; the mask band loses nothing.

38-Cloud's patches and whole-scene gts are plain TIFFs without a CRS, so their products carry
none; a tree whose scene gt or patches do carry one passes it on. A patch's transform is moved
to the scene origin through the scene grid (`SceneGrid`: centred padding).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cloudseg.scenes.grid import SceneGrid

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

BLOCK = 256  # GeoTIFF tile side (a multiple of 16, as the format requires)
# Deflate level. Writing was the bottleneck of whole-scene prediction on an H100: a 4000² mask
# with speckle took 1.18 s at GDAL's default level 6 and 0.16 s at level 1 (3.4 vs 2.8 MB); a
# 4000² probability map 0.29 s vs 0.16 s at the same size; a blocky mask 0.085 s either way.
# GDAL's NUM_THREADS did not speed these writes up (GDAL 3.10), so the level is the lever.
ZLEVEL = 1


@dataclass(frozen=True)
class Georef:
    """A raster's georeference; empty for the plain TIFFs of 38-Cloud."""

    crs: object | None = None  # rasterio CRS
    transform: object | None = None  # affine.Affine

    @property
    def present(self) -> bool:
        """Whether there is a CRS to write."""
        return self.crs is not None


VALUES_TAG = "CLOUDSEG_VALUES"  # GDAL metadata: what a written raster's values mean
PROBABILITY_VALUES = "probability ceil(255*p)"  # v means p in ((v-1)/255, v/255]
MASK_VALUES = "mask 0/255"


@dataclass(frozen=True)
class Product:
    """What a product's values mean, written into its file: band description, tags (`KEY`:
    text, GDAL's dataset metadata), an optional colour table and the overview resampling.
    """

    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    colormap: dict[int, tuple[int, int, int, int]] | None = None
    resampling: str = "nearest"


def probability_product() -> Product:
    """`<scene>_prob.tif`: v = ceil(255·p)."""
    return Product(
        description="cloud probability: v = ceil(255 * p)",
        tags={VALUES_TAG: PROBABILITY_VALUES,  # what `cloudseg evaluate` reads back
              "CLOUDSEG_SCALE": "v = ceil(255 * p): v means (v - 1)/255 < p <= v/255; "
                                "v > k exactly when p > k/255"},
        resampling="average",
    )


def mask_product(threshold: float) -> Product:
    """`<scene>_mask.tif`: 255 where p > `threshold`, with a colour table."""
    return Product(
        description=f"cloud mask: 255 cloud (p > {threshold:.6g}), 0 clear",
        tags={VALUES_TAG: MASK_VALUES, "CLOUDSEG_THRESHOLD": repr(float(threshold)),
              "CLOUDSEG_MASK": "255 = cloud (p > CLOUDSEG_THRESHOLD), 0 = clear"},
        colormap={0: (0, 0, 0, 255), 255: (255, 255, 255, 255)},
    )


def open_raster(path: str | Path) -> DatasetReader:
    """rasterio.open for reading, quiet about the missing georeference of 38-Cloud TIFFs."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


def read_georef(path: str | Path) -> Georef:
    """The CRS and transform of a raster, or an empty Georef for a plain TIFF."""
    with open_raster(path) as src:
        return Georef(src.crs, src.transform) if src.crs is not None else Georef()


def scene_georef_from_patch(path: str | Path, row: int, col: int, grid: SceneGrid) -> Georef:
    """A georeferenced patch (row, col) → the transform of its scene's top-left pixel, which
    sits at the grid's centred offset on the padded canvas.
    """
    from affine import Affine

    ref = read_georef(path)
    if not ref.present:
        return ref
    (y0, x0), (oy, ox) = grid.patch_origin(row, col), grid.offset
    return Georef(ref.crs, ref.transform @ Affine.translation(ox - x0, oy - y0))


def write_uint8(
    path: str | Path,
    array: np.ndarray,
    georef: Georef = Georef(),
    footprint: np.ndarray | None = None,
    product: Product = Product(),
) -> Path:
    """One-band uint8 Cloud-Optimized GeoTIFF, deflate (level `ZLEVEL`) + horizontal
    predictor, 256×256 tiles, internal overviews, with `footprint` (bool, True = valid) as its
    internal GDAL mask band when given and `product`'s description, tags and colour table.
    Written to a temporary name and renamed; a failure is a CloudsegError naming `path` (also
    when this runs in a background thread) and leaves no partial file.
    """
    import rasterio

    from cloudseg.errors import CloudsegError

    if array.dtype != np.uint8 or array.ndim != 2:
        raise ValueError(f"expected a 2-D uint8 array, got {array.dtype} {array.shape}")
    path = Path(path)
    # The COG driver writes the IFDs first, then the smallest overview's tiles up to the full
    # resolution's (what GDAL's COG validator checks); rasterio buffers the raster in memory
    # and GDAL copies it out on close.
    profile = {
        "driver": "COG",
        "height": array.shape[0],
        "width": array.shape[1],
        "count": 1,
        "dtype": "uint8",
        "compress": "deflate",
        "level": ZLEVEL,
        "predictor": "YES",
        "blocksize": BLOCK,
        "overview_resampling": product.resampling,
    }
    if georef.present:
        profile.update(crs=georef.crs, transform=georef.transform)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(tmp, "w", **profile) as dst:
            dst.write(array, 1)
            if footprint is not None:
                dst.write_mask(np.multiply(footprint, 255, dtype=np.uint8))
            if product.description:
                dst.set_band_description(1, product.description)
            if product.tags:
                dst.update_tags(**product.tags)
            if product.colormap is not None:
                dst.write_colormap(1, product.colormap)
        tmp.replace(path)  # a reader never sees half a mask
    except Exception as err:  # OSError, rasterio/GDAL errors (no common base)
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
        detail = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise CloudsegError(f"{path}: cannot write the GeoTIFF: {detail}") from err
    return path


def to_uint8_probability(prob: np.ndarray, rows: int = 1024) -> np.ndarray:
    """[0, 1] float → ceil(255·p) as uint8 (see the module docstring for why ceil). The product
    is taken in float64, where 255·p of a float32 p is exact, `rows` rows at a time to bound
    the temporary.
    """
    out = np.empty(prob.shape, np.uint8)
    for top in range(0, prob.shape[0], rows):
        scaled = np.multiply(prob[top : top + rows], 255.0, dtype=np.float64)
        np.ceil(scaled, out=scaled)
        np.clip(scaled, 0, 255, out=scaled)
        out[top : top + rows] = scaled
    return out


def above(prob: np.ndarray, threshold: float) -> np.ndarray:
    """`prob > threshold` compared in float64, as Matlab compares: numpy would round the
    threshold to float32 for a float32 array, and float32(12/255) is above 12/255.
    """
    return np.greater(prob, np.float64(threshold))


def to_uint8_mask(prob: np.ndarray, threshold: float) -> np.ndarray:
    """255 where `above(prob, threshold)`, else 0, as uint8 (no int64 temporary)."""
    return np.multiply(above(prob, threshold), 255, dtype=np.uint8)
