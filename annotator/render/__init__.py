"""Rendering: the one CPU z-buffer rasteriser and its Lambert shading helpers
(:mod:`annotator.render.raster`), used by the synthetic world (``data/synth``), the
pseudo-GT overlays (``evaluation/overlay``) and the body previews (``body/render``)."""
from annotator.render.raster import Fragments, barycentrics, lambert_shade, rasterize, vertex_normals

__all__ = ["Fragments", "barycentrics", "lambert_shade", "rasterize", "vertex_normals"]
