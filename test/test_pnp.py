"""PnP: round trips with noise, distortion and outliers, weights, and every degenerate input."""

import re

import numpy as np
import pytest

from pose6d_ros.core.geometry import pnp
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.pnp import solve_pnp
from pose6d_ros.core.geometry.poses import box_keypoints, Pose, random_rotation, rotation_angle_deg

# 1 px of noise gives an orientation error of roughly 1 px / (object size in pixels) radians,
# so "1 cm / 1 deg in 99% of trials" holds for an object spanning a few hundred pixels:
# a 20 x 16 x 18 cm box at 0.35-0.6 m with a 600 px focal length.
KEYPOINTS = box_keypoints([-0.10, -0.08, -0.09], [0.10, 0.08, 0.09])


@pytest.fixture
def camera():
    return CameraModel.from_intrinsics(600.0, 602.0, 330.0, 236.0, 640, 480,
                                       D=[-0.25, 0.1, 0.001, -0.002, -0.02])


def random_pose(rng):
    return Pose(random_rotation(rng), rng.uniform([-0.1, -0.08, 0.35], [0.1, 0.08, 0.6]))


def close(result, pose, cm=0.01, deg=1.0):
    return (result.success and np.linalg.norm(result.t - pose.t) < cm
            and rotation_angle_deg(result.R, pose.R) < deg)


def test_noisy_round_trip_with_distortion_recovers_99_percent(camera):
    rng = np.random.default_rng(1)
    trials, recovered = 400, 0
    for _ in range(trials):
        pose = random_pose(rng)
        pixels = camera.project(pose.transform(KEYPOINTS)) + rng.normal(0.0, 1.0, (9, 2))
        recovered += close(solve_pnp(KEYPOINTS, pixels, camera), pose)
    assert recovered / trials >= 0.99


def test_distortion_is_honoured(camera):
    """Exact pixels of a distorted camera give the exact pose; ignoring D does not."""
    pose = Pose(random_rotation(np.random.default_rng(3)), [0.12, -0.1, 0.45])
    pixels = camera.project(pose.transform(KEYPOINTS))
    result = solve_pnp(KEYPOINTS, pixels, camera)
    assert result.success and result.reprojection_error < 1e-6
    assert np.allclose(result.t, pose.t, atol=1e-7)
    pinhole = CameraModel(camera.K, None, camera.width, camera.height)
    assert solve_pnp(KEYPOINTS, pixels, pinhole).reprojection_error > 1.0


def test_ransac_survives_25_percent_gross_outliers(camera):
    rng = np.random.default_rng(2)
    points_3d = np.concatenate([KEYPOINTS, rng.uniform(-0.08, 0.08, (3, 3))])  # 12 points
    trials, recovered = 300, 0
    for _ in range(trials):
        pose = random_pose(rng)
        pixels = camera.project(pose.transform(points_3d)) + rng.normal(0.0, 1.0, (12, 2))
        bad = rng.choice(12, 3, replace=False)
        pixels[bad] += rng.uniform(30, 120, (3, 2)) * rng.choice([-1, 1], (3, 2))
        result = solve_pnp(points_3d, pixels, camera)
        recovered += close(result, pose) and not set(bad) & set(result.inliers)
    assert recovered / trials >= 0.99


def test_without_ransac_outliers_spoil_the_pose(camera):
    rng = np.random.default_rng(4)
    pose = random_pose(rng)
    pixels = camera.project(pose.transform(KEYPOINTS))
    pixels[:2] += 80.0
    assert close(solve_pnp(KEYPOINTS, pixels, camera), pose)
    assert not close(solve_pnp(KEYPOINTS, pixels, camera, ransac=False), pose)


def test_weights_discount_a_bad_point(camera):
    rng = np.random.default_rng(5)
    pose = random_pose(rng)
    pixels = camera.project(pose.transform(KEYPOINTS))
    pixels[8] += [6.0, -6.0]  # a biased centre, below the RANSAC threshold
    uniform = solve_pnp(KEYPOINTS, pixels, camera, ransac=False)
    weights = np.ones(9)
    weights[8] = 1e-6
    weighted = solve_pnp(KEYPOINTS, pixels, camera, weights=weights, ransac=False)
    assert weighted.success and uniform.success
    assert np.linalg.norm(weighted.t - pose.t) < 0.2 * np.linalg.norm(uniform.t - pose.t)
    assert np.linalg.norm(weighted.t - pose.t) < 1e-4


