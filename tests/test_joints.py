"""Joint conventions: tables against the published orders/flip pairs, mapping to model keypoints."""
from __future__ import annotations

import pytest
import torch

from annotator.body.joints import (
    CONVENTIONS,
    COCO23_NAMES,
    LANDMARK_NAMES,
    SMPL_JOINT_NAMES,
    convention_index,
    convert,
    flip_keypoints,
    get_convention,
    root_point,
    select_keypoints,
)

SMPL_ONLY = list(SMPL_JOINT_NAMES) + list(LANDMARK_NAMES)
OPEN = SMPL_ONLY + ["coco_" + n for n in COCO23_NAMES]


def test_tables_match_the_published_orders_and_flip_pairs():
    sizes = {"smpl24": 24, "coco17": 17, "coco23": 23, "mpii16": 16, "h36m17": 17, "spin24": 24}
    assert {k: v.num_joints for k, v in CONVENTIONS.items()} == sizes
    assert get_convention("coco17").flip_pairs == ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
    assert get_convention("coco23").flip_pairs[-3:] == ((17, 20), (18, 21), (19, 22))
    assert set(get_convention("mpii16").flip_pairs) == {(3, 2), (4, 1), (5, 0), (13, 12), (14, 11), (15, 10)}
    assert set(get_convention("h36m17").flip_pairs) == {(4, 1), (5, 2), (6, 3), (11, 14), (12, 15), (13, 16)}
    assert get_convention("smpl24").flip_pairs == (
        (1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21), (22, 23))
    assert get_convention("coco17").root == (11, 12) and get_convention("mpii16").root == (3, 2)
    assert get_convention("h36m17").root == (0,) and get_convention("smpl24").root == (0,)
    assert get_convention("mpii16").hips == (3, 2) and get_convention("h36m17").hips == (4, 1)


def test_unknown_convention_error_lists_known_names():
    with pytest.raises(KeyError, match="coco17.*h36m17.*mpii16"):
        get_convention("lsp14")


def test_convention_index_prefers_coco_points_and_falls_back_to_smpl():
    coco_open = convention_index(OPEN, "coco17")
    assert [OPEN[i] for i in coco_open] == ["coco_" + n for n in COCO23_NAMES[:17]]
    coco_smpl = convention_index(SMPL_ONLY, "coco17")
    assert SMPL_ONLY[coco_smpl[11]] == "left_hip" and SMPL_ONLY[coco_smpl[0]] == "nose"
    mpii = [OPEN[i] for i in convention_index(OPEN, "mpii16")]
    assert mpii[:7] == ["coco_right_ankle", "coco_right_knee", "coco_right_hip", "coco_left_hip",
                        "coco_left_knee", "coco_left_ankle", "pelvis"]
    assert mpii[7:10] == ["neck", "neck", "head_top"]  # thorax and upper_neck share the neck (documented)
    h36m = [OPEN[i] for i in convention_index(OPEN, "h36m17")]
    assert h36m[:4] == ["pelvis", "right_hip", "right_knee", "right_ankle"]  # joint centres, not coco_*
    assert h36m[7:11] == ["spine2", "neck", "nose", "head_top"]


SHARED_MODEL_POINTS = {"mpii16": 1}  # thorax and upper_neck -> neck (see the module docstring)
#: spin24 (export layout) borrows mpii16's and h36m17's model points: thorax/upper_neck -> neck,
#: head/head_top -> head_top, and on a model without coco_* points neck_nose/nose -> nose.
SHARED_MODEL_POINTS_BY_MODEL = {("spin24", "open"): 2, ("spin24", "smpl"): 3}


def test_every_convention_maps_to_distinct_model_keypoints_except_documented():
    for name, conv in CONVENTIONS.items():
        for kind, names in (("open", OPEN), ("smpl", SMPL_ONLY)):
            distinct = len(set(convention_index(names, name).tolist()))
            shared = SHARED_MODEL_POINTS_BY_MODEL.get((name, kind), SHARED_MODEL_POINTS.get(name, 0))
            assert distinct == conv.num_joints - shared, name


def test_missing_model_keypoint_error_names_the_joint():
    names = [n for n in SMPL_ONLY if n != "left_heel"]
    with pytest.raises(KeyError, match="coco23.*'left_heel'.*coco_left_heel"):
        convention_index(names, "coco23")


def test_select_keypoints_gathers_rows():
    kps = torch.arange(len(OPEN) * 3, dtype=torch.float32).reshape(1, len(OPEN), 3).repeat(2, 1, 1)
    out = select_keypoints(kps, OPEN, "mpii16")
    assert out.shape == (2, 16, 3)
    assert torch.equal(out[:, 6], kps[:, OPEN.index("pelvis")])
    assert torch.equal(out[:, 0], kps[:, OPEN.index("coco_right_ankle")])
    with pytest.raises(ValueError, match="names"):
        select_keypoints(kps[:, :10], OPEN, "mpii16")


