"""Pose algebra, quaternion order and sign, box keypoint order, rotation angles."""

import cv2
from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.poses import (
    box_2d,
    BOX_EDGES,
    box_keypoints,
    CENTRE_INDEX,
    NUM_KEYPOINTS,
    Pose,
    project_points,
    random_rotation,
    rotation_angle_deg,
)

PROPERTY = settings(max_examples=80, deadline=None)


def random_pose(rng):
    return Pose(random_rotation(rng), rng.uniform(-1.0, 1.0, 3))


def rot_z(degrees):
    return Rotation.from_euler('z', degrees, degrees=True).as_matrix()


# --- pose algebra -----------------------------------------------------------------------------


def test_pose_times_inverse_is_identity():
    rng = np.random.default_rng(0)
    for _ in range(20):
        T = random_pose(rng)
        for product in (T @ T.inverse(), T.inverse() @ T):
            assert np.allclose(product.as_matrix(), np.eye(4), atol=1e-12)
        assert np.allclose(T.inverse().as_matrix(), np.linalg.inv(T.as_matrix()), atol=1e-12)


def test_composition_applies_right_pose_first():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(50, 3))
    for _ in range(20):
        A, B = random_pose(rng), random_pose(rng)
        assert np.allclose((A @ B).transform(points), A.transform(B.transform(points)),
                           atol=1e-12)
        assert np.allclose((A @ B).as_matrix(), A.as_matrix() @ B.as_matrix(), atol=1e-12)
    # pose @ points is transform
    assert np.allclose(A @ points, A.transform(points))


def test_transform_is_R_x_plus_t():
    pose = Pose(rot_z(90), [1.0, 2.0, 3.0])
    assert np.allclose(pose.transform([[1.0, 0.0, 0.0]]), [[1.0, 3.0, 3.0]], atol=1e-12)


def test_matrix_round_trip():
    rng = np.random.default_rng(2)
    T = random_pose(rng)
    M = T.as_matrix()
    assert M.shape == (4, 4) and np.array_equal(M[3], [0, 0, 0, 1])
    again = Pose.from_matrix(M)
    assert np.array_equal(again.R, T.R) and np.array_equal(again.t, T.t)
    assert np.array_equal(again.as_matrix(), M)


def test_pose_coerces_shapes_and_identity():
    pose = Pose(np.eye(3).ravel().tolist(), [[1.0], [2.0], [3.0]])
    assert pose.R.shape == (3, 3) and pose.t.shape == (3,)
    assert np.array_equal(Pose.identity().as_matrix(), np.eye(4))


# --- quaternions and rotation vectors ---------------------------------------------------------

quaternion_components = st.floats(-1.0, 1.0, allow_nan=False)


@PROPERTY
@given(st.tuples(*[quaternion_components] * 4),
       st.tuples(*[st.floats(-5.0, 5.0)] * 3),
       st.floats(0.1, 10.0))
def test_quaternion_round_trip_property(components, t, scale):
    q = np.array(components)
    norm = np.linalg.norm(q)
    if norm < 1e-3:
        q, norm = np.array([0.0, 0.0, 0.0, 1.0]), 1.0
    q = q / norm
    pose = Pose.from_quat_xyzw(q * scale, t)  # normalised on the way in
    out = pose.quat_xyzw
    assert out[3] >= 0.0
    assert np.isclose(np.linalg.norm(out), 1.0)
    assert np.allclose(out, q, atol=1e-9) or np.allclose(out, -q, atol=1e-9)
    if q[3] > 1e-6:
        assert np.allclose(out, q, atol=1e-9)
    elif q[3] < -1e-6:
        assert np.allclose(out, -q, atol=1e-9)
    assert np.allclose(pose.t, t)
    assert pose.is_valid()


def test_quaternion_order_is_xyzw():
    pose = Pose(rot_z(90), np.zeros(3))
    assert np.allclose(pose.quat_xyzw, [0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)
    rotated = Pose.from_quat_xyzw([0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5)], [0, 0, 0])
    assert np.allclose(rotated.transform([[1.0, 0.0, 0.0]]), [[0.0, 1.0, 0.0]], atol=1e-12)
    # (x, y, z, w) = (1, 0, 0, 0) is 180 deg about x, not the identity
    flipped = Pose.from_quat_xyzw([1.0, 0.0, 0.0, 0.0], [0, 0, 0])
    assert np.allclose(flipped.R, np.diag([1.0, -1.0, -1.0]), atol=1e-12)


def test_quaternion_sign_is_w_positive():
    q = -np.array([0.1, -0.2, 0.3, 0.9]) / np.linalg.norm([0.1, -0.2, 0.3, 0.9])
    out = Pose.from_quat_xyzw(q, [0, 0, 0]).quat_xyzw
    assert out[3] > 0 and np.allclose(out, -q, atol=1e-12)


