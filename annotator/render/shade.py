"""The one shader and the one mesh renderer: Lambert shading with ambient light of meshes
z-buffered by :func:`annotator.render.raster.rasterize`, seen by perspective cameras
(the synthetic world, the overlays) or an orthographic one (the body previews).

Frames: vertices, normals, view rays and the light direction are all in the camera
(view) frame, OpenCV axes: x right, y down, z forward (away from the viewer).

* :class:`Light` - one distant light and the ambient share; :data:`DEFAULT_LIGHT` is the
  light of the overlays and previews (the synthetic world samples one per image).
* :func:`lambert_shade` - two-sided Lambert shading of surface samples.
* :class:`PerspectiveCameras` / :class:`OrthographicCamera` - screen projection and the
  view ray through every pixel.
* :func:`render_meshes` - ``N`` meshes sharing their faces into one RGB image and mask.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from annotator.geometry.cameras import perspective_projection
from annotator.render.raster import Fragments, barycentrics, rasterize, vertex_normals


@dataclass(frozen=True)
class Light:
    """One distant light plus ambient light (the whole lighting model)."""

    direction: tuple[float, float, float]
    """Unit vector towards the light, in the camera frame (used as given: see :meth:`towards`)."""
    ambient: float
    """Share of the albedo lit regardless of the surface orientation; the rest comes from the light."""

    @classmethod
    def towards(cls, direction, ambient: float) -> "Light":
        """A light towards ``direction`` (any length; normalised in float32)."""
        unit = torch.nn.functional.normalize(torch.as_tensor(direction, dtype=torch.float32), dim=0)
        return cls(direction=tuple(unit.tolist()), ambient=float(ambient))

    def vector(self) -> Tensor:
        """``(3,)`` float32 unit direction towards the light."""
        return torch.tensor(self.direction, dtype=torch.float32)


DEFAULT_LIGHT = Light.towards((0.3, -0.5, -1.0), ambient=0.35)
"""Light of the overlays and body previews: right, above and behind the camera (OpenCV
axes: y down, z forward), so frontal surfaces are lit; an ambient share of 0.35 keeps
the shadowed side of a limb readable."""


def lambert_shade(albedo: Tensor, normal: Tensor, view_dir: Tensor, light: Light) -> Tensor:
    """Two-sided Lambert shading of ``P`` surface samples.

    ``albedo`` ``(P, 3)`` in [0, 1], ``normal`` ``(P, 3)`` (any length), ``view_dir``
    ``(P, 3)`` the camera ray through each sample. Normals are flipped to face the camera
    first (two-sided: the winding of the mesh does not matter), then lit by ``light``:
    ``albedo * (ambient + (1 - ambient) * max(0, n . l))``.
    """
    n = torch.nn.functional.normalize(normal, dim=-1)
    facing = (n * view_dir).sum(dim=-1, keepdim=True)
    n = torch.where(facing > 0, -n, n)
    diffuse = (n * light.vector()).sum(dim=-1, keepdim=True).clamp(min=0.0)
    return albedo * (light.ambient + (1.0 - light.ambient) * diffuse)


@dataclass(frozen=True)
class PerspectiveCameras:
    """One pinhole camera per mesh (square pixels), optionally rendered at another scale."""

    focal: Tensor
    """``(N,)`` focal length in full-image px."""
    principal_point: Tensor
    """``(N, 2)`` in full-image px."""
    scale: tuple[float, float] = (1.0, 1.0)
    """``(sx, sy)``: full-image px -> output px (rendering at tile size)."""

    def project(self, vertices: Tensor) -> Tensor:
        """``(N, V, 3)`` camera-frame vertices -> ``(N, V, 3)`` screen points ``(u, v, z)``
        (output px, depth in metres)."""
        uv = perspective_projection(vertices, self.focal.float(), self.principal_point.float())
        sxy = torch.tensor(self.scale, dtype=torch.float32)
        return torch.cat([uv * sxy, vertices[..., 2:]], dim=-1)

    def rays(self, px: Tensor, py: Tensor, mesh: Tensor) -> Tensor:
        """``(P, 3)`` unit view rays through output pixels ``(px, py)`` of the cameras of ``mesh`` ``(P,)``."""
        sxy = torch.tensor(self.scale, dtype=torch.float32)
        u, v = px / sxy[0], py / sxy[1]  # back in full-image px
        f = self.focal.float()[mesh]
        pp = self.principal_point.float()[mesh]
        ray = torch.stack([(u - pp[:, 0]) / f, (v - pp[:, 1]) / f, torch.ones_like(u)], dim=1)
        return torch.nn.functional.normalize(ray, dim=1)


ORTHO_DEPTH_OFFSET_M = 10.0
"""Nearest surface depth an orthographic view hands to the z-buffer (metres): far beyond
its near plane, and far enough that its perspective-correct depth interpolation is affine
to well under a millimetre."""


@dataclass(frozen=True)
class OrthographicCamera:
    """A view along +z: ``scale`` px per metre, view-frame point ``center`` ``(x, y)`` at the
    centre of a ``size = (width, height)`` image."""

    scale: float
    center: tuple[float, float]
    size: tuple[int, int]

    def project(self, vertices: Tensor) -> Tensor:
        width, height = self.size
        offset = torch.tensor([width / 2.0, height / 2.0], dtype=vertices.dtype)
        uv = (vertices[..., :2] - torch.tensor(self.center, dtype=vertices.dtype)) * self.scale + offset
        # the z-buffer takes camera depths (> its near plane); shifting every depth by the
        # same amount keeps the front-to-back order of this orthographic view
        depth = vertices[..., 2:] - vertices[..., 2].min() + ORTHO_DEPTH_OFFSET_M
        return torch.cat([uv, depth], dim=-1)

    def rays(self, px: Tensor, py: Tensor, mesh: Tensor) -> Tensor:
        return torch.tensor([0.0, 0.0, 1.0]).expand(px.shape[0], 3)


@dataclass
class MeshRender:
    """:func:`render_meshes` output for one ``height x width`` image."""

    rgb: Tensor
    """``(H, W, 3)`` float32 shaded colour in [0, 1] where covered, 0 elsewhere."""
    fragments: Fragments
    face_owner: Tensor
    """``(N * F,)`` mesh index of every rasterised triangle (meshes concatenated in order)."""

    @property
    def mask(self) -> Tensor:
        """``(H, W)`` bool: pixel covered by a mesh."""
        return self.fragments.mask


def face_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """``(B, F, 3)`` unit face normals of ``(B, V, 3)`` meshes sharing ``faces`` ``(F, 3)``."""
    tri = vertices[:, faces]
    n = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    return torch.nn.functional.normalize(n, dim=-1)


def render_meshes(vertices: Tensor, faces: Tensor, camera, size: tuple[int, int], albedo: Tensor, *,
                  normals: Tensor | None = None, flat: bool = False, light: Light = DEFAULT_LIGHT) -> MeshRender:
    """Render ``N`` meshes into one ``size = (width, height)`` image through one z-buffer
    (the nearest surface wins across meshes), shaded by :func:`lambert_shade`.

    ``vertices`` ``(N, V, 3)`` camera frame (metres), ``faces`` ``(F, 3)`` shared;
    ``camera`` a :class:`PerspectiveCameras` (one per mesh) or :class:`OrthographicCamera`.
    ``albedo``: ``(N, 3)`` one colour per mesh, or ``(N, V, 3)`` per vertex (interpolated).
    ``normals``: ``(N, V, 3)`` vertex normals (interpolated; default: area-weighted ones of
    ``vertices``); ``flat`` shades each triangle with its face normal instead.
    """
    width, height = size
    n_meshes, n_verts = vertices.shape[:2]
    faces = faces.long()
    n_faces = faces.shape[0]
    vertices = vertices.float()
    points = camera.project(vertices).reshape(-1, 3)
    all_faces = (faces[None] + (torch.arange(n_meshes) * n_verts)[:, None, None]).reshape(-1, 3)
    owner = torch.div(torch.arange(n_meshes * n_faces), n_faces, rounding_mode="floor")
    frags = rasterize(points, all_faces, height, width)
    pix, face, bary = barycentrics(points, all_faces, frags)
    corners = all_faces[face]  # (P, 3)
    mesh = owner[face]
    if albedo.dim() == 2:
        colour = albedo.float()[mesh]
    else:
        colour = (albedo.reshape(-1, 3)[corners] * bary[..., None]).sum(1)
    if flat:
        normal = face_normals(vertices, faces).reshape(-1, 3)[face]
    else:
        normals = vertex_normals(vertices, faces) if normals is None else normals
        normal = (normals.reshape(-1, 3)[corners] * bary[..., None]).sum(1)
    px = (pix % width).float() + 0.5
    py = torch.div(pix, width, rounding_mode="floor").float() + 0.5
    rgb = torch.zeros(height * width, 3)
    rgb[pix] = lambert_shade(colour, normal, camera.rays(px, py, mesh), light)
    return MeshRender(rgb=rgb.view(height, width, 3), fragments=frags, face_owner=owner)
