"""Image access: header checks, decode + CLIFF person crops, normalisation.

Bytes are read through :mod:`annotator.storage` (so ``s3://`` works) and decoded with
PIL. Crops follow the pixel and crop conventions of :mod:`annotator.geometry.crop`
(square side ``bbox_scale * max(w, h)`` centred on the box, zero padding outside the
image); the returned ``affine`` maps full-image px to crop px.

Speed: rows are grouped by image so each image is read and decoded once per batch (reads
from object stores run concurrently, they are latency-bound); JPEGs are
decoded with ``draft`` (DCT-domain downscale by 1/2, 1/4 or 1/8) when every crop of the
image is downscaled at least that much, and other formats are box-reduced first, so the
final bilinear resample shrinks by less than a factor of 2 (no aliasing).

A missing or corrupt image never raises for the batch: the row gets ``ok=False`` and an
error (``reason`` code ``missing_image``/``corrupt_image``/``image_too_large`` + text) for
the rejects table.

Hostile files: only regular files are opened (a FIFO or device is refused before any read),
every read has a timeout (:data:`READ_TIMEOUT_S`), images over the pixel limit are refused
from the header without decoding, and the EXIF orientation is applied the same way to the
header size (manifest time) and to the decoded pixels (crop time), so sizes, boxes and
keypoints all live in the displayed frame.
"""
from __future__ import annotations

import io
import os
import stat
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from annotator import storage
from annotator.config import DEFAULT_MAX_IMAGE_PIXELS, MAX_PIXELS_ENV
from annotator.geometry.crop import bbox_to_center_size, crop_affine, invert_affine