def test_rotvec_agrees_with_rodrigues():
    rng = np.random.default_rng(3)
    for _ in range(30):
        axis = rng.normal(size=3)
        rotvec = axis / np.linalg.norm(axis) * rng.uniform(0.0, np.pi - 1e-3)
        pose = Pose.from_rotvec(rotvec.reshape(3, 1), [0.1, 0.2, 0.3])
        R_cv, _ = cv2.Rodrigues(rotvec)
        assert np.allclose(pose.R, R_cv, atol=1e-12)
        assert np.allclose(pose.rotvec, cv2.Rodrigues(pose.R)[0].ravel(), atol=1e-9)
        assert np.allclose(pose.rotvec, rotvec, atol=1e-9)


# --- box keypoints ----------------------------------------------------------------------------


def test_box_keypoint_order():
    box_min, box_max = np.array([-0.03, -0.02, 0.005]), np.array([0.05, 0.01, 0.04])
    keypoints = box_keypoints(box_min, box_max)
    assert keypoints.shape == (NUM_KEYPOINTS, 3) == (9, 3)
    for k in range(8):
        for axis, bit in enumerate((4, 2, 1)):
            expected = box_max[axis] if k & bit else box_min[axis]
            assert keypoints[k, axis] == expected, (k, axis)
    assert np.array_equal(keypoints[0], box_min) and np.array_equal(keypoints[7], box_max)
    assert np.allclose(keypoints[CENTRE_INDEX], (box_min + box_max) / 2)
    assert CENTRE_INDEX == 8
    assert np.allclose(keypoints[4], [0.05, -0.02, 0.005])  # max x only
    assert np.allclose(keypoints[1], [-0.03, -0.02, 0.04])  # max z only


def test_box_edges():
    keypoints = box_keypoints([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])
    assert len(BOX_EDGES) == 12 and len(set(BOX_EDGES)) == 12
    degree = np.zeros(8, dtype=int)
    for a, b in BOX_EDGES:
        assert 0 <= a < b < 8
        assert np.count_nonzero(keypoints[a] != keypoints[b]) == 1, (a, b)
        degree[[a, b]] += 1
    assert (degree == 3).all()
    lengths = sorted(np.linalg.norm(keypoints[a] - keypoints[b]) for a, b in BOX_EDGES)
    assert np.allclose(lengths, [1.0] * 4 + [2.0] * 4 + [3.0] * 4)


def test_box_2d_and_project_points():
    assert np.array_equal(box_2d([[3.0, 4.0], [1.0, 7.0], [2.0, 5.0]]), [1.0, 4.0, 3.0, 7.0])
    camera = CameraModel.from_intrinsics(500.0, 500.0, 320.0, 240.0, 640, 480)
    pose = Pose(rot_z(30), [0.0, 0.0, 1.0])
    points = np.array([[0.1, 0.0, 0.0], [0.0, 0.0, 0.0]])
    pixels = project_points(points, pose, camera)
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    assert np.allclose(pixels, [[320 + 50 * c, 240 + 50 * s], [320.0, 240.0]], atol=1e-9)


# --- angles and validity ----------------------------------------------------------------------


@pytest.mark.parametrize('degrees', [0.0, 0.5, 30.0, 90.0, 179.0, 180.0])
def test_rotation_angle_deg(degrees):
    axis = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5])
    R = Rotation.from_rotvec(axis * np.radians(degrees)).as_matrix()
    base = random_rotation(np.random.default_rng(4))
    assert rotation_angle_deg(np.eye(3), R) == pytest.approx(degrees, abs=1e-6)
    assert rotation_angle_deg(base, base @ R) == pytest.approx(degrees, abs=1e-6)
    assert rotation_angle_deg(R, np.eye(3)) == pytest.approx(degrees, abs=1e-6)


def test_is_valid():
    rng = np.random.default_rng(5)
    assert Pose(random_rotation(rng), [1.0, 2.0, 3.0]).is_valid()
    assert not Pose(np.diag([1.0, 1.0, -1.0]), np.zeros(3)).is_valid()  # reflection
    assert not Pose(-np.eye(3), np.zeros(3)).is_valid()  # point reflection, det -1
    assert not Pose(2.0 * np.eye(3), np.zeros(3)).is_valid()  # scaling
    assert not Pose(np.eye(3), [0.0, np.nan, 0.0]).is_valid()
    assert not Pose(np.full((3, 3), np.nan), np.zeros(3)).is_valid()
    nearly = rot_z(10) + 1e-3
    assert not Pose(nearly, np.zeros(3)).is_valid()
    assert Pose(nearly, np.zeros(3)).is_valid(atol=1e-2)
