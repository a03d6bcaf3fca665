"""Decode + CLIFF crop geometry, draft/reduce paths, per-row errors, normalisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from annotator.data import images as images_mod
from annotator.data.images import IMAGENET_MEAN, IMAGENET_STD, image_size, load_crops, normalize_images

W, H = 640, 480


def _gradient(path, fmt):
    """R encodes x, G encodes y (pixel centre i + 0.5 has value i * 255 / (size - 1))."""
    x = np.linspace(0, 255, W)[None, :].repeat(H, 0)
    y = np.linspace(0, 255, H)[:, None].repeat(W, 1)
    rgb = np.stack([x, y, np.full_like(x, 128)], -1).round().astype(np.uint8)
    Image.fromarray(rgb).save(path, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return str(path)


def _expected(crops, i, size):
    """Gradient value at every crop pixel centre, mapped back with the inverse affine."""
    a = crops.affine[i].astype(np.float64)
    inv = np.linalg.inv(a[:, :2])
    uv = np.stack(np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="xy"), -1)
    full = (uv - a[:, 2]) @ inv.T
    return (full[..., 0] - 0.5) * 255 / (W - 1), (full[..., 1] - 0.5) * 255 / (H - 1), full


@pytest.mark.parametrize("fmt,tol", [("PNG", 2.0), ("JPEG", 4.0)])
def test_crop_geometry_matches_affine(tmp_path, fmt, tol):
    path = _gradient(tmp_path / f"g.{fmt.lower()}", fmt)
    boxes = np.array([[200.0, 100.0, 120.0, 200.0],    # mild downscale
                      [100.0, 40.0, 400.0, 380.0]])   # shrink > 4: draft (JPEG) / reduce (PNG) path
    size = 64
    crops = load_crops([path, path], boxes, size, 1.2)
    assert crops.ok.all() and crops.images.shape == (2, 3, size, size) and crops.images.dtype == np.uint8
    np.testing.assert_allclose(crops.center, [[260, 200], [300, 230]])
    np.testing.assert_allclose(crops.box_size, [240, 480])
    np.testing.assert_array_equal(crops.image_size, [[W, H], [W, H]])
    for i in range(2):
        ex, ey, full = _expected(crops, i, size)
        inside = (full[..., 0] > 2) & (full[..., 0] < W - 2) & (full[..., 1] > 2) & (full[..., 1] < H - 2)
        img = crops.images[i].astype(np.float64)
        assert np.abs(img[0][inside] - ex[inside]).mean() < tol
        assert np.abs(img[1][inside] - ey[inside]).mean() < tol
        outside = (full[..., 0] < -1) | (full[..., 0] > W + 1) | (full[..., 1] < -1) | (full[..., 1] > H + 1)
        assert (img[:, outside] == 0).all()  # zero padding
    assert (~((_expected(crops, 1, size)[2][..., 1]) > -1)).any()  # box 1 does reach past the top edge


def test_bad_rows_do_not_break_the_batch_and_images_decode_once(tmp_path, monkeypatch):
    good = _gradient(tmp_path / "g.jpg", "JPEG")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    calls = []
    real = images_mod._read  # every image read (local: a regular-file check, then the bytes)
    monkeypatch.setattr(images_mod, "_read", lambda p: calls.append(p) or real(p))
    paths = [good, str(tmp_path / "missing.jpg"), good, str(tmp_path / "bad.jpg"), good]
    boxes = np.array([[10, 10, 50, 80], [10, 10, 50, 80], [300, 200, 60, 60], [0, 0, 10, 10], [0, 0, 0, 0]], float)
    crops = load_crops(paths, boxes, 32, 1.2)
    assert crops.ok.tolist() == [True, False, True, False, False]
    assert crops.reasons == [None, "missing_image", None, "corrupt_image", "invalid_value"]
    assert "missing.jpg" in crops.errors[1]
    assert (crops.images[1] == 0).all() and crops.images[0].any()
    assert sorted(calls) == sorted([good, str(tmp_path / "missing.jpg"), str(tmp_path / "bad.jpg")])


def test_real_coco_crops_and_header(real_fixtures):
    path = str(real_fixtures / "coco" / "000000000785.jpg")
    assert image_size(path) == (640, 425)
    crops = load_crops([path], np.array([[280.79, 44.73, 218.7, 346.68]]), 96, 1.2)
    assert crops.ok[0] and crops.images[0].std() > 10
    centre = crops.affine[0] @ np.array([280.79 + 218.7 / 2, 44.73 + 346.68 / 2, 1.0])
    np.testing.assert_allclose(centre, [48, 48], atol=1e-4)


def test_normalize_images():
    img = np.zeros((1, 3, 2, 2), np.uint8)
    img[0, :, 0, 0] = 255
    out = normalize_images(img)
    assert out.dtype == torch.float32 and out.shape == (1, 3, 2, 2)
    np.testing.assert_allclose(out[0, :, 0, 0], (1 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD), rtol=1e-6)
    np.testing.assert_allclose(out[0, :, 1, 1], -np.array(IMAGENET_MEAN) / np.array(IMAGENET_STD), rtol=1e-6)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("box", [[330.0, 150.0, 120.0, 160.0], [60.0, 20.0, 420.0, 440.0]])
def test_crop_places_a_blob_where_the_affine_says(tmp_path, fmt, box):
    """Sub-pixel check: a bright square's centroid lands at affine @ its true centre."""
    rgb = np.zeros((H, W, 3), np.uint8)
    x0, y0, side = 380, 210, 16  # square covers [380, 396) x [210, 226): centre (388, 218)
    rgb[y0:y0 + side, x0:x0 + side] = 255
    path = tmp_path / f"blob.{fmt.lower()}"
    Image.fromarray(rgb).save(path, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    crops = load_crops([str(path)], np.array([box]), 96, 1.2)
    img = crops.images[0, 0].astype(np.float64)
    img[img < 40] = 0  # JPEG ringing
    v, u = np.mgrid[0:96, 0:96] + 0.5
    centroid = np.array([(img * u).sum(), (img * v).sum()]) / img.sum()
    expected = crops.affine[0] @ np.array([x0 + side / 2, y0 + side / 2, 1.0])
    np.testing.assert_allclose(centroid, expected, atol=0.15)


def test_a_crop_does_not_depend_on_its_batch(real_fixtures):
    """Same row, alone or batched with a much smaller box of the same image: same pixels."""
    from annotator.data.images import load_crops

    img = str(real_fixtures / "coco" / "000000196141.jpg")
    big, small = [0.0, 0.0, 600.0, 420.0], [450.0, 200.0, 40.0, 60.0]
    alone = load_crops([img], np.array([big]), 64, 1.2)
    mixed = load_crops([img, img], np.array([big, small]), 64, 1.2)
    assert alone.ok.all() and mixed.ok.all()
    np.testing.assert_array_equal(mixed.images[0], alone.images[0])
