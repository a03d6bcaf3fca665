"""Small CPU mesh renderer for PNG previews (numpy only, no OpenGL).

Orthographic projection, vectorised z-buffer rasterisation and per-face Lambert shading.
Every face is rasterised over the pixel centres of its bounding box at once (faces are a
few pixels wide at preview resolution, so the work is F x (largest box side)^2); the
nearest face per pixel wins by a sort.
Meant for previews and docs, not for training images.
"""
from __future__ import annotations

import numpy as np

AMBIENT = 0.25
"""Share of the albedo lit regardless of the surface orientation."""
LIGHT_DIR = np.array([0.3, -0.4, -1.0])
"""Direction towards the light in the view frame (x right, y down, z away from the viewer)."""
BACKGROUND = (255, 255, 255)
ALBEDO = np.array([0.62, 0.72, 0.86])
TILE_FILL = 0.9
"""Share of a tile the largest extent of the meshes spans (the rest is margin)."""


def rasterize(vertices: np.ndarray, faces: np.ndarray, size: tuple[int, int],
              scale: float, center: np.ndarray) -> np.ndarray:
    """Render one mesh seen along +z (view frame: x right, y down, z away), RGB uint8 (H, W, 3).

    ``scale`` px per metre; ``center`` (2,) view-frame point mapped to the image centre.
    """
    w, h = size
    px = (vertices[:, :2] - center) * scale + np.array([w / 2.0, h / 2.0])
    tri = px[faces]  # (F, 3, 2)
    depth = vertices[faces, 2]  # (F, 3)
    e1 = vertices[faces[:, 1]] - vertices[faces[:, 0]]
    e2 = vertices[faces[:, 2]] - vertices[faces[:, 0]]
    normal = np.cross(e1, e2)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    light = LIGHT_DIR / np.linalg.norm(LIGHT_DIR)
    shade = AMBIENT + (1 - AMBIENT) * np.abs(normal @ light)  # two-sided Lambert

    lo = np.floor(tri.min(1)).astype(int)
    hi = np.ceil(tri.max(1)).astype(int)
    span = int(max(1, (hi - lo).max()))
    oy, ox = np.mgrid[0:span + 1, 0:span + 1]
    cx = lo[:, None, 0] + ox.reshape(1, -1) + 0.5  # (F, S) pixel centres
    cy = lo[:, None, 1] + oy.reshape(1, -1) + 0.5
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    ok = np.abs(den) > 1e-12
    den = np.where(ok, den, 1.0)[:, None]
    l0 = ((b[:, None, 1] - c[:, None, 1]) * (cx - c[:, None, 0]) + (c[:, None, 0] - b[:, None, 0]) * (cy - c[:, None, 1])) / den
    l1 = ((c[:, None, 1] - a[:, None, 1]) * (cx - c[:, None, 0]) + (a[:, None, 0] - c[:, None, 0]) * (cy - c[:, None, 1])) / den
    l2 = 1 - l0 - l1
    inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0) & ok[:, None]
    inside &= (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    z = l0 * depth[:, None, 0] + l1 * depth[:, None, 1] + l2 * depth[:, None, 2]
    fid = np.broadcast_to(np.arange(len(faces))[:, None], inside.shape)[inside]
    pix = (cy[inside].astype(int) * w + cx[inside].astype(int))
    z = z[inside]
    order = np.lexsort((z, pix))  # per pixel, nearest first
    pix, fid = pix[order], fid[order]
    first = np.ones(len(pix), bool)
    first[1:] = pix[1:] != pix[:-1]
    image = np.empty((h * w, 3))
    image[:] = np.array(BACKGROUND) / 255.0
    image[pix[first]] = ALBEDO * shade[fid[first], None]
    return (image.reshape(h, w, 3) * 255).round().astype(np.uint8)


def _view_frame(vertices: np.ndarray, yaw_deg: float) -> np.ndarray:
    """SMPL-frame vertices (y-up, facing +z) -> view frame of a camera in front of the body
    (x right, y down, z away), turned by ``yaw_deg`` about the vertical axis."""
    t = np.deg2rad(yaw_deg)
    rot_y = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
    v = vertices @ rot_y.T
    return v * np.array([1.0, -1.0, -1.0])  # 180 deg about x: the OpenCV camera convention


def render_grid(meshes: list[np.ndarray], faces: np.ndarray, yaws=(0.0, 90.0), tile: int = 320) -> np.ndarray:
    """Rows = meshes (SMPL frame), columns = views (yaw degrees). RGB uint8 image."""
    allv = np.concatenate(meshes)
    extent = float(np.ptp(allv, axis=0).max())
    scale = TILE_FILL * tile / extent
    rows = []
    for verts in meshes:
        center = np.array([0.0, -float(verts[:, 1].min() + verts[:, 1].max()) / 2])
        tiles = [rasterize(_view_frame(verts, yaw), faces, (tile, tile), scale, center) for yaw in yaws]
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def save_png(image: np.ndarray, path: str) -> None:
    """Write an RGB uint8 image through the storage layer (local or s3://)."""
    import io

    from PIL import Image

    from annotator import storage

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    storage.write_bytes_atomic(path, buf.getvalue())