#: ImageNet channel statistics the ResNet backbones are built around (RGB, [0, 1] scale).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Threads for concurrent reads (I/O bound: on object stores each GET is latency-bound).
IO_THREADS = 8
#: Seconds one image read (header or whole file) may take before the image is rejected.
READ_TIMEOUT_S = 60.0
_EXIF_ORIENTATION = 0x0112
#: EXIF orientation -> the transpose that turns the stored pixels into the displayed image
#: (as PIL.ImageOps.exif_transpose does).
_ORIENT_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# The pixel limit is ours (manifest.max_image_pixels, checked from the header); PIL's warning
# between its own limit and twice it would only repeat that. PIL still refuses beyond twice it.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageReadError(Exception):
    """An image cannot be used; ``reason`` is a rejects code, ``str(err)`` the detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def decode_pixel_limit() -> int:
    """The most pixels an image may have to be decoded: ``$ANNOTATOR_MAX_IMAGE_PIXELS`` (the
    job's ``manifest.max_image_pixels``, set by the driver) or the default."""
    try:
        return max(1, int(os.environ.get(MAX_PIXELS_ENV, DEFAULT_MAX_IMAGE_PIXELS)))
    except ValueError:
        return DEFAULT_MAX_IMAGE_PIXELS


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1-8) of an opened image, from its header; 1 if absent/invalid."""
    try:
        value = int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - a malformed EXIF block is the same as none
        return 1
    return value if value in _ORIENT_TRANSPOSE or value == 1 else 1


def displayed_size(img: Image.Image) -> tuple[int, int]:
    """``(width, height)`` as the image is displayed (EXIF orientation applied): the frame
    COCO-style annotations are made in."""
    w, h = int(img.size[0]), int(img.size[1])
    return (h, w) if exif_orientation(img) in (5, 6, 7, 8) else (w, h)


def _check_pixels(path: str, size: tuple[int, int], limit: int) -> None:
    if size[0] * size[1] > limit:
        raise ImageReadError("image_too_large", f"{storage.redact(path)}: {size[0]}x{size[1]} = "
                                                f"{size[0] * size[1]} pixels > manifest.max_image_pixels={limit}")


def _with_timeout(fn, path: str, timeout: float | None = None):
    """``fn()`` in a daemon thread; an :class:`ImageReadError` if it takes over ``timeout`` s
    (a stalled network read or device must not hang the dataset; the thread is abandoned)."""
    timeout = READ_TIMEOUT_S if timeout is None else timeout
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = err

    t = threading.Thread(target=target, daemon=True, name="image-read")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise ImageReadError("corrupt_image", f"{storage.redact(path)}: read timed out after {timeout:g} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


def _open_local(path: str) -> io.BufferedReader:
    """A local image file opened for reading, only if it is a regular file (never blocks on a
    FIFO or device: opened non-blocking and checked with fstat before any read)."""
    local = storage.local_path(path)
    try:
        fd = os.open(local, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ImageReadError("missing_image", f"{storage.redact(path)}: image not found") from None
    except OSError as err:
        raise ImageReadError("missing_image", f"{storage.redact(path)}: cannot open image: {err.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ImageReadError("corrupt_image", f"{storage.redact(path)}: not a regular file")
    if st.st_size == 0:
        os.close(fd)
        raise ImageReadError("corrupt_image", f"{storage.redact(path)}: empty file (0 bytes)")
    return os.fdopen(fd, "rb")


def _read(path: str) -> bytes:
    def read() -> bytes:
        if not storage.is_remote(path):
            with _open_local(path) as fh:
                return fh.read()
        try:
            data = storage.read_bytes(path)
        except FileNotFoundError:
            raise ImageReadError("missing_image", f"{storage.redact(path)}: image not found") from None
        except OSError as err:
            raise ImageReadError("missing_image", f"{storage.redact(path)}: cannot read image: {err}") from None
        if not data:
            raise ImageReadError("corrupt_image", f"{storage.redact(path)}: empty file (0 bytes)")
        return data

    return _with_timeout(read, path)


def _read_all(paths: Sequence[str]) -> list[bytes | ImageReadError]:
    """Bytes of every path; remote reads run concurrently (latency-bound), local ones in order."""

    def one(p: str) -> bytes | ImageReadError:
        try:
            return _read(p)
        except ImageReadError as err:
            return err

    if len(paths) <= 1 or not any(storage.is_remote(p) for p in paths):
        return [one(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(IO_THREADS, len(paths))) as pool:
        return list(pool.map(one, paths))


def _unreadable(path: str, err: Exception) -> ImageReadError:
    if isinstance(err, Image.DecompressionBombError):
        return ImageReadError("image_too_large", f"{storage.redact(path)}: {err}")
    if isinstance(err, UnidentifiedImageError):  # its text names a file object, not the path
        return ImageReadError("corrupt_image", f"{storage.redact(path)}: not a readable image (unknown format)")
    return ImageReadError("corrupt_image", f"{storage.redact(path)}: not a readable image: {err}")


def _open(path: str, data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise _unreadable(path, err) from None


def image_size(path: str, max_pixels: int | None = None) -> tuple[int, int]:
    """``(width, height)`` as displayed (EXIF orientation applied), from the image header,
    never decoding the pixels (raises :class:`ImageReadError`: missing, not a regular file,
    empty, unreadable, more than ``max_pixels``, or a read over :data:`READ_TIMEOUT_S`)."""

    def header() -> tuple[int, int]:
        fh = _open_local(path) if not storage.is_remote(path) else storage.open_file(path, "rb")
        try:
            with fh, Image.open(fh) as img:
                return displayed_size(img)
        except FileNotFoundError:
            raise ImageReadError("missing_image", f"{storage.redact(path)}: image not found") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise _unreadable(path, err) from None

    try:
        size = _with_timeout(header, path)
    except FileNotFoundError:
        raise ImageReadError("missing_image", f"{storage.redact(path)}: image not found") from None
    if max_pixels is not None:
        _check_pixels(path, size, max_pixels)
    return size


def image_sizes(paths: Sequence[str], max_pixels: int | None = None) -> list[tuple[int, int] | ImageReadError]:
    """Header sizes of many images (threaded); failures are returned, not raised."""

    def one(p: str) -> tuple[int, int] | ImageReadError:
        try:
            return image_size(p, max_pixels)
        except ImageReadError as err:
            return err

    if len(paths) <= 1:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(IO_THREADS, len(paths))) as pool:
        return list(pool.map(one, paths))


@dataclass
class CropBatch:
    """Crops of N person boxes (numpy, ready for Ray Data batches).

    ``images`` (N, 3, S, S) uint8 RGB (zeros where ``~ok``); ``center`` (N, 2) and
    ``box_size`` (N,) the square crop box in full-image px; ``affine`` (N, 2, 3) full-image
    px -> crop px; ``image_size`` (N, 2) full image (w, h) (0 where ``~ok``); ``ok`` (N,)
    bool; ``reasons``/``errors`` per row: rejects reason code and detail, ``None`` if ok.
    """

    images: np.ndarray
    center: np.ndarray
    box_size: np.ndarray
    affine: np.ndarray
    image_size: np.ndarray
    ok: np.ndarray
    reasons: list[str | None]
    errors: list[str | None]


def _decode_reduced(img: Image.Image, shrink: float) -> tuple[Image.Image, float]:
    """Decode ``img`` reduced by an integer factor when every crop shrinks by >= ``shrink``.

    The factor is at most ``floor(shrink)``, so crops keep at least their output
    resolution and the final bilinear resample shrinks by less than 2 (no aliasing).
    Returns the RGB image and its exact scale (reduced px per full px).
    """
    full_w = img.size[0]
    target = max(1, int(shrink))
    if target >= 2 and img.format == "JPEG":
        # DCT-domain decode at 1/2, 1/4 or 1/8: the largest of those <= 1/target.
        img.draft("RGB", (max(1, -(-img.size[0] // target)), max(1, -(-img.size[1] // target))))
    drafted = max(1, round(full_w / img.size[0]))  # 1, 2, 4 or 8 (sizes are rounded up)
    img = img.convert("RGB")
    rest = target // drafted
    if rest >= 2:
        img = img.reduce(rest)  # box filter; maps coordinates by exactly 1/rest
    else:
        rest = 1
    return img, 1.0 / (drafted * rest)


def _crop_one_image(path: str, data: bytes, inverse: np.ndarray, side: np.ndarray, crop_size: int) -> np.ndarray:
    """All crops of one image: ``inverse`` (M, 2, 3) crop px -> full px; returns (M, S, S, 3).

    The reduced decode factor is chosen per crop from its own box size, and the image is
    decoded once per distinct factor, so a crop's pixels never depend on which other
    people happen to share its batch (results are the same however rows are batched)."""
    factors = np.maximum(1, (side / crop_size).astype(np.int64))
    out = np.empty((len(inverse), crop_size, crop_size, 3), dtype=np.uint8)
    for factor in np.unique(factors):
        with _open(path, data) as img:
            orientation = exif_orientation(img)
            reduced, scale = _decode_reduced(img, float(factor))
        if orientation in _ORIENT_TRANSPOSE:  # into the displayed frame (scale is the same on both axes)
            reduced = reduced.transpose(_ORIENT_TRANSPOSE[orientation])
        to_reduced = np.diag([scale, scale])
        for k in np.nonzero(factors == factor)[0]:  # one C resample call per crop
            m = to_reduced @ inverse[k]  # crop px -> reduced-image px
            coeffs = (m[0, 0], m[0, 1], m[0, 2], m[1, 0], m[1, 1], m[1, 2])
            crop = reduced.transform((crop_size, crop_size), Image.Transform.AFFINE, coeffs,
                                     resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
            out[k] = np.asarray(crop)
    return out


def load_crops(image_paths: Sequence[str], bboxes: np.ndarray, crop_size: int, bbox_scale: float,
               max_pixels: int | None = None) -> CropBatch:
    """Decode and crop N person boxes ``bboxes`` (N, 4) x, y, w, h of ``image_paths``.

    Each distinct image is read once (and decoded once per reduction factor). Rows whose image is missing/corrupt,
    has more than ``max_pixels`` (default :func:`decode_pixel_limit`; checked from the header, before decoding),
    or whose box is degenerate get ``ok=False`` and a reason; the others are unaffected.
    """
    max_pixels = decode_pixel_limit() if max_pixels is None else max_pixels
    n = len(image_paths)
    bboxes = np.asarray(bboxes, dtype=np.float64).reshape(n, 4)
    center_t, side_t = bbox_to_center_size(torch.from_numpy(bboxes), bbox_scale)
    affine_t = crop_affine(center_t, side_t.clamp_min(1e-6), float(crop_size))
    inverse = invert_affine(affine_t).numpy()
    center, side, affine = center_t.numpy(), side_t.numpy(), affine_t.numpy()

    images = np.zeros((n, crop_size, crop_size, 3), dtype=np.uint8)
    sizes = np.zeros((n, 2), dtype=np.int32)
    ok = np.zeros(n, dtype=bool)
    reasons: list[str | None] = [None] * n
    errors: list[str | None] = [None] * n
    good_box = np.isfinite(bboxes).all(1) & (side > 0)
    for i in np.nonzero(~good_box)[0]:
        reasons[i], errors[i] = "invalid_value", f"row {i}: degenerate bbox {bboxes[i].tolist()}"

    paths = np.asarray([str(p) for p in image_paths], dtype=object)
    todo = np.nonzero(good_box)[0]
    uniq, which = np.unique(paths[todo], return_inverse=True)
    groups = np.split(todo[np.argsort(which, kind="stable")], np.cumsum(np.bincount(which, minlength=len(uniq)))[:-1])
    for path, data, rows in zip(uniq, _read_all(list(uniq)), groups):  # each image read and decoded once
        try:
            if isinstance(data, ImageReadError):
                raise data
            with _open(path, data) as img:
                size = displayed_size(img)
            _check_pixels(path, size, max_pixels)
            sizes[rows] = size
            images[rows] = _crop_one_image(path, data, inverse[rows], side[rows], crop_size)
            ok[rows] = True
        except ImageReadError as err:
            for i in rows:
                reasons[i], errors[i] = err.reason, str(err)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:  # truncated/corrupt data
            for i in rows:
                reasons[i], errors[i] = "corrupt_image", f"{storage.redact(path)}: cannot decode image: {err}"
            sizes[rows] = 0
    return CropBatch(images=np.ascontiguousarray(images.transpose(0, 3, 1, 2)), center=center.astype(np.float32),
                     box_size=side.astype(np.float32), affine=affine.astype(np.float32), image_size=sizes,
                     ok=ok, reasons=reasons, errors=errors)


def normalize_images(images: np.ndarray | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """(N, 3, S, S) uint8 RGB -> float32 tensor ``(x / 255 - IMAGENET_MEAN) / IMAGENET_STD``."""
    t = torch.as_tensor(images, device=device)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=t.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=t.device).view(1, 3, 1, 1)
    return (t.float() / 255.0 - mean) / std
