"""Keypoint visibility from the depth buffer, boxes of the visible silhouette."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from annotator.body.joints import COCO17_NAMES, SMPL_JOINT_NAMES
from annotator.data.synth import pipeline as gen
from annotator.data.synth import scene
from annotator.data.synth.poses import BODY_JOINT_NAMES, euler_to_axis_angle

SIZE, FOCAL = 256, 300.0
K = {n: i for i, n in enumerate(COCO17_NAMES)}
TORSO = [K[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]


def _arms(shoulder_z: float) -> np.ndarray:
    """Both arms raised/lowered by ``shoulder_z`` deg from the T-pose (-75: down, +80: overhead)."""
    eul = np.zeros((1, len(BODY_JOINT_NAMES), 3))
    eul[0, BODY_JOINT_NAMES.index("left_shoulder")] = (0, 0, shoulder_z)
    eul[0, BODY_JOINT_NAMES.index("right_shoulder")] = (0, 0, -shoulder_z)  # mirrored
    return euler_to_axis_angle(eul)[0]


def _plan(people: list[tuple[float, float, float, float]], shoulder_z: float = -75.0) -> scene.ImagePlan:
    """A camera looking along world -z; people ``(u, v, depth, yaw_deg)`` standing upright."""
    persons = [
        scene.PersonPlan(body_pose=_arms(shoulder_z), betas=np.zeros(10),
                         rot_world=Rotation.from_euler("y", yaw, degrees=True).as_matrix(), archetype="stand",
                         placement=np.array([u, v, depth]), colours=np.full((scene.NUM_PARTS, 3), 0.6))
        for u, v, depth, yaw in people
    ]
    return scene.ImagePlan(index=0, width=SIZE, height=SIZE, focal=FOCAL, principal_point=np.array([SIZE / 2] * 2),
                           rot_cw=scene.look_at(np.zeros(3), np.array([0.0, 0.0, -1.0])), cam_centre=np.zeros(3),
                           light_dir=np.array([0.0, 0.0, -1.0]), ambient=0.4, people=persons,
                           rng=np.random.default_rng(0), placement="screen")


@pytest.fixture(scope="module")
def render(body_model):
    assets = gen.build_assets(body_model)
    own = torch.from_numpy(scene.own_parts_table(COCO17_NAMES, SMPL_JOINT_NAMES))

    def run(people, shoulder_z=-75.0):
        plan = _plan(people, shoulder_z)
        _, results = gen.render_chunk(body_model, assets, own, [plan], scene.DOMAINS["wild"])
        return results[0]
    return run


def test_person_behind_another_is_occluded(render):
    res = render([(128, 150, 3.0, 0.0), (128, 150, 5.0, 0.0)])  # same pixel, 2 m apart
    vis = res.visibility.numpy()
    assert (vis[0] == 2).all()  # the front person: all 17 visible
    assert (vis[1, TORSO] == 1).all()  # the back person's torso is hidden by the front one
    assert (vis[1, K["nose"]] == 1)
    assert res.areas[1] < 0.5 * res.areas[0]
    # side by side, nobody hides anybody
    apart = render([(60, 150, 4.0, 0.0), (196, 150, 4.0, 0.0)]).visibility.numpy()
    assert (apart[:, TORSO] == 2).all() and (apart[:, K["nose"]] == 2).all()


def test_self_occlusion_back_view_and_own_skin(render):
    front = render([(128, 140, 3.0, 0.0)]).visibility.numpy()[0]
    back = render([(128, 140, 3.0, 180.0)]).visibility.numpy()[0]
    # subject's left side towards the camera, arms overhead (lowered arms would hide the hips)
    side = render([(128, 140, 3.0, -90.0)], shoulder_z=80.0).visibility.numpy()[0]
    assert (front == 2).all()
    face = [K[n] for n in ("nose", "left_eye", "right_eye")]
    assert (back[face] == 1).all()  # the back of the head hides the face
    assert (back[TORSO] == 2).all()  # hips/shoulders seen through their own skin
    assert side[K["left_hip"]] == 2 and side[K["right_hip"]] == 1  # the far hip is behind the near thigh
    assert side[K["left_shoulder"]] == 2 and side[K["right_shoulder"]] == 1
    assert side[K["left_knee"]] == 2 and side[K["right_knee"]] == 1
    lowered = render([(128, 140, 3.0, -90.0)]).visibility.numpy()[0]
    assert lowered[K["left_hip"]] == 1  # ... hidden by the hanging forearm


def test_outside_keypoints_and_silhouette_box(render):
    res = render([(4, 120, 2.5, 0.0)])  # pelvis at the left border: the subject's right side leaves the image
    uv, vis = res.uv.numpy()[0], res.visibility.numpy()[0]
    outside = (uv[:, 0] < 0) | (uv[:, 0] >= SIZE) | (uv[:, 1] < 0) | (uv[:, 1] >= SIZE)
    assert outside.any() and (vis[outside] == 0).all() and (vis[~outside] > 0).all()
    x, y, w, h = res.boxes.numpy()[0]
    assert x == 0  # truncated at the border: the box is that of the visible silhouette
    assert 0 < res.areas[0] <= w * h
    assert y > 0 and y + h < SIZE and res.image.shape == (SIZE, SIZE, 3)
    # the box spans the in-image keypoints (a tight box of the whole silhouette contains them)
    inside = uv[~outside]
    assert (inside[:, 0] >= x - 1).all() and (inside[:, 0] <= x + w + 1).all()
    assert (inside[:, 1] >= y - 1).all() and (inside[:, 1] <= y + h + 1).all()
