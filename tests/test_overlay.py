"""Mesh overlays: silhouette geometry against an independent rasterisation, cropping and
scaling, the side view, and ``annotator overlay`` on a tiny run directory.

``write_run`` builds that run directory (real COCO fixture images, the open body model,
pseudo-GT/prior/manifest Parquet with the product's schema); test_dashboard.py reuses it.
"""
from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image, ImageDraw

from annotator.body.joints import select_keypoints
from annotator.data.pseudo_gt import to_table
from annotator.evaluation import cli as eval_cli
from annotator.evaluation import overlay
from annotator.geometry.cameras import perspective_projection
from annotator.render import DEFAULT_LIGHT

DATASET = "toy"
# (image, transl) per person; two people share the first image.
PEOPLE = [("000000000785.jpg", (-0.45, 0.25, 5.0)), ("000000000785.jpg", (0.55, 0.15, 6.5)),
          ("000000040083.jpg", (0.1, 0.3, 4.5))]
# Manifest annotation = predicted keypoints + this px offset per joint (known per-joint error).
ANNOTATION_OFFSET = np.linspace(1.0, 17.0, 17)
UNANNOTATED_JOINT = 3  # left_ear: confidence 0 in every manifest row
TRANSL_OFFSET_PRIOR = np.array([0.05, 0.0, 0.3])  # the prior output is shifted by this (metres)


