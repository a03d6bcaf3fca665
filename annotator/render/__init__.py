"""Rendering, one implementation for the whole project: the synthetic world
(``data/synth``), the pseudo-GT overlays (``evaluation/overlay``) and the body previews.

* :mod:`annotator.render.raster` - the CPU z-buffer rasteriser (fragments, barycentrics,
  vertex normals);
* :mod:`annotator.render.shade` - the one shader (:func:`lambert_shade`, :class:`Light`,
  :data:`DEFAULT_LIGHT`) and the one mesh renderer (:func:`render_meshes` with
  :class:`PerspectiveCameras` or :class:`OrthographicCamera`);
* :mod:`annotator.render.preview` - body preview grids as PNG (``annotator body render``).
"""
from annotator.render.preview import render_grid, render_view, save_png, view_frame
from annotator.render.raster import Fragments, barycentrics, rasterize, vertex_normals
from annotator.render.shade import (
    DEFAULT_LIGHT,
    Light,
    MeshRender,
    OrthographicCamera,
    PerspectiveCameras,
    face_normals,
    lambert_shade,
    render_meshes,
)

__all__ = [
    "DEFAULT_LIGHT", "Fragments", "Light", "MeshRender", "OrthographicCamera", "PerspectiveCameras",
    "barycentrics", "face_normals", "lambert_shade", "rasterize", "render_grid", "render_meshes", "render_view",
    "save_png", "vertex_normals", "view_frame",
]