def test_flip_swaps_sides_and_mirrors_x():
    kps = torch.rand(3, 17, 3, dtype=torch.float64) * 100
    flipped = flip_keypoints(kps, "coco17", image_width=640.0)
    assert torch.allclose(flipped[:, 5, 0], 640.0 - kps[:, 6, 0])  # left_shoulder <- mirrored right
    assert torch.equal(flipped[:, 5, 1:], kps[:, 6, 1:])
    assert torch.equal(flipped[:, 0, 1:], kps[:, 0, 1:])  # nose stays nose
    assert torch.allclose(flip_keypoints(flipped, "coco17", 640.0), kps)
    widths = torch.tensor([100.0, 200.0, 300.0], dtype=torch.float64)
    per_image = flip_keypoints(kps, "coco17", widths)
    assert torch.allclose(per_image[:, 0, 0], widths - kps[:, 0, 0])
    # pixel centre of column 0 (x = 0.5) maps to the centre of the last column (w - 0.5)
    one = torch.zeros(1, 17, 2)
    one[0, 0, 0] = 0.5
    assert flip_keypoints(one, "coco17", 640.0)[0, 0, 0].item() == 639.5


def test_convert_by_name_with_mask():
    coco23 = torch.rand(2, 23, 3)
    c17, m17 = convert(coco23, "coco23", "coco17")
    assert torch.equal(c17, coco23[:, :17]) and bool(m17.all())
    mpii, mask = convert(coco23[:, :17], "coco17", "mpii16")
    assert mask.tolist() == [True] * 6 + [False] * 4 + [True] * 6
    assert torch.equal(mpii[:, 0], coco23[:, 16])  # right_ankle
    assert torch.equal(mpii[:, 15], coco23[:, 9])  # left_wrist
    assert (mpii[:, 6:10] == 0).all()
    back, mask_back = convert(c17, "coco17", "coco23")
    assert mask_back.sum().item() == 17 and (back[:, 17:] == 0).all()


def test_root_point_is_mid_hip_or_pelvis():
    kps = torch.rand(4, 17, 3)
    assert torch.allclose(root_point(kps, "coco17"), (kps[:, 11] + kps[:, 12]) / 2)
    assert torch.equal(root_point(kps, "h36m17"), kps[:, 0])


def test_real_body_model_supports_every_convention_geometrically(body_model):
    """On the real (open) body model in T-pose (SMPL frame: y up, +x = body left)."""
    names = list(body_model.keypoint_names)
    with torch.no_grad():
        kps = body_model.rest_output().keypoints.double()
    for name, conv in CONVENTIONS.items():
        idx = convention_index(names, name)
        shared = SHARED_MODEL_POINTS_BY_MODEL.get((name, "open"), SHARED_MODEL_POINTS.get(name, 0))
        assert len(set(idx.tolist())) == conv.num_joints - shared, name
        joints = select_keypoints(kps, names, name)
        for left, right in conv.flip_pairs:  # flip pairs really are left/right of the body
            assert joints[0, left, 0] > joints[0, right, 0], (name, conv.joint_names[left])
        # mirroring the (nearly symmetric) body and swapping sides gives the body back
        mirrored = flip_keypoints(joints * torch.tensor([-1.0, 1.0, 1.0], dtype=joints.dtype), name)
        assert (mirrored - joints).norm(dim=-1).max() < 0.03, name
        # the root is near the pelvis
        assert (root_point(joints, name) - kps[:, names.index("pelvis")]).norm() < 0.1, name
    if any(n.startswith("coco_") for n in names):
        assert names[convention_index(names, "coco17")[11]] == "coco_left_hip"
    y = {n: select_keypoints(kps, names, "mpii16")[0, i, 1].item() for i, n in enumerate(CONVENTIONS["mpii16"].joint_names)}
    assert y["head_top"] > y["upper_neck"] >= y["thorax"] > y["pelvis"] > y["right_knee"] > y["right_ankle"]
    shoulder_y = select_keypoints(kps, names, "coco17")[0, 5, 1].item()
    assert abs(y["thorax"] - shoulder_y) < 0.1  # MPII thorax is at shoulder height
    y = {n: select_keypoints(kps, names, "h36m17")[0, i, 1].item() for i, n in enumerate(CONVENTIONS["h36m17"].joint_names)}
    assert y["head"] > y["neck_nose"] > y["thorax"] > y["spine"] > y["pelvis"]


def test_coco_table_matches_the_real_annotation_file(real_fixtures):
    import json

    cat = json.loads((real_fixtures / "coco" / "test_coco.json").read_text())["categories"][0]
    conv = get_convention("coco17")
    assert tuple(cat["keypoints"]) == conv.joint_names
    # the published skeleton is mirror-symmetric: flipping joint ids maps edges onto edges
    perm = conv.flip_permutation()
    edges = {frozenset((a - 1, b - 1)) for a, b in cat["skeleton"]}
    assert {frozenset((perm[a], perm[b])) for a, b in map(tuple, edges)} == edges


def test_mpii_table_matches_real_annotations(real_fixtures):
    import json

    conv = get_convention("mpii16")
    for person in json.loads((real_fixtures / "mpii" / "test_mpii.json").read_text()):
        y = {n: person["joints"][i][1] for i, n in enumerate(conv.joint_names)}
        x = {n: person["joints"][i][0] for i, n in enumerate(conv.joint_names)}
        # every fixture person is upright: head_top above upper_neck above thorax above pelvis above knees
        assert y["head_top"] < y["upper_neck"] < y["thorax"] < y["pelvis"] < min(y["left_knee"], y["right_knee"])
        assert min(x["left_hip"], x["right_hip"]) <= x["pelvis"] <= max(x["left_hip"], x["right_hip"])
        assert y["right_shoulder"] < y["right_hip"] and y["left_shoulder"] < y["left_hip"]
