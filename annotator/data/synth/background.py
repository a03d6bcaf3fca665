"""Procedural backgrounds: plain studio walls (lab) and cluttered textured scenes (wild).

Everything is drawn with whole-image numpy operations from a seeded generator; a wild
background is a sky/ground gradient with a random horizon, low-frequency value noise
(texture at a few scales), random boxes (buildings, furniture, signs), stripes and
ellipses, and fine grain. None of it looks like a person, so the only people in a
synthetic image are the annotated ones.
"""
from __future__ import annotations

import numpy as np

WILD_NUM_BOXES = (4, 14)
"""Range of the number of random boxes (clutter) in a wild background."""
WILD_NUM_ELLIPSES = (1, 6)
WILD_GRAIN_STD = 0.03
"""Per-pixel grain (std, in [0, 1] intensity units): breaks up flat areas like sensor noise."""
STUDIO_GRAIN_STD = 0.01


def _value_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """``(H, W)`` smooth noise in [0, 1]: a random ``cells x cells`` grid, bilinear upsampling."""
    grid = rng.random((cells + 1, cells + 1))
    ys = np.linspace(0, cells, height, endpoint=False)
    xs = np.linspace(0, cells, width, endpoint=False)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    g00 = grid[y0][:, x0]
    g01 = grid[y0][:, x0 + 1]
    g10 = grid[y0 + 1][:, x0]
    g11 = grid[y0 + 1][:, x0 + 1]
    return (g00 * (1 - fx) + g01 * fx) * (1 - fy) + (g10 * (1 - fx) + g11 * fx) * fy


def _random_colours(rng: np.random.Generator, n: int, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    """``(n, 3)`` RGB in [0, 1] from uniform hue and the given saturation/value ranges."""
    return hsv_to_rgb(rng.random(n), rng.uniform(*sat, n), rng.uniform(*val, n))


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB (all inputs in [0, 1]); returns ``(..., 3)``."""
    h6 = (np.asarray(h) % 1.0) * 6.0
    c = v * s
    x = c * (1 - np.abs(h6 % 2 - 1))
    zero = np.zeros_like(c)
    sector = np.floor(h6).astype(int) % 6
    table = np.stack([
        np.stack([c, x, zero], -1), np.stack([x, c, zero], -1), np.stack([zero, c, x], -1),
        np.stack([zero, x, c], -1), np.stack([x, zero, c], -1), np.stack([c, zero, x], -1),
    ], axis=0)
    rgb = np.take_along_axis(table, sector[None, ..., None].repeat(3, -1), axis=0)[0]
    return rgb + (v - c)[..., None]


def studio_background(rng: np.random.Generator, height: int, width: int, floor_row: float) -> np.ndarray:
    """A plain studio: a flat wall with a soft vertical gradient, a darker floor below ``floor_row``."""
    wall = _random_colours(rng, 1, (0.0, 0.25), (0.45, 0.8))[0]
    floor = wall * rng.uniform(0.45, 0.7)
    rows = np.arange(height, dtype=np.float64)[:, None, None]
    shade = 1.0 - 0.15 * rows / height
    img = np.where(rows < floor_row, wall * shade, floor * (0.9 + 0.1 * rows / height))
    img = np.broadcast_to(img, (height, width, 3)).copy()
    img += rng.normal(0.0, STUDIO_GRAIN_STD, img.shape)
    return np.clip(img, 0.0, 1.0)


def wild_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A cluttered textured scene (see the module docstring)."""
    sky, ground = _random_colours(rng, 2, (0.05, 0.6), (0.3, 0.95))
    horizon = rng.uniform(0.2, 0.7) * height
    rows = np.arange(height, dtype=np.float64)[:, None, None]
    t = np.clip((rows - horizon) / (0.05 * height) + 0.5, 0.0, 1.0)  # soft horizon
    img = np.broadcast_to(sky * (1 - t) + ground * t, (height, width, 3)).copy()
    texture = sum(w * _value_noise(rng, height, width, c) for w, c in ((0.5, 4), (0.3, 12), (0.2, 40)))
    img *= (0.6 + 0.8 * texture)[..., None]

    yy, xx = np.mgrid[0:height, 0:width]
    n_boxes = rng.integers(*WILD_NUM_BOXES, endpoint=True)
    colours = _random_colours(rng, n_boxes, (0.0, 0.9), (0.1, 0.95))
    for k in range(n_boxes):  # a handful of slice assignments per image
        w = int(rng.uniform(0.05, 0.5) * width)
        h = int(rng.uniform(0.05, 0.6) * height)
        x0 = int(rng.uniform(-0.1, 1.0) * width)
        y0 = int(rng.uniform(0.0, 1.0) * height - h / 2)
        ys, xs = slice(max(y0, 0), max(min(y0 + h, height), 0)), slice(max(x0, 0), max(min(x0 + w, width), 0))
        patch = colours[k] * (0.75 + 0.5 * texture[ys, xs, None])
        if rng.random() < 0.35:  # stripes (fences, blinds, shelves)
            period = rng.integers(3, 16)
            axis_coord = yy[ys, xs] if rng.random() < 0.5 else xx[ys, xs]
            patch = patch * np.where((axis_coord // period) % 2 == 0, 1.0, 0.6)[..., None]
        img[ys, xs] = patch
    n_ell = rng.integers(*WILD_NUM_ELLIPSES, endpoint=True)
    centres = rng.random((n_ell, 2)) * (width, height)
    radii = rng.uniform(0.03, 0.2, (n_ell, 2)) * min(width, height)
    ecol = _random_colours(rng, n_ell, (0.0, 0.9), (0.1, 0.95))
    for k in range(n_ell):
        inside = ((xx - centres[k, 0]) / radii[k, 0]) ** 2 + ((yy - centres[k, 1]) / radii[k, 1]) ** 2 <= 1.0
        img[inside] = ecol[k]
    img += rng.normal(0.0, WILD_GRAIN_STD, img.shape)
    return np.clip(img, 0.0, 1.0)
