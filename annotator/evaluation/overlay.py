"""Mesh overlays: a run's SMPL outputs drawn over their images, to eyeball pseudo-GT quality.

For every selected image, all of its people are posed with the run's body model (one
batched forward pass for the whole selection), projected with each row's own
``focal_length`` / ``principal_point`` (perspective, full-image px, OpenCV camera frame)
and z-buffered and shaded together by the project's renderer (:func:`annotator.render.render_meshes`,
default light), so people occlude each other correctly. The shaded meshes are alpha-blended over the
photo; the predicted 2D keypoints (COCO-17 skeleton, person colour) and the dataset's
annotated keypoints (white rings, confidence > 0) are drawn on top. An optional side
view turns the same meshes 90 degrees about the camera's vertical axis (camera on the
left, depth increasing to the right), which shows depth errors the frontal view hides.

Rendering happens directly at the tile resolution (screen coordinates are scaled, the
photo is resized), so big images cost no more than small ones.

Entry points: :func:`make_overlays` (tiles of a run), :func:`overlay_sheet` (grid PNG),
:func:`write_overlay` (the ``annotator overlay`` command).
"""
from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError
from torch import Tensor

from annotator import storage
from annotator.body.joints import COCO17_SKELETON
from annotator.evaluation.reports import (  # noqa: F401 - re-exported: the overlay API reads run data too
    align_annotations,
    read_annotations,
    read_parquet_dir,
    stack_column,
)
from annotator.geometry.cameras import perspective_projection
from annotator.layout import OUTPUT_KINDS, RunLayout
from annotator.render import PerspectiveCameras, render_meshes

log = logging.getLogger("annotator")

PARAMS = ("global_orient", "body_pose", "betas", "transl")
"""Convention of the predicted ``keypoints_2d`` this module draws (the pipeline's output)."""

MESH_ALPHA = 0.6
"""Opacity of the mesh over the photo: high enough to read the shape, low enough to see
the limbs underneath."""
PERSON_COLOURS = np.array([
    [0.55, 0.70, 0.95], [0.95, 0.65, 0.45], [0.55, 0.90, 0.60], [0.90, 0.55, 0.85],
    [0.95, 0.90, 0.45], [0.50, 0.90, 0.90], [0.80, 0.80, 0.80], [0.95, 0.55, 0.55],
])
"""Mesh albedo per person of an image (RGB in [0, 1]), cycled; keypoints use the same hue."""
SIDE_YAW_DEG = 90.0
"""The side view turns the meshes this much about the camera's vertical axis."""
SIDE_FILL = 0.8
"""Share of the side-view tile the meshes' largest extent spans."""
SIDE_DISTANCE_M = 100.0
"""Side-view camera distance: far enough that the view is near-orthographic (a body
0.5 m nearer than the centre is drawn < 1 % larger), near enough for float32 depth
(~10 um resolution at 100 m)."""
SIDE_BACKGROUND = (48, 48, 48)
MISSING_BACKGROUND = (96, 96, 96)
"""Canvas colour when an image cannot be read (the overlay is still drawn on it)."""
ANNOTATION_COLOUR = (255, 255, 255)
KEYPOINT_RADIUS = 2.5
"""Keypoint dot radius in tile px."""
CAPTION_HEIGHT = 18
"""Height in px of the caption strip under each tile."""
CAPTION_FONT_PX = 13
CAPTION_COLOUR = (230, 230, 230)
SHEET_BACKGROUND = (20, 20, 20)
PERSON_CONTEXT = 1.4
"""Per-sample tiles crop a square this many times the person box's longer side (some
context around the person; a mesh far outside its box is cut, the side view still
shows it)."""
BATCH_SIZE = 64
"""Rows per body-model forward pass (bounds memory: 64 x 13.7k vertices)."""


