"""ADD, ADD-S, 5cm5deg, 2D projection, IoU and accuracy curves: values and invariants."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.spatial.transform import Rotation

from pose6d_ros.core.geometry import metrics
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.metrics import (
    accuracy_curve,
    add,
    add_auto,
    add_passed,
    add_s,
    cm_deg_passed,
    curve_auc,
    iou_2d,
    pose_errors,
    pose_iou_2d,
    projection_2d,
    rotation_error_deg,
    translation_error,
)
from pose6d_ros.core.geometry.objects import ObjectModel, Symmetries
from pose6d_ros.core.geometry.poses import box_keypoints, Pose, random_rotation

HALF = np.array([0.05, 0.03, 0.02])  # half extents of a 10 x 6 x 4 cm box
FLIP_Z = np.diag([-1.0, -1.0, 1.0, 1.0])  # 180 degrees about z: the box maps onto itself


def box_surface_grid(n=9):
    """Regular grid on the surface of the box [-HALF, HALF]: symmetric under FLIP_Z exactly."""
    axes = [np.linspace(-h, h, n) for h in HALF]
    grid = np.stack(np.meshgrid(*axes, indexing='ij'), axis=-1).reshape(-1, 3)
    on_surface = np.isclose(np.abs(grid), HALF).any(axis=1)
    return grid[on_surface]


def make_object(symmetric):
    symmetries = Symmetries(discrete=(FLIP_Z,)) if symmetric else Symmetries()
    keypoints = box_keypoints(-HALF, HALF)
    return ObjectModel('box', 1, keypoints, float(np.linalg.norm(2 * HALF)), symmetries)


def random_pose(rng, distance=0.6):
    return Pose(random_rotation(rng), rng.uniform([-0.1, -0.1, distance - 0.1],
                                                  [0.1, 0.1, distance + 0.1]))


def rotation_about(axis, degrees):
    axis = np.asarray(axis, dtype=np.float64)
    return Rotation.from_rotvec(axis / np.linalg.norm(axis) * np.radians(degrees)).as_matrix()


@pytest.fixture
def points():
    return box_surface_grid()


@pytest.fixture
def camera():
    return CameraModel.from_intrinsics(600.0, 605.0, 322.0, 241.0, 640, 480)


# --- ADD / ADD-S ------------------------------------------------------------------------------


def test_add_is_zero_for_identical_poses(points):
    pose = random_pose(np.random.default_rng(0))
    assert add(pose, pose, points) == 0.0
    assert add_s(pose, pose, points) == 0.0


def test_add_of_a_translation_offset_is_its_length(points):
    pose = random_pose(np.random.default_rng(1))
    offset = np.array([0.003, -0.004, 0.012])
    moved = Pose(pose.R, pose.t + offset)
    assert add(moved, pose, points) == pytest.approx(0.013, abs=1e-12)
    assert translation_error(moved, pose) == pytest.approx(0.013, abs=1e-12)


def test_add_s_never_exceeds_add():
    rng = np.random.default_rng(2)
    for _ in range(50):
        points = rng.uniform(-0.05, 0.05, (200, 3))
        pose_gt = random_pose(rng)
        pose_est = Pose(pose_gt.R @ rotation_about(rng.normal(size=3), rng.uniform(0, 40)),
                        pose_gt.t + rng.normal(0.0, 0.01, 3))
        assert add_s(pose_est, pose_gt, points) <= add(pose_est, pose_gt, points) + 1e-15


def test_add_s_is_invariant_under_the_object_symmetry(points):
    rng = np.random.default_rng(3)
    symmetry = Pose.from_matrix(FLIP_Z)
    pose_gt = random_pose(rng)
    flipped = pose_gt @ symmetry  # looks exactly the same
    assert add_s(flipped, pose_gt, points) < 1e-9
    assert add(flipped, pose_gt, points) > 0.03
    for _ in range(10):
        pose_est = Pose(pose_gt.R @ rotation_about(rng.normal(size=3), 8.0),
                        pose_gt.t + rng.normal(0.0, 0.005, 3))
        assert add_s(pose_est @ symmetry, pose_gt, points) == pytest.approx(
            add_s(pose_est, pose_gt, points), abs=1e-9)


def test_add_auto_uses_add_s_only_for_symmetric_objects(points):
    pose_gt = random_pose(np.random.default_rng(4))
    flipped = pose_gt @ Pose.from_matrix(FLIP_Z)
    plain, symmetric = make_object(False), make_object(True)
    assert not plain.uses_add_s and symmetric.uses_add_s
    assert add_auto(flipped, pose_gt, plain, points) == add(flipped, pose_gt, points)
    assert add_auto(flipped, pose_gt, symmetric, points) == add_s(flipped, pose_gt, points)
    assert add_passed(flipped, pose_gt, symmetric, points)
    assert not add_passed(flipped, pose_gt, plain, points)


def test_add_passed_uses_a_tenth_of_the_diameter(points):
    obj = make_object(False)
    threshold = 0.1 * obj.diameter
    pose = random_pose(np.random.default_rng(5))
    direction = np.array([0.6, 0.0, 0.8])
    just_inside = Pose(pose.R, pose.t + direction * threshold * 0.99)
    just_outside = Pose(pose.R, pose.t + direction * threshold * 1.01)
    assert add_passed(just_inside, pose, obj, points)
    assert not add_passed(just_outside, pose, obj, points)
    assert add_passed(just_outside, pose, obj, points, fraction=0.2)


def test_add_s_uses_the_kd_tree_and_matches_brute_force(monkeypatch):
    rng = np.random.default_rng(6)
    pose_gt = random_pose(rng)
    pose_est = Pose(pose_gt.R @ rotation_about([1, 2, 3], 5.0), pose_gt.t + [0.002, 0, 0.001])

    small = rng.uniform(-0.05, 0.05, (2000, 3))
    brute = cdist(pose_gt.transform(small), pose_est.transform(small)).min(axis=1).mean()
    assert add_s(pose_est, pose_gt, small) == pytest.approx(brute, rel=1e-12, abs=1e-15)

    calls = []

    class CountingTree(metrics.cKDTree):
        def __init__(self, data, *args, **kwargs):
            calls.append(len(data))
            super().__init__(data, *args, **kwargs)

    monkeypatch.setattr(metrics, 'cKDTree', CountingTree)
    large = rng.uniform(-0.05, 0.05, (20000, 3))
    value = add_s(pose_est, pose_gt, large)
    assert calls == [20000]
    assert 0.0 < value <= add(pose_est, pose_gt, large)


# --- rotation / translation, 5cm5deg ----------------------------------------------------------


def test_rotation_error_deg():
    pose = random_pose(np.random.default_rng(7))
    rotated = Pose(pose.R @ rotation_about([0.3, -1.0, 0.2], 12.5), pose.t)
    assert rotation_error_deg(rotated, pose) == pytest.approx(12.5, abs=1e-9)
    assert rotation_error_deg(pose, pose) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize('cm, deg, passed', [
    (4.9, 0.0, True), (0.0, 4.9, True), (4.9, 4.9, True),
    (5.1, 0.0, False), (0.0, 5.1, False), (5.1, 5.1, False), (4.9, 5.1, False),
    (5.1, 4.9, False),
])
def test_5cm5deg(cm, deg, passed):
    pose = random_pose(np.random.default_rng(8))
    direction = np.array([2.0, -1.0, 2.0]) / 3.0
    estimate = Pose(pose.R @ rotation_about([1.0, 1.0, 0.0], deg), pose.t + direction * cm / 100)
    assert cm_deg_passed(estimate, pose) is passed


# --- 2D projection ----------------------------------------------------------------------------


def test_projection_2d_is_zero_for_identical_poses(points, camera):
    pose = random_pose(np.random.default_rng(9))
    assert projection_2d(pose, pose, points, camera) == 0.0


@pytest.mark.parametrize('scale', [0.5, 2.0, 3.7])
def test_projection_2d_scales_with_the_camera(points, camera, scale):
    rng = np.random.default_rng(10)
    pose_gt = random_pose(rng)
    pose_est = Pose(pose_gt.R @ rotation_about([0, 1, 1], 3.0), pose_gt.t + [0.004, 0.0, 0.01])
    scaled = CameraModel(camera.K * [[scale], [scale], [1.0]], None,
                         round(camera.width * scale), round(camera.height * scale))
    assert np.allclose(scaled.K, [[600 * scale, 0, 322 * scale], [0, 605 * scale, 241 * scale],
                                  [0, 0, 1]])
    error = projection_2d(pose_est, pose_gt, points, camera)
    assert error > 1.0
    assert projection_2d(pose_est, pose_gt, points, scaled) == pytest.approx(scale * error,
                                                                             rel=1e-12)


def test_projection_2d_of_a_known_shift(camera):
    points = np.array([[0.0, 0.0, 0.0]])
    pose = Pose(np.eye(3), [0.0, 0.0, 1.0])
    shifted = Pose(np.eye(3), [0.01, 0.0, 1.0])
    assert projection_2d(shifted, pose, points, camera) == pytest.approx(6.0, abs=1e-12)


def test_projection_2d_behind_the_camera_is_infinite(points, camera):
    behind = Pose(np.eye(3), [0.0, 0.0, -1.0])
    assert projection_2d(behind, behind, points, camera) == float('inf')


# --- IoU --------------------------------------------------------------------------------------


@pytest.mark.parametrize('box_a, box_b, expected', [
    ((10, 20, 50, 80), (10, 20, 50, 80), 1.0),
    ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),
    ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges
    ((0, 0, 2, 2), (1, 0, 3, 2), 1.0 / 3.0),  # half of each box overlaps
    ((0, 0, 4, 4), (0, 0, 2, 4), 0.5),  # one box is half of the other
    ((0, 0, 0, 0), (0, 0, 0, 0), 0.0),  # degenerate: zero area
    ((5, 5, 5, 9), (0, 0, 10, 10), 0.0),  # degenerate: zero width
    ((10, 10, 0, 0), (0, 0, 10, 10), 0.0),  # degenerate: inverted corners
])
def test_iou_2d(box_a, box_b, expected):
    assert iou_2d(box_a, box_b) == pytest.approx(expected, abs=1e-12)
    assert iou_2d(box_b, box_a) == pytest.approx(expected, abs=1e-12)


def test_pose_iou_2d_scores_the_boxes_of_the_projected_model(camera):
    cube = box_keypoints(-np.full(3, 0.05), np.full(3, 0.05))[:8]
    truth = Pose(np.eye(3), [0.0, 0.0, 1.0])
    assert pose_iou_2d(truth, truth, cube, camera) == pytest.approx(1.0, abs=1e-12)
    # Half a side to the right: the front face spans the box both ways, so the boxes share
    # half their width, as (0, 0, 2, 2) and (1, 0, 3, 2) do.
    shifted = Pose(np.eye(3), [0.05, 0.0, 1.0])
    assert pose_iou_2d(shifted, truth, cube, camera) == pytest.approx(1.0 / 3.0, abs=1e-9)
    behind = Pose(np.eye(3), [0.0, 0.0, -1.0])
    assert pose_iou_2d(behind, truth, cube, camera) == 0.0


# --- curves -----------------------------------------------------------------------------------


def test_accuracy_curve_known_values():
    errors = [0.25, 0.5, 0.75, float('inf'), float('nan')]
    thresholds = [0.0, 0.3, 0.5, 0.6, 1.0, 1e300]
    assert np.allclose(accuracy_curve(errors, thresholds), [0.0, 0.2, 0.2, 0.4, 0.6, 0.6])
    assert np.array_equal(accuracy_curve([], [0.1, 0.2]), [0.0, 0.0])


def test_curve_auc_known_values():
    assert curve_auc([0.0, 0.0, 0.0], 0.1) == pytest.approx(1.0, abs=1e-12)
    assert curve_auc([0.25, 0.5, 0.75, float('inf')], 1.0) == pytest.approx(0.375, abs=1e-12)
    assert curve_auc([0.05], 0.1) == pytest.approx(0.5, abs=1e-12)
    assert curve_auc([0.2, 1.0], 0.1) == 0.0  # at or beyond the largest threshold
    assert curve_auc([float('inf'), float('nan')], 0.1) == 0.0  # misses never pass
    assert curve_auc([], 0.1) == 0.0


def test_curve_auc_matches_a_fine_integration():
    errors = np.random.default_rng(11).exponential(0.03, 200)
    errors[::10] = np.nan
    thresholds = np.linspace(0.0, 0.1, 200001)
    accuracy = accuracy_curve(errors, thresholds)
    integral = np.sum((accuracy[1:] + accuracy[:-1]) / 2 * np.diff(thresholds)) / 0.1
    assert curve_auc(errors, 0.1) == pytest.approx(integral, abs=1e-4)


# --- pose_errors ------------------------------------------------------------------------------


@pytest.mark.parametrize('symmetric', [False, True])
def test_pose_errors_agrees_with_the_single_functions(points, camera, symmetric):
    obj = make_object(symmetric)
    rng = np.random.default_rng(12)
    pose_gt = random_pose(rng)
    proj_values = []
    for estimate in (pose_gt,
                     Pose(pose_gt.R @ rotation_about([1, 0, 1], 3.0), pose_gt.t + [0.004, 0, 0]),
                     pose_gt @ Pose.from_matrix(FLIP_Z),
                     Pose(pose_gt.R, pose_gt.t + [0.007, 0.0, 0.0]),  # ~7 px
                     Pose(pose_gt.R @ rotation_about([0, 1, 0], 30.0), pose_gt.t + [0, 0, 0.1])):
        result = pose_errors(estimate, pose_gt, obj, camera, points)
        assert result.proj_2d_passed == (result.proj_2d < 5.0)
        proj_values.append(result.proj_2d)
        assert result.add == add_auto(estimate, pose_gt, obj, points)
        assert result.add_passed == add_passed(estimate, pose_gt, obj, points)
        assert result.rotation_deg == rotation_error_deg(estimate, pose_gt)
        assert result.translation == translation_error(estimate, pose_gt)
        assert result.cm_deg_passed == cm_deg_passed(estimate, pose_gt)
        assert result.proj_2d == projection_2d(estimate, pose_gt, points, camera)
        assert result.proj_2d_passed == (result.proj_2d < metrics.PROJ_2D_THRESHOLD)
        assert result.iou_2d == pose_iou_2d(estimate, pose_gt, points, camera)
    assert result.add > 0.01 and not result.add_passed and not result.cm_deg_passed
    assert min(proj_values) < 5.0 and any(5.0 < value < 10.0 for value in proj_values)


# --- keypoints before PnP ---------------------------------------------------------------------


def test_keypoint_errors_of_the_true_projection_are_zero(camera):
    obj = make_object(symmetric=False)
    pose = Pose(rotation_about([1, 2, 0], 30), [0.02, -0.01, 0.5])
    found = metrics.keypoint_errors(camera.project(pose.transform(obj.keypoints)), pose, obj,
                                    camera)
    assert np.allclose(found.errors, 0.0, atol=1e-9) and len(found.errors) == 9
    assert (found.corners_found, found.corner_swaps) == (8, 0)


def test_keypoint_errors_count_swapped_and_skip_missing_corners(camera):
    obj = make_object(symmetric=False)
    pose = Pose(rotation_about([0, 1, 1], 50), [0.0, 0.0, 0.6])
    truth = camera.project(pose.transform(obj.keypoints))
    estimate = truth.copy()
    estimate[[0, 7]] = truth[[7, 0]]               # two corners taken for each other
    estimate[3] += [2.0, 0.0]                      # one 2 px off, still nearest its own
    estimate[5] = np.nan                           # one not found
    found = metrics.keypoint_errors(estimate, pose, obj, camera)
    assert (found.corners_found, found.corner_swaps) == (7, 2)
    assert len(found.errors) == 8
    assert sorted(found.errors)[-3] == pytest.approx(2.0)
    distance = np.linalg.norm(truth[0] - truth[7])
    assert np.sort(found.errors)[-2:] == pytest.approx([distance, distance])
