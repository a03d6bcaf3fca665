"""The CPU z-buffer rasteriser: coverage rule, depth test, perspective depth, barycentrics."""
from __future__ import annotations

import math

import torch

from annotator.render.raster import barycentrics, rasterize, vertex_normals
from annotator.render.shade import Light, lambert_shade


def _quad(x0, y0, x1, y1, z):
    """Two triangles covering the screen rectangle [x0, x1] x [y0, y1] at depth z."""
    pts = torch.tensor([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=torch.float32)
    return pts, torch.tensor([[0, 1, 2], [0, 2, 3]])


def test_coverage_follows_pixel_centres():
    pts, faces = _quad(10.2, 5.6, 20.7, 9.4, 2.0)
    frags = rasterize(pts, faces, 16, 32)
    rows, cols = torch.nonzero(frags.mask, as_tuple=True)
    # centres x + 0.5 inside [10.2, 20.7] -> columns 10..20; y + 0.5 inside [5.6, 9.4] -> rows 6..8
    assert (cols.min().item(), cols.max().item()) == (10, 20)
    assert (rows.min().item(), rows.max().item()) == (6, 8)
    assert int(frags.mask.sum()) == 11 * 3
    assert torch.allclose(frags.depth[frags.mask], torch.tensor(2.0))
    assert torch.isinf(frags.depth[~frags.mask]).all()


def test_nearest_surface_wins_and_ties_are_deterministic():
    far, f_far = _quad(0, 0, 20, 20, 5.0)
    near, f_near = _quad(5, 5, 15, 15, 3.0)
    pts = torch.cat([far, near])
    faces = torch.cat([f_far, f_near + 4])
    frags = rasterize(pts, faces, 20, 20)
    assert frags.face_index[10, 10].item() in (2, 3)  # the near quad's triangles
    assert frags.depth[10, 10].item() == 3.0
    assert frags.face_index[1, 1].item() in (0, 1) and frags.depth[1, 1].item() == 5.0
    # the same order but the near quad listed first: identical buffer contents by depth
    frags2 = rasterize(torch.cat([near, far]), torch.cat([f_near, f_far + 4]), 20, 20)
    assert torch.equal(frags.depth, frags2.depth)
    # coplanar duplicate: the lower triangle index wins
    dup = rasterize(torch.cat([far, far]), torch.cat([f_far, f_far + 4]), 20, 20)
    assert dup.face_index.max().item() <= 1


def test_depth_is_perspective_correct():
    # A plane tilted in depth, projected with f = 100, c = 32: z = 2 + 0.05 * X.
    f, c = 100.0, 32.0
    world = torch.tensor([[-1.0, -1.0, 1.95], [1.0, -1.0, 2.05], [1.0, 1.0, 2.05], [-1.0, 1.0, 1.95]])
    uv = world[:, :2] / world[:, 2:] * f + c
    frags = rasterize(torch.cat([uv, world[:, 2:]], 1), torch.tensor([[0, 1, 2], [0, 2, 3]]), 64, 64)
    rows, cols = torch.nonzero(frags.mask, as_tuple=True)
    # ray through pixel centre u: X = (u - c) / f * z and z = 2 + 0.05 X  ->  z = 2 / (1 - 0.05 (u - c) / f)
    u = cols.float() + 0.5
    expected = 2.0 / (1.0 - 0.05 * (u - c) / f)
    assert torch.allclose(frags.depth[rows, cols], expected, atol=2e-5)


def test_sphere_area_barycentrics_and_shading():
    n_lat, n_lon = 40, 80
    lat = torch.linspace(0, math.pi, n_lat)
    lon = torch.linspace(0, 2 * math.pi, n_lon + 1)[:-1]
    la, lo = torch.meshgrid(lat, lon, indexing="ij")
    sphere = torch.stack([la.sin() * lo.cos(), la.cos(), la.sin() * lo.sin()], -1).reshape(-1, 3)
    i, j = torch.meshgrid(torch.arange(n_lat - 1), torch.arange(n_lon), indexing="ij")
    a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
    faces = torch.cat([torch.stack([a, b, a + n_lon], -1), torch.stack([b, b + n_lon, a + n_lon], -1)]).reshape(-1, 3)
    radius, dist, focal = 0.5, 4.0, 200.0
    world = sphere * radius + torch.tensor([0.0, 0.0, dist])
    uv = world[:, :2] / world[:, 2:] * focal + 64.0
    pts = torch.cat([uv, world[:, 2:]], 1)
    frags = rasterize(pts, faces, 128, 128)
    # silhouette of a sphere: a disc of radius f * r / sqrt(d^2 - r^2)
    expected_area = math.pi * (focal * radius / math.sqrt(dist**2 - radius**2)) ** 2
    assert abs(frags.mask.sum().item() - expected_area) / expected_area < 0.03
    assert abs(frags.depth[64, 64].item() - (dist - radius)) < 2e-3
    pix, face, bary = barycentrics(pts, faces, frags)
    assert torch.allclose(bary.sum(1), torch.ones(len(pix)), atol=1e-5)
    # interpolated screen positions reproduce the pixel centres
    interp = (pts[faces[face]][..., :2] * bary[..., None]).sum(1)
    centres = torch.stack([(pix % 128).float() + 0.5, (pix // 128).float() + 0.5], 1)
    assert (interp - centres).abs().max() < 1e-3
    normals = vertex_normals(world[None], faces)[0]
    assert torch.allclose(normals.norm(dim=1), torch.ones(len(normals)), atol=1e-5)
    # light from the camera: the sphere centre pixel is the brightest, the rim dark
    n = (normals[faces[face]] * bary[..., None]).sum(1)
    shade = lambert_shade(torch.ones(len(pix), 3), n, torch.tensor([0.0, 0.0, 1.0]).expand(len(pix), 3),
                          Light(direction=(0.0, 0.0, -1.0), ambient=0.2))
    centre = int(torch.nonzero(pix == 64 * 128 + 64)[0])
    assert shade[centre, 0] > 0.99 and shade[:, 0].min() < 0.45