def test_four_coplanar_points_solve(camera):
    square = np.array([[-0.05, -0.05, 0.0], [0.05, -0.05, 0.0], [0.05, 0.05, 0.0],
                       [-0.05, 0.05, 0.0]])
    tilt = Pose.from_rotvec([0.3, -0.2, 0.1], [0.0, 0.0, 0.0])
    pose = Pose(np.diag([1.0, -1.0, -1.0]), [0.01, -0.02, 0.4]) @ tilt  # facing the camera
    result = solve_pnp(square, camera.project(pose.transform(square)), camera)
    assert close(result, pose, cm=1e-4, deg=0.01)
    assert list(result.inliers) == [0, 1, 2, 3]


def test_reported_errors_are_real_pixels(camera):
    pose = Pose(np.eye(3), [0.0, 0.0, 0.5])
    pixels = camera.project(pose.transform(KEYPOINTS))
    pixels[3] += [2.0, 0.0]
    result = solve_pnp(KEYPOINTS, pixels, camera)
    assert result.success
    assert result.errors.shape == (9,)
    assert 0.5 < result.errors[3] < 2.5
    assert result.reprojection_error == pytest.approx(result.errors[result.inliers].mean())


@pytest.mark.parametrize('points_3d, points_2d, message', [
    (KEYPOINTS[:3], np.zeros((3, 2)), 'at least 4 points; got 3'),
    (KEYPOINTS, np.zeros((8, 2)), 'got 9 3D points but 8 2D points'),
    (KEYPOINTS[:, :2], np.zeros((9, 2)), r'3D points must have shape \(N, 3\)'),
    (KEYPOINTS, np.zeros((9, 3)), r'2D points must have shape \(N, 2\)'),
    (np.linspace([0, 0, 0], [1, 1, 1], 9), np.random.default_rng(0).uniform(0, 99, (9, 2)),
     '3D points are collinear'),
    (np.zeros((9, 3)), np.random.default_rng(0).uniform(0, 99, (9, 2)), '3D points are collinear'),
    (KEYPOINTS, np.linspace([0, 0], [100, 50], 9), '2D points are collinear'),
])
def test_degenerate_input_is_a_clear_failure(camera, points_3d, points_2d, message):
    result = solve_pnp(points_3d, points_2d, camera)
    assert not result.success
    assert result.R is None and result.t is None
    assert re.search(message, result.message), result.message
    with pytest.raises(ValueError, match='PnP failed'):
        _ = result.pose


def test_nan_input_and_bad_weights_fail_clearly(camera):
    pixels = camera.project(Pose(np.eye(3), [0, 0, 0.5]).transform(KEYPOINTS))
    broken = pixels.copy()
    broken[2, 0] = np.nan
    assert 'NaN' in solve_pnp(KEYPOINTS, broken, camera).message
    assert 'weights must be 9 finite non-negative' in solve_pnp(
        KEYPOINTS, pixels, camera, weights=-np.ones(9)).message


def test_pose_behind_the_camera_is_rejected(camera, monkeypatch):
    pose = Pose(np.eye(3), [0.0, 0.0, 0.5])
    pixels = camera.project(pose.transform(KEYPOINTS))
    # Whatever the solver proposes, a pose that puts the object behind the camera is refused.
    monkeypatch.setattr(pnp, '_direct', lambda p3, xy: (np.zeros(3), np.array([0, 0, -0.5])))
    monkeypatch.setattr(pnp.cv2, 'solvePnPRefineLM', lambda *a: (a[4], a[5]))
    result = solve_pnp(KEYPOINTS, pixels, camera, ransac=False)
    assert not result.success
    assert 'behind the camera' in result.message


def test_a_millimetre_object_solves_instead_of_crashing():
    """In OpenCV, SQPnP asserts on a tiny point spread; the solver falls back to EPnP."""
    camera = CameraModel.from_intrinsics(500.0, 500.0, 320.0, 240.0, 640, 480)
    points = np.random.default_rng(0).normal(size=(9, 3)) * 1e-3  # a 1 mm object
    pose = Pose(np.eye(3), [0.0, 0.0, 0.05])
    result = solve_pnp(points, camera.project(pose.transform(points)), camera)
    assert result.success and np.allclose(result.t, pose.t, atol=1e-4)


def test_opencv_errors_inside_ransac_are_a_failure_not_a_crash(camera, monkeypatch):
    def raising(*args, **kwargs):
        raise pnp.cv2.error('simulated assertion')

    pose = Pose(np.eye(3), [0.0, 0.0, 0.5])
    pixels = camera.project(pose.transform(KEYPOINTS))
    pixels[:2] += 80.0  # forces the RANSAC path
    monkeypatch.setattr(pnp.cv2, 'solvePnPRansac', raising)
    result = solve_pnp(KEYPOINTS, pixels, camera)
    assert not result.success and 'RANSAC found no pose' in result.message
