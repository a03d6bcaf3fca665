"""Small CPU mesh renderer for PNG previews (numpy only, no OpenGL).

Orthographic projection, the project's vectorised z-buffer (the synthetic world's
rasteriser) and per-face Lambert shading. Meant for previews and docs.
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
ORTHO_DEPTH_OFFSET_M = 10.0
"""Nearest surface depth handed to the z-buffer (metres): far beyond its near plane, and far
enough that its perspective-correct depth interpolation is affine to well under a millimetre."""


def rasterize(vertices: np.ndarray, faces: np.ndarray, size: tuple[int, int],
              scale: float, center: np.ndarray) -> np.ndarray:
    """Render one mesh seen along +z (view frame: x right, y down, z away), RGB uint8 (H, W, 3).

    ``scale`` px per metre; ``center`` (2,) view-frame point mapped to the image centre.
    Visibility comes from the project's z-buffer (:func:`annotator.render.raster.rasterize`).
    """
    import torch

    from annotator.render.raster import rasterize as zbuffer

    w, h = size
    px = (vertices[:, :2] - center) * scale + np.array([w / 2.0, h / 2.0])
    # the z-buffer takes camera depths (> its near plane); shifting every depth by the same
    # amount keeps the front-to-back order of this orthographic view
    depth = vertices[:, 2] - vertices[:, 2].min() + ORTHO_DEPTH_OFFSET_M
    frags = zbuffer(torch.from_numpy(np.column_stack([px, depth])), torch.from_numpy(np.asarray(faces, np.int64)), h, w)
    e1 = vertices[faces[:, 1]] - vertices[faces[:, 0]]
    e2 = vertices[faces[:, 2]] - vertices[faces[:, 0]]
    normal = np.cross(e1, e2)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    light = LIGHT_DIR / np.linalg.norm(LIGHT_DIR)
    shade = AMBIENT + (1 - AMBIENT) * np.abs(normal @ light)  # two-sided Lambert
    fid = frags.face_index.numpy()
    image = np.empty((h, w, 3))
    image[:] = np.array(BACKGROUND) / 255.0
    image[fid >= 0] = ALBEDO * shade[fid[fid >= 0], None]
    return (image * 255).round().astype(np.uint8)


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
