"""PatchDataset: uint16/uint8 tensors, crops where they should be, augmentation identical on
image and mask, and draws reproducible from the seed whatever the number of workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cloudseg.data import PatchDataset
from cloudseg.errors import ConfigError


def symmetries(a):
    """The 8 images of `a` (..., H, W) under rotations and flips of the square."""
    out = []
    for k in range(4):
        r = np.rot90(a, k, axes=(-2, -1))
        out += [r, r[..., ::-1]]
    return out


def test_items_are_raw_uint16_images_and_01_uint8_masks(synthetic_cache):
    ds = PatchDataset(synthetic_cache, [2, 7])
    image, mask = ds[1]
    assert image.dtype == torch.uint16 and image.shape == (4, 384, 384)
    assert mask.dtype == torch.uint8 and mask.shape == (1, 384, 384)
    np.testing.assert_array_equal(image.numpy(), synthetic_cache.images[7])
    np.testing.assert_array_equal(mask.numpy()[0], synthetic_cache.masks[7])
    assert len(ds) == 2


def test_validation_crop_is_centred(synthetic_cache):
    image, mask = PatchDataset(synthetic_cache, [4], crop=64, random_crop=False)[0]
    np.testing.assert_array_equal(image.numpy(), synthetic_cache.images[4][:, 160:224, 160:224])
    np.testing.assert_array_equal(mask.numpy()[0], synthetic_cache.masks[4][160:224, 160:224])


def test_augmentation_applies_the_same_symmetry_to_image_and_mask(synthetic_cache):
    ds = PatchDataset(synthetic_cache, range(16), augment=True, seed=5)
    used = set()
    for i in range(16):
        image, mask = (t.numpy() for t in ds[i])
        raw_images = symmetries(synthetic_cache.images[i])
        (k,) = [k for k, r in enumerate(raw_images) if np.array_equal(r, image)]
        np.testing.assert_array_equal(mask[0], symmetries(synthetic_cache.masks[i])[k])
        used.add(k)
    assert len(used) >= 4  # the draws really vary


def test_random_crop_is_a_window_of_the_patch_with_its_mask(synthetic_cache):
    ds = PatchDataset(synthetic_cache, range(16), crop=48, seed=1)
    corners = set()
    for i in range(16):
        image, mask = ds[i]
        top, left, _ = ds.window(i)
        corners.add((top, left))
        win = np.s_[top:top + 48, left:left + 48]
        np.testing.assert_array_equal(image.numpy(), synthetic_cache.images[i][(slice(None), *win)])
        np.testing.assert_array_equal(mask.numpy()[0], synthetic_cache.masks[i][win])
    assert len(corners) > 8


def batches(ds, workers):
    loader = DataLoader(ds, batch_size=4, num_workers=workers)
    return [(x.clone(), y.clone()) for x, y in loader]


def test_draws_depend_on_seed_and_epoch_only_not_on_workers(synthetic_cache):
    ds = PatchDataset(synthetic_cache, range(8), crop=32, augment=True, seed=3)
    serial, parallel = batches(ds, 0), batches(ds, 2)
    for (a, b), (c, d) in zip(serial, parallel, strict=True):
        assert a.dtype == torch.uint16 and a.shape == (4, 4, 32, 32)
        assert torch.equal(a, c) and torch.equal(b, d)
    ds.set_epoch(1)
    assert not all(torch.equal(a, c) for (a, _), (c, _) in zip(serial, batches(ds, 0),
                                                               strict=True))
    other = PatchDataset(synthetic_cache, range(8), crop=32, augment=True, seed=4)
    assert not torch.equal(batches(other, 0)[0][0], serial[0][0])


@pytest.mark.parametrize("kwargs", [{"indices": [99]}, {"crop": 500}, {"indices": [[1]]}])
def test_bad_arguments_are_config_errors(synthetic_cache, kwargs):
    with pytest.raises(ConfigError):
        PatchDataset(synthetic_cache, **kwargs)


def test_batched_loader_gives_the_default_collate_batches(synthetic_cache):
    ds = PatchDataset(synthetic_cache, range(10), crop=40, augment=True, seed=2)
    images, masks = ds[[3, 0, 7]]
    assert images.dtype == torch.uint16 and images.shape == (3, 4, 40, 40)
    for k, i in enumerate([3, 0, 7]):
        assert torch.equal(images[k], ds[i][0]) and torch.equal(masks[k], ds[i][1])
    expected = batches(ds, 0)
    for workers in (0, 2):
        got = [(x.clone(), y.clone()) for x, y in ds.loader(4, num_workers=workers)]
        assert len(got) == len(expected) == 3
        assert all(torch.equal(a, c) and torch.equal(b, d)
                   for (a, b), (c, d) in zip(got, expected, strict=True))
    gen = torch.Generator().manual_seed(0)
    shuffled = ds.loader(4, shuffle=True, drop_last=True, generator=gen)
    assert sum(x.shape[0] for x, _ in shuffled) == 8


def test_recycled_batch_buffers_never_overwrite_a_batch_still_held(synthetic_cache):
    ds = PatchDataset(synthetic_cache, range(16), crop=32, augment=True, seed=0)
    held = ds[[0, 1, 2, 3]]
    view = ds[[4, 5, 6, 7]][0][1:]  # a view keeps its batch alive too
    expected = [t.clone() for t in held], view.clone()
    for start in range(8, 16, 2):
        for _ in range(3):
            ds[[start, start + 1, 0, 1]]  # dropped at once: these buffers get reused
    assert all(torch.equal(a, b) for a, b in zip(held, expected[0], strict=True))
    assert torch.equal(view, expected[1])
    a = ds[[9, 10, 11, 12]][0]
    ptr = a.data_ptr()
    del a
    assert ds[[9, 10, 11, 12]][0].data_ptr() == ptr  # and a dropped batch's buffer is reused