@dataclass
class OverlayTile:
    """One rendered image: the overlay, the optional side view and a caption."""

    key: str
    """The image path (one tile per image) or the sample id (one tile per sample)."""
    overlay: Image.Image
    side: Image.Image | None
    caption: str

    def compose(self) -> Image.Image:
        """The overlay (and the side view to its right) over a caption strip."""
        boxes = [self.overlay] + ([self.side] if self.side is not None else [])
        width, height = sum(im.width for im in boxes), max(im.height for im in boxes)
        out = Image.new("RGB", (width, height + CAPTION_HEIGHT), SHEET_BACKGROUND)
        x = 0
        for im in boxes:
            out.paste(im, (x, 0))
            x += im.width
        draw = ImageDraw.Draw(out)
        draw.text((4, height + 2), self.caption, fill=CAPTION_COLOUR, font=ImageFont.load_default(size=CAPTION_FONT_PX))
        return out


# ----------------------------------------------------------------------------- rendering


def project_vertices(vertices: Tensor, focal: Tensor, principal_point: Tensor) -> Tensor:
    """``(P, V, 3)`` camera-frame vertices -> ``(P, V, 3)`` screen points ``(u, v, z)``.

    ``u, v`` are full-image px (perspective, per-person ``focal`` ``(P,)`` and
    ``principal_point`` ``(P, 2)``), ``z`` the depth in metres, as the rasteriser wants.
    """
    uv = perspective_projection(vertices, focal, principal_point)
    return torch.cat([uv, vertices[..., 2:]], dim=-1)