def _pose(body, transl: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Upright people facing the camera (global_orient = pi about x: SMPL y-up -> OpenCV y-down)."""
    go = np.tile([math.pi, 0.0, 0.0], (n, 1)).astype(np.float32)
    bp = np.zeros((n, 69), np.float32)
    bp[:, 47] = -0.8  # left shoulder (joint 16) z: arm down a bit, so the pose is not symmetric
    return {"global_orient": go, "body_pose": bp, "betas": np.zeros((n, 10), np.float32),
            "transl": transl.astype(np.float32)}


def _project(body, params: dict[str, np.ndarray], focal: np.ndarray, pp: np.ndarray):
    with torch.no_grad():
        out = body(**{k: torch.from_numpy(v) for k, v in params.items()})
    f, p = torch.from_numpy(focal), torch.from_numpy(pp)
    kps = select_keypoints(out.keypoints, body.keypoint_names, "coco17")
    return perspective_projection(out.vertices, f, p).numpy(), perspective_projection(kps, f, p).numpy()


def write_run(root: Path, body, fixtures: Path, model_path: str) -> dict:
    """A run directory with outputs for 3 people on 2 real COCO images; returns what was put in."""
    (root / "images").mkdir(parents=True)
    for name in {p[0] for p in PEOPLE}:
        shutil.copy(fixtures / "coco" / name, root / "images" / name)
    (root / "body_model" / "smpl").mkdir(parents=True)
    (root / "body_model" / "smpl" / "SMPL_NEUTRAL.pkl").symlink_to(model_path)  # 40 MB: link, don't copy
    n = len(PEOPLE)
    sizes = np.array([Image.open(root / "images" / p[0]).size for p in PEOPLE], np.float32)
    focal = np.sqrt((sizes ** 2).sum(1)).astype(np.float32)
    pp = sizes / 2
    ids = [f"{DATASET}/{i}" for i in range(n)]
    info = {"sample_ids": ids, "sizes": sizes, "focal": focal, "pp": pp}
    for output, shift in (("pseudo_gt", np.zeros(3)), ("prior", TRANSL_OFFSET_PRIOR)):
        params = _pose(body, np.array([p[1] for p in PEOPLE]) + shift, n)
        verts2d, kps2d = _project(body, params, focal, pp)
        bbox = np.concatenate([verts2d.min(1), verts2d.max(1) - verts2d.min(1)], axis=1)
        cols = {"sample_id": np.array(ids), "dataset": np.full(n, DATASET),
                "image_path": np.array([str(root / "images" / p[0]) for p in PEOPLE]), "bbox": bbox,
                "image_width": sizes[:, 0].astype(np.int32), "image_height": sizes[:, 1].astype(np.int32),
                "focal_length": focal, "principal_point": pp, **params, "crop_cam": np.zeros((n, 3)),
                "keypoint_convention": np.full(n, "coco17"), "keypoints_2d": kps2d.reshape(n, -1),
                "err2d_px": np.array([4.0, 9.0, 20.0]) * (2 if output == "prior" else 1),
                "err2d_norm": np.array([0.02, 0.05, 0.1]),
                "method": np.full(n, "cliff" if output == "pseudo_gt" else "prior"),
                "checkpoint_id": np.full(n, "test"), "body_model_id": np.full(n, body.model_id),
                "body_model_checksum": np.full(n, body.checksum)}
        (root / output / DATASET).mkdir(parents=True)
        pq.write_table(to_table(cols), root / output / DATASET / "part-00000.parquet")
        info[output] = {"verts2d": verts2d, "kps2d": kps2d, "bbox": bbox}
    ann = info["pseudo_gt"]["kps2d"] + ANNOTATION_OFFSET[None, :, None] / math.sqrt(2)
    conf = np.ones((n, 17, 1), np.float32)
    conf[:, UNANNOTATED_JOINT] = 0
    manifest = np.concatenate([ann, conf], axis=-1).reshape(n, -1).astype(np.float32)
    (root / "manifest" / DATASET).mkdir(parents=True)
    table = pa.table({"sample_id": ids, "keypoints_2d": [list(m) for m in manifest],
                      "keypoint_convention": ["coco17"] * n})
    pq.write_table(table, root / "manifest" / DATASET / "part-00000.parquet")
    info["annotation"] = manifest.reshape(n, 17, 3)
    return info


@pytest.fixture(scope="module")
def model_path():
    from annotator.body.open_model import ensure_open_model
    from annotator.config import BodyModelConfig

    return ensure_open_model(BodyModelConfig().cache_dir)


@pytest.fixture(scope="module")
def run(tmp_path_factory, body_model, real_fixtures, model_path):
    root = tmp_path_factory.mktemp("run") / "job"
    return root, write_run(root, body_model, real_fixtures, model_path)


REF_SUPERSAMPLE = 4  # the reference silhouette is drawn at 4x and box-filtered: ~exact area coverage


def _reference_coverage(points2d: np.ndarray, faces: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Independent reference: every projected triangle filled by PIL at 4x resolution,
    averaged back to ``(H, W)`` pixel coverage in [0, 1] (PIL puts pixel centres on integers)."""
    s = REF_SUPERSAMPLE
    img = Image.new("L", (size[0] * s, size[1] * s), 0)
    draw = ImageDraw.Draw(img)
    for tri in (points2d * s - 0.5)[faces]:  # test-only reference rasterisation
        draw.polygon([tuple(p) for p in tri], fill=255)
    return np.asarray(img, np.float64).reshape(size[1], s, size[0], s).mean(axis=(1, 3)) / 255.0


def _standing(body, transl):
    params = _pose(body, np.array([transl]), 1)
    with torch.no_grad():
        return body(**{k: torch.from_numpy(v) for k, v in params.items()}).vertices


def test_silhouette_matches_projected_vertices(body_model):
    verts = _standing(body_model, (0.1, 0.2, 4.0))
    focal, pp, size = torch.tensor([500.0]), torch.tensor([[161.3, 140.7]]), (320, 320)
    rgb, mask = overlay.shade_meshes(verts, body_model.faces, focal, pp, size)
    assert mask.shape == (320, 320) and rgb.shape == (320, 320, 3)
    uv = perspective_projection(verts, focal, pp)[0].numpy()
    ys, xs = np.nonzero(mask)
    # silhouette box vs the projected vertices' box (pixel centres: i + 0.5)
    assert abs(xs.min() + 0.5 - uv[:, 0].min()) < 1.0 and abs(xs.max() + 0.5 - uv[:, 0].max()) < 1.0
    assert abs(ys.min() + 0.5 - uv[:, 1].min()) < 1.0 and abs(ys.max() + 0.5 - uv[:, 1].max()) < 1.0
    cov = _reference_coverage(uv, body_model.faces.numpy(), size)
    gy, gx = np.mgrid[0:size[1], 0:size[0]]
    assert abs(xs.mean() - (gx * cov).sum() / cov.sum()) < 0.3 and abs(ys.mean() - (gy * cov).sum() / cov.sum()) < 0.3
    assert abs(mask.sum() - cov.sum()) / cov.sum() < 0.03
    # head up: the top rows of the silhouette hold the head vertices (largest SMPL height)
    head = uv[(verts[0, :, 1] < verts[0, :, 1].min() + 0.1).numpy()]
    assert head[:, 1].max() < ys.min() + 0.15 * (ys.max() - ys.min())
    # shading: lit pixels are in [ambient * albedo, albedo], background is zero
    albedo = overlay.PERSON_COLOURS[0]
    assert (rgb[mask] <= albedo + 1e-5).all() and (rgb[mask] >= DEFAULT_LIGHT.ambient * albedo - 1e-5).all()
    assert (rgb[~mask] == 0).all()


def test_scaled_and_shifted_render_matches_transformed_projection(body_model):
    """Rendering at tile scale with a moved principal point (how crops are drawn) puts the
    silhouette where the transformed projection says."""
    verts = _standing(body_model, (-0.2, 0.1, 5.0))
    focal, pp = torch.tensor([900.0]), torch.tensor([[400.0, 300.0]])
    origin, scale = np.array([150.0, 40.0]), (0.5, 0.4)
    _, mask = overlay.shade_meshes(verts, body_model.faces, focal, pp - torch.tensor(origin, dtype=torch.float32),
                                   (200, 180), scale)
    uv = (perspective_projection(verts, focal, pp)[0].numpy() - origin) * np.array(scale)
    ys, xs = np.nonzero(mask)
    assert abs(xs.min() + 0.5 - uv[:, 0].min()) < 1.0 and abs(xs.max() + 0.5 - uv[:, 0].max()) < 1.0
    assert abs(ys.min() + 0.5 - uv[:, 1].min()) < 1.0 and abs(ys.max() + 0.5 - uv[:, 1].max()) < 1.0


def test_nearer_person_occludes_farther(body_model):
    near, far = _standing(body_model, (0.0, 0.2, 3.0)), _standing(body_model, (0.0, 0.2, 6.0))
    colours = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # far red, near blue
    rgb, mask = overlay.shade_meshes(torch.cat([far, near]), body_model.faces, torch.tensor([600.0, 600.0]),
                                     torch.tensor([[160.0, 160.0]] * 2), (320, 320), colours=colours)
    centre = rgb[150:170, 155:165]  # the belly: both bodies project here, the near (blue) one wins
    assert mask[150:170, 155:165].all() and (centre[..., 2] > 0).all() and (centre[..., 0] == 0).all()
    assert ((rgb[..., 0] > 0) & mask).any()  # the far body shows where the near one does not cover it


def test_blend_alpha():
    image = np.full((2, 2, 3), 100, np.uint8)
    rgb = np.ones((2, 2, 3), np.float32)
    mask = np.array([[True, False], [False, False]])
    out = overlay.blend(image, rgb, mask, alpha=0.25)
    assert out[0, 0].tolist() == [round(0.75 * 100 + 0.25 * 255)] * 3 and (out[1] == 100).all()


def test_side_view_is_framed_and_shows_depth(body_model):
    verts = _standing(body_model, (0.4, 0.2, 5.0))
    front_mask = overlay.shade_meshes(verts, body_model.faces, torch.tensor([400.0]), torch.tensor([[150.0, 150.0]]),
                                      (300, 300))[1]
    side = overlay.side_view(verts, body_model.faces, (300, 300))
    mask = (side != overlay.SIDE_BACKGROUND).any(axis=-1)
    ys, xs = np.nonzero(mask)
    height = ys.max() - ys.min() + 1
    assert abs((ys.min() + ys.max()) / 2 - 150) < 3 and abs((xs.min() + xs.max()) / 2 - 150) < 3
    assert abs(height - overlay.SIDE_FILL * 300) < 3  # the body is taller than it is deep
    fx = np.nonzero(front_mask.any(0))[0]
    # turned 90 degrees the body's depth (~0.3 m) is much narrower than its frontal width (arms)
    assert (xs.max() - xs.min()) / height < 0.5 * (fx.max() - fx.min()) / (np.ptp(np.nonzero(front_mask.any(1))[0]))


def test_person_region_and_fit_scale():
    assert overlay.person_region(np.array([[100.0, 50.0, 40.0, 100.0]]), 640, 480, context=1.4) == (50, 30, 190, 170)
    assert overlay.person_region(np.array([[0.0, 0.0, 50.0, 50.0]]), 640, 480, context=2.0) == (0, 0, 75, 75)
    size, scale = overlay.fit_scale(640, 425, 200)
    assert size == (200, 133) and scale == (200 / 640, 133 / 425)


def test_render_tiles_groups_people_by_image(run, body_model):
    root, info = run
    rows = overlay.read_output(str(root), DATASET, "pseudo_gt")
    tiles = overlay.render_tiles(rows, body_model, overlay.read_annotations(str(root), DATASET), tile=200)
    assert [t.key.rsplit("/", 1)[-1] for t in tiles] == ["000000000785.jpg", "000000040083.jpg"]
    assert tiles[0].overlay.size == (200, 133) and tiles[0].side.size == (200, 133)
    assert "2 pers." in tiles[0].caption and "2D err 6.5 px" in tiles[0].caption
    # the overlay differs from the photo only where the meshes / keypoints project
    photo = Image.open(root / "images" / "000000000785.jpg").convert("RGB")
    photo = np.asarray(photo.resize((200, 133), Image.BILINEAR))
    diff = np.abs(np.asarray(tiles[0].overlay, np.int16) - photo).max(-1) > 0
    _, scale = overlay.fit_scale(640, 425, 200)
    uv = info["pseudo_gt"]["verts2d"][:2].reshape(-1, 2) * np.array(scale)
    ann = info["annotation"][:2, :, :2].reshape(-1, 2) * np.array(scale)
    lo, hi = np.minimum(uv.min(0), ann.min(0)), np.maximum(uv.max(0), ann.max(0))
    ys, xs = np.nonzero(diff)
    margin = overlay.KEYPOINT_RADIUS + 3
    assert xs.min() >= lo[0] - margin and xs.max() <= hi[0] + margin
    assert ys.min() >= lo[1] - margin and ys.max() <= hi[1] + margin
    assert diff.mean() > 0.02  # something was drawn
    per_sample = overlay.render_tiles(rows, body_model, None, tile=120, side=False, per_sample=True)
    assert [t.key for t in per_sample] == info["sample_ids"] and all(t.side is None for t in per_sample)
    assert max(per_sample[0].overlay.size) == 120


def test_overlay_cli_writes_grid(run, tmp_path, capsys):
    root, info = run
    parser = argparse.ArgumentParser(prog="annotator")
    eval_cli.add_commands(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "sheet.png"
    args = parser.parse_args(["overlay", str(root), "--dataset", DATASET, "--num", "2", "--tile", "200",
                              "--columns", "2", "--out", str(out)])
    assert args.func(args) == 0
    assert "2 tiles" in capsys.readouterr().out
    sheet = Image.open(out)
    # 2 cells side by side: (overlay 200 + side view 200) x (tallest image 133 + caption)
    assert sheet.size == (2 * 400, 133 + overlay.CAPTION_HEIGHT)
    args = parser.parse_args(["overlay", str(root), "--dataset", DATASET, "--output", "prior", "--sample-ids",
                              info["sample_ids"][2], "--no-side", "--tile", "150", "--out", str(out)])
    assert args.func(args) == 0
    assert Image.open(out).size == (150, 100 + overlay.CAPTION_HEIGHT)
    args = parser.parse_args(["overlay", str(root), "--dataset", DATASET, "--sample-ids", "toy/42", "--out", str(out)])
    assert args.func(args) == 2
    assert "annotator overlay: error: sample ids not in this output: ['toy/42']" in capsys.readouterr().err


def test_overlay_errors_name_the_problem(run, body_model):
    root, _ = run
    with pytest.raises(KeyError, match="toy/99"):
        overlay.make_overlays(str(root), DATASET, sample_ids=["toy/99"], body=body_model)
    with pytest.raises(FileNotFoundError, match="pseudo_gt/nope"):
        overlay.make_overlays(str(root), "nope", body=body_model)
    rows = overlay.read_output(str(root), DATASET).assign(body_model_checksum="0" * 64)
    with pytest.raises(ValueError, match="toy/0.*checksum"):
        overlay.render_tiles(rows, body_model)


def test_missing_image_draws_on_blank_canvas(run, body_model, tmp_path):
    root, _ = run
    rows = overlay.read_output(str(root), DATASET).head(1).assign(image_path=str(tmp_path / "gone.jpg"))
    tile = overlay.render_tiles(rows, body_model, tile=100, side=False)[0]
    pixels = np.asarray(tile.overlay).reshape(-1, 3)
    assert (pixels == overlay.MISSING_BACKGROUND).all(1).mean() > 0.5
    assert len(np.unique(pixels, axis=0)) > 3  # the mesh is still drawn, shaded
