"""Body previews: grids of meshes seen from a few yaw angles, as PNG (``annotator body render``).

Orthographic views through the shared renderer (:func:`annotator.render.shade.render_meshes`:
the project's z-buffer, flat-shaded with the default light). Meant for previews and docs.
"""
from __future__ import annotations

import numpy as np
import torch

from annotator.render.shade import DEFAULT_LIGHT, Light, OrthographicCamera, render_meshes

BACKGROUND = (255, 255, 255)
ALBEDO = (0.62, 0.72, 0.86)
TILE_FILL = 0.9
"""Share of a tile the largest extent of the meshes spans (the rest is margin)."""


def render_view(vertices: np.ndarray, faces: np.ndarray, size: tuple[int, int], scale: float,
                center: np.ndarray, light: Light = DEFAULT_LIGHT) -> np.ndarray:
    """Render one mesh seen along +z (view frame: x right, y down, z away), RGB uint8 (H, W, 3).

    ``size`` ``(width, height)``; ``scale`` px per metre; ``center`` (2,) view-frame point
    mapped to the image centre. Each triangle is shaded with its face normal.
    """
    width, height = size
    camera = OrthographicCamera(float(scale), (float(center[0]), float(center[1])), (width, height))
    out = render_meshes(torch.as_tensor(np.asarray(vertices))[None], torch.as_tensor(np.asarray(faces, np.int64)),
                        camera, size, torch.tensor([ALBEDO]), flat=True, light=light)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = BACKGROUND
    mask = out.mask.numpy()
    image[mask] = (out.rgb.numpy()[mask] * 255.0).round().clip(0, 255).astype(np.uint8)
    return image


def view_frame(vertices: np.ndarray, yaw_deg: float) -> np.ndarray:
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
        tiles = [render_view(view_frame(verts, yaw), faces, (tile, tile), scale, center) for yaw in yaws]
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