def shade_meshes(vertices: Tensor, faces: Tensor, focal: Tensor, principal_point: Tensor,
                 size: tuple[int, int], scale: tuple[float, float] = (1.0, 1.0),
                 colours: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render ``P`` meshes seen by their cameras into one ``size = (width, height)`` image.

    ``vertices`` ``(P, V, 3)`` camera frame (metres), ``faces`` ``(F, 3)`` shared,
    ``focal`` ``(P,)`` px, ``principal_point`` ``(P, 2)`` px, both in full-image px;
    ``scale`` ``(sx, sy)`` maps full-image px to output px (rendering at tile size).
    Returns ``(rgb (H, W, 3) float32 in [0, 1], mask (H, W) bool)``. All people go
    through one z-buffer, so the nearest surface wins across people.
    """
    n_people = vertices.shape[0]
    colours = PERSON_COLOURS if colours is None else np.asarray(colours, dtype=np.float64)
    albedo = torch.from_numpy(colours[np.arange(n_people) % len(colours)]).float()
    out = render_meshes(vertices, faces, PerspectiveCameras(focal, principal_point, tuple(scale)), size, albedo)
    return out.rgb.numpy(), out.mask.numpy()


def blend(image: np.ndarray, rgb: np.ndarray, mask: np.ndarray, alpha: float = MESH_ALPHA) -> np.ndarray:
    """Alpha-blend rendered ``rgb`` (float [0, 1]) over ``image`` (uint8) where ``mask``."""
    out = image.astype(np.float32)
    out[mask] = (1.0 - alpha) * out[mask] + alpha * 255.0 * rgb[mask]
    return out.round().clip(0, 255).astype(np.uint8)


def side_view(vertices: Tensor, faces: Tensor, size: tuple[int, int], yaw_deg: float = SIDE_YAW_DEG) -> np.ndarray:
    """The meshes turned ``yaw_deg`` about the camera's vertical axis, framed to fit.

    The rotation pivots on the centre of all vertices; with ``+90`` the camera's forward
    axis points right in the view (camera on the left). The view is near-orthographic
    (a telephoto camera :data:`SIDE_DISTANCE_M` away), so the largest extent spans
    :data:`SIDE_FILL` of the shorter image side whatever the depth spread. Returns an
    RGB uint8 ``(H, W, 3)`` image.
    """
    width, height = size
    t = math.radians(yaw_deg)
    rot = torch.tensor([[math.cos(t), 0.0, math.sin(t)], [0.0, 1.0, 0.0], [-math.sin(t), 0.0, math.cos(t)]])
    flat = vertices.float().reshape(-1, 3)
    turned = (vertices.float() - (flat.amin(0) + flat.amax(0)) / 2) @ rot.T
    lo, hi = turned.reshape(-1, 3).amin(0), turned.reshape(-1, 3).amax(0)
    extent = float((hi - lo)[:2].max().clamp(min=1e-3))
    focal = SIDE_FILL * min(width, height) * SIDE_DISTANCE_M / extent
    cam = turned - torch.stack([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, torch.tensor(-SIDE_DISTANCE_M)])
    n = vertices.shape[0]
    rgb, mask = shade_meshes(cam, faces, torch.full((n,), focal),
                             torch.tensor([[width / 2.0, height / 2.0]]).expand(n, 2), (width, height))
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = SIDE_BACKGROUND
    return blend(canvas, rgb, mask, alpha=1.0)


def draw_keypoints(image: Image.Image, predicted: np.ndarray | None, annotated: np.ndarray | None,
                   scale: tuple[float, float]) -> None:
    """Draw in place: predicted ``(P, 17, 2)`` COCO-17 keypoints (skeleton, person colour)
    and annotated ``(P, 17, 3)`` keypoints (white rings where confidence > 0), both in
    full-image px, scaled by ``scale`` ``(sx, sy)``."""
    draw = ImageDraw.Draw(image)
    sxy = np.asarray(scale, dtype=np.float64)
    r = KEYPOINT_RADIUS
    if annotated is not None:
        for kps in annotated:
            for x, y in kps[kps[:, 2] > 0, :2] * sxy:
                draw.ellipse([x - r - 1, y - r - 1, x + r + 1, y + r + 1], outline=ANNOTATION_COLOUR, width=1)
    if predicted is None:
        return
    for p, kps in enumerate(predicted):
        colour = tuple(int(c * 255) for c in PERSON_COLOURS[p % len(PERSON_COLOURS)])
        dark = tuple(int(c * 0.6) for c in colour)
        pts = kps * sxy
        finite = np.isfinite(pts).all(axis=1)
        for a, b in COCO17_SKELETON:
            if finite[a - 1] and finite[b - 1]:
                draw.line([tuple(pts[a - 1]), tuple(pts[b - 1])], fill=dark, width=2)
        for x, y in pts[finite]:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour, outline=(0, 0, 0))


def fit_scale(width: int, height: int, tile: int) -> tuple[tuple[int, int], tuple[float, float]]:
    """Output size fitting a ``width x height`` image into ``tile x tile`` and the exact
    per-axis px scale ``(sx, sy)`` (rounded size / original size)."""
    s = tile / max(width, height)
    w, h = max(1, round(width * s)), max(1, round(height * s))
    return (w, h), (w / width, h / height)


# ----------------------------------------------------------------------------- run data


def read_output(run_dir: str, dataset: str, output: str = "pseudo_gt") -> pd.DataFrame:
    """All rows of one output (``pseudo_gt`` or ``prior``) of ``dataset`` in Parquet order."""
    if output not in OUTPUT_KINDS:
        raise ValueError(f"output {output!r}: expected one of {sorted(OUTPUT_KINDS)}")
    path = RunLayout(run_dir).output(output, dataset)
    df = read_parquet_dir(path)
    if df.empty:
        raise FileNotFoundError(f"{storage.redact(path)}: no Parquet rows "
                                f"(is {dataset!r} a target dataset of this run?)")
    return df.reset_index(drop=True)


def run_body_model(run_dir: str):
    """The run's own body model (:meth:`RunLayout.body_model`), loaded with the kind and
    ``num_betas`` its record says (:func:`annotator.steps.runtime.load_run_body_model`)."""
    from annotator.steps.runtime import load_run_body_model

    return load_run_body_model(RunLayout(run_dir))


@torch.no_grad()
def pose_rows(rows: pd.DataFrame, body) -> Tensor:
    """``(N, V, 3)`` camera-frame vertices of ``rows`` (batched forward passes)."""
    params = {k: torch.from_numpy(stack_column(rows[k])) for k in PARAMS}
    out = [body(**{k: v[s:s + BATCH_SIZE] for k, v in params.items()}).vertices
           for s in range(0, len(rows), BATCH_SIZE)]
    return torch.cat(out) if out else torch.zeros(0, body.num_vertices, 3)


def _check_body_model(rows: pd.DataFrame, body) -> None:
    if "body_model_checksum" not in rows:
        return
    bad = rows.loc[rows["body_model_checksum"] != body.checksum, "sample_id"]
    if len(bad):
        raise ValueError(f"sample {bad.iloc[0]!r} (and {len(bad) - 1} more) was made with body model checksum "
                         f"{rows.loc[bad.index[0], 'body_model_checksum'][:12]}..., not the run's "
                         f"{body.checksum[:12]}...; its mesh would be wrong")


def _valid(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows whose parameters and camera are all finite (failed predictions are NaN)."""
    arrays = [stack_column(rows[k]) for k in PARAMS] + [stack_column(rows["principal_point"], 2),
                                                   rows["focal_length"].to_numpy(np.float32)[:, None]]
    ok = np.isfinite(np.concatenate(arrays, axis=1)).all(axis=1)
    if not ok.all():
        log.warning("overlay: skipping %d rows with non-finite parameters (e.g. %s)",
                    int((~ok).sum()), rows.loc[~ok, "sample_id"].iloc[0])
    return rows[ok]


def _load_image(path: str, sample_id: str) -> Image.Image | None:
    try:
        return Image.open(io.BytesIO(storage.read_bytes(path))).convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as err:
        log.warning("overlay: %s: image %s unreadable (%s); drawing on a blank canvas",
                    sample_id, storage.redact(path), err)
        return None


def select_rows(df: pd.DataFrame, num: int | None = None, sample_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows of the first ``num`` images in Parquet order (all their people), or the
    rows named by ``sample_ids`` (an unknown id is an error naming it)."""
    if sample_ids:
        known = set(df["sample_id"])
        missing = [s for s in sample_ids if s not in known]
        if missing:
            raise KeyError(f"sample ids not in this output: {missing[:5]}" + (" ..." if len(missing) > 5 else ""))
        return df[df["sample_id"].isin(set(sample_ids))]
    images = pd.unique(df["image_path"])
    if num is not None:
        images = images[:num]
    return df[df["image_path"].isin(set(images))]


def person_region(bbox: np.ndarray, width: int, height: int,
                  context: float = PERSON_CONTEXT) -> tuple[int, int, int, int]:
    """Integer crop ``(x0, y0, x1, y1)`` around person boxes ``(P, 4)`` ``[x, y, w, h]``:
    a square of ``context`` times the union box's longer side about its centre, clipped
    to the image."""
    lo = bbox[:, :2].min(axis=0)
    hi = (bbox[:, :2] + bbox[:, 2:]).max(axis=0)
    centre, half = (lo + hi) / 2, context * float((hi - lo).max()) / 2
    x0, y0 = np.floor(np.maximum(centre - half, 0)).astype(int)
    x1, y1 = np.ceil(np.minimum(centre + half, [width, height])).astype(int)
    if x1 <= x0 or y1 <= y0:
        return 0, 0, width, height
    return int(x0), int(y0), int(x1), int(y1)


def render_tiles(rows: pd.DataFrame, body, annotations: tuple[pd.Index, np.ndarray] | None = None,
                 tile: int = 320, side: bool = True, per_sample: bool = False) -> list[OverlayTile]:
    """Render ``rows`` (pseudo-GT schema) as tiles: one per image with all its people, or,
    with ``per_sample``, one per row cropped around its person box (:func:`person_region`).
    Meshes for all rows come from one batched body-model pass."""
    rows = _valid(rows.reset_index(drop=True))
    if rows.empty:
        return []
    rows = rows.reset_index(drop=True)
    _check_body_model(rows, body)
    verts = pose_rows(rows, body)
    focal = torch.from_numpy(np.array(rows["focal_length"], dtype=np.float32))
    pp = torch.from_numpy(stack_column(rows["principal_point"], 2))
    kps = stack_column(rows["keypoints_2d"]).reshape(len(rows), -1, 2)
    ann = align_annotations(rows["sample_id"].to_numpy(), annotations) if annotations is not None else None
    bbox = stack_column(rows["bbox"], 4)
    keys = rows["sample_id"] if per_sample else rows["image_path"]
    tiles = []
    for key, idx in rows.groupby(keys, sort=False).indices.items():  # one image composition per tile
        first = rows.iloc[idx[0]]
        width, height = int(first["image_width"]), int(first["image_height"])
        x0, y0, x1, y1 = person_region(bbox[idx], width, height) if per_sample else (0, 0, width, height)
        size, scale = fit_scale(x1 - x0, y1 - y0, tile)
        photo = _load_image(str(first["image_path"]), str(first["sample_id"]))
        if photo is not None and photo.size != (width, height):
            raise ValueError(f"{first['sample_id']}: image {storage.redact(first['image_path'])} is "
                             f"{photo.size[0]}x{photo.size[1]} px but the row says {width}x{height}")
        photo = (photo.crop((x0, y0, x1, y1)).resize(size, Image.BILINEAR) if photo is not None
                 else Image.new("RGB", size, MISSING_BACKGROUND))
        origin = np.array([x0, y0], np.float32)  # cropping = moving the principal point
        rgb, mask = shade_meshes(verts[idx], body.faces, focal[idx], pp[idx] - torch.from_numpy(origin), size, scale)
        over = Image.fromarray(blend(np.asarray(photo), rgb, mask))
        crop_ann = None
        if ann is not None:
            crop_ann = ann[idx].copy()
            crop_ann[..., :2] -= origin
        draw_keypoints(over, kps[idx] - origin, crop_ann, scale)
        side_img = None
        if side:
            side_img = Image.fromarray(side_view(verts[idx], body.faces, size))
        err = rows["err2d_px"].iloc[idx].to_numpy(np.float64) if "err2d_px" in rows else np.array([np.nan])
        name = str(first["sample_id"]) if per_sample else storage.redact(str(key)).rsplit("/", 1)[-1]
        caption = f"{name}  {len(idx)} pers.  2D err {np.nanmean(err):.1f} px" if np.isfinite(err).any() \
            else f"{name}  {len(idx)} pers."
        tiles.append(OverlayTile(key=str(key), overlay=over, side=side_img, caption=caption))
    return tiles


def make_overlays(run_dir: str, dataset: str, output: str = "pseudo_gt", num: int | None = 8,
                  sample_ids: Sequence[str] | None = None, tile: int = 320, side: bool = True,
                  per_sample: bool = False, body=None) -> list[OverlayTile]:
    """Tiles of a run directory's ``output`` for ``dataset`` (see :func:`select_rows`)."""
    rows = select_rows(read_output(run_dir, dataset, output), num, sample_ids)
    body = body if body is not None else run_body_model(run_dir)
    return render_tiles(rows, body, read_annotations(run_dir, dataset), tile=tile, side=side, per_sample=per_sample)


def overlay_sheet(tiles: Sequence[OverlayTile], columns: int = 2) -> Image.Image:
    """Grid of composed tiles, ``columns`` per row, each centred in a cell as large as the
    largest tile."""
    if not tiles:
        raise ValueError("overlay_sheet: no tiles to draw")
    cells = [t.compose() for t in tiles]
    cw, ch = max(c.width for c in cells), max(c.height for c in cells)
    columns = max(1, min(columns, len(cells)))
    rows = -(-len(cells) // columns)
    sheet = Image.new("RGB", (columns * cw, rows * ch), SHEET_BACKGROUND)
    for i, cell in enumerate(cells):
        sheet.paste(cell, ((i % columns) * cw + (cw - cell.width) // 2, (i // columns) * ch + (ch - cell.height) // 2))
    return sheet


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def write_overlay(run_dir: str, dataset: str, out: str, output: str = "pseudo_gt", num: int | None = 8,
                  sample_ids: Sequence[str] | None = None, columns: int = 2, tile: int = 320,
                  side: bool = True) -> int:
    """Render and write the overlay sheet PNG (local or s3://); returns the number of tiles."""
    tiles = make_overlays(run_dir, dataset, output, num, sample_ids, tile=tile, side=side)
    if not tiles:
        raise ValueError(f"{storage.redact(run_dir)}: no renderable rows for {dataset}/{output}")
    storage.write_bytes_atomic(out, png_bytes(overlay_sheet(tiles, columns)))
    return len(tiles)


__all__ = [
    "OverlayTile", "project_vertices", "shade_meshes", "blend", "side_view", "draw_keypoints", "fit_scale",
    "stack_column", "read_output", "read_annotations", "align_annotations", "run_body_model", "pose_rows",
    "select_rows", "person_region", "render_tiles", "make_overlays", "overlay_sheet", "png_bytes", "write_overlay",
]
