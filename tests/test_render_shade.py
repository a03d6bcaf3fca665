"""The one shader and mesh renderer (:mod:`annotator.render.shade`): the light, per-mesh
and per-vertex albedo, perspective and orthographic cameras, the synthetic world's use."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from annotator.render import (
    DEFAULT_LIGHT,
    Light,
    OrthographicCamera,
    PerspectiveCameras,
    lambert_shade,
    render_meshes,
)

QUAD_FACES = torch.tensor([[0, 1, 2], [0, 2, 3]])


def _quad(half: float, z: float) -> torch.Tensor:
    """A square facing the camera, ``(1, 4, 3)`` camera frame, centred on the optical axis."""
    return torch.tensor([[[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]]])


def _lit(albedo, light: Light) -> np.ndarray:
    """A surface facing the camera (normal -z after the two-sided flip), written out."""
    return np.asarray(albedo) * (light.ambient + (1 - light.ambient) * max(0.0, -light.direction[2]))


def test_light_is_unit_and_defined_once():
    assert math.isclose(float(np.linalg.norm(DEFAULT_LIGHT.direction)), 1.0, rel_tol=1e-6)
    assert DEFAULT_LIGHT.direction[1] < 0 and DEFAULT_LIGHT.direction[2] < 0  # above, camera side
    light = Light.towards((0.0, 0.0, -2.0), 0.5)
    assert light.direction == (0.0, 0.0, -1.0) and light.ambient == 0.5


def test_two_sided_lambert_ignores_winding():
    normal = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    view = torch.tensor([0.0, 0.0, 1.0]).expand(2, 3)
    light = Light(direction=(0.0, -0.6, -0.8), ambient=0.25)
    shade = lambert_shade(torch.ones(2, 3), normal, view, light)
    assert torch.allclose(shade, torch.full((2, 3), 0.25 + 0.75 * 0.8))
    back = Light(direction=(0.0, 0.0, 1.0), ambient=0.25)  # light behind the surface: ambient only
    assert torch.allclose(lambert_shade(torch.ones(2, 3), normal, view, back), torch.full((2, 3), 0.25))


@pytest.mark.parametrize("flat", [False, True])
def test_perspective_quad_coverage_and_shading(flat):
    verts = _quad(0.5, 5.0)  # 1 m square at 5 m, f = 100 px: 20 px wide, centred at (32, 24)
    cams = PerspectiveCameras(torch.tensor([100.0]), torch.tensor([[32.0, 24.0]]))
    albedo = torch.tensor([[0.2, 0.4, 0.8]])
    out = render_meshes(verts, QUAD_FACES, cams, (64, 48), albedo, flat=flat)
    assert out.rgb.shape == (48, 64, 3) and out.mask.shape == (48, 64)
    assert out.mask[14:34, 22:42].all() and int(out.mask.sum()) == 400
    assert (out.rgb[~out.mask] == 0).all()
    # the centre pixel looks straight down the axis: exactly the written-out Lambert value
    assert np.allclose(out.rgb[24, 32].numpy(), _lit(albedo[0], DEFAULT_LIGHT), atol=1e-3)
    assert out.face_owner.tolist() == [0, 0]


def test_per_vertex_albedo_is_interpolated_and_per_mesh_albedo_owns_its_faces():
    verts = torch.cat([_quad(0.5, 5.0) + torch.tensor([-1.0, 0, 0]), _quad(0.5, 5.0) + torch.tensor([1.0, 0, 0])])
    cams = PerspectiveCameras(torch.tensor([100.0, 100.0]), torch.tensor([[32.0, 24.0]] * 2))
    per_mesh = render_meshes(verts, QUAD_FACES, cams, (64, 48), torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]))
    left, right = per_mesh.rgb[24, 12], per_mesh.rgb[24, 52]
    assert left[0] > 0 and left[2] == 0 and right[2] > 0 and right[0] == 0
    assert per_mesh.face_owner.tolist() == [0, 0, 1, 1]
    per_vertex = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])[:, None].expand(2, 4, 3)
    interp = render_meshes(verts, QUAD_FACES, cams, (64, 48), per_vertex)
    assert torch.equal(interp.mask, per_mesh.mask)
    assert torch.allclose(interp.rgb, per_mesh.rgb, atol=1e-5)


def test_scaled_perspective_render_matches_a_smaller_camera():
    verts = _quad(0.5, 5.0)
    full = PerspectiveCameras(torch.tensor([200.0]), torch.tensor([[64.0, 48.0]]), scale=(0.5, 0.5))
    small = PerspectiveCameras(torch.tensor([100.0]), torch.tensor([[32.0, 24.0]]))
    a = render_meshes(verts, QUAD_FACES, full, (64, 48), torch.tensor([[1.0, 1.0, 1.0]]))
    b = render_meshes(verts, QUAD_FACES, small, (64, 48), torch.tensor([[1.0, 1.0, 1.0]]))
    assert torch.equal(a.mask, b.mask) and torch.allclose(a.rgb, b.rgb, atol=1e-6)


def test_orthographic_camera_centres_and_scales():
    verts = _quad(1.0, 3.0)
    cam = OrthographicCamera(scale=10.0, center=(0.0, 0.0), size=(40, 40))
    out = render_meshes(verts, QUAD_FACES, cam, (40, 40), torch.tensor([[0.5, 0.5, 0.5]]), flat=True)
    assert out.mask[10:30, 10:30].all() and int(out.mask.sum()) == 400
    assert np.allclose(out.rgb[20, 20].numpy(), _lit([0.5] * 3, DEFAULT_LIGHT), atol=1e-5)


def test_synthetic_world_renders_with_its_sampled_light(body_model):
    """scene.render_image goes through render_meshes with the plan's own light and camera."""
    from annotator.data.synth import pipeline, scene
    from annotator.render import vertex_normals

    spec = scene.DOMAINS["lab"]
    plan = scene.plan_image(spec, 0, 0)
    assert plan.light.direction == tuple(plan.light_dir) and plan.light.ambient == plan.ambient
    assets = pipeline.build_assets(body_model)
    posed = pipeline.pose_people(body_model, [plan])
    colours = torch.from_numpy(np.stack([p.colours for p in plan.people]).astype(np.float32))[:, assets.vertex_part]
    normals = vertex_normals(posed.vertices, assets.faces)
    background = np.zeros((plan.height, plan.width, 3), np.float32)
    rendered = scene.render_image(plan, background, posed.vertices, normals, colours, assets)
    direct = render_meshes(posed.vertices, assets.faces, plan.cameras(1), (plan.width, plan.height), colours,
                           normals=normals, light=plan.light)
    expected = (direct.rgb.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
    assert np.array_equal(rendered.image, expected) and direct.mask.any()
    dim = scene.ImagePlan(**{**plan.__dict__, "ambient": 0.0, "light_dir": np.array([0.0, 0.0, 1.0])})
    dark = scene.render_image(dim, background, posed.vertices, normals, colours, assets).image
    mask = direct.mask.numpy()
    # no ambient, light from behind the people: black but for grazing silhouette pixels
    assert (dark[mask] == 0).all(-1).mean() > 0.9 and dark[mask].mean() < 0.05 * rendered.image[mask].mean()
