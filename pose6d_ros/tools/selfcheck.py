"""`pose6d selfcheck`: the geometry core checked end to end on built-in data, in a second.

A procedural box object seen by a distorted camera at random poses: projection, PnP back
to the pose, the metrics, and the letterbox mapping. Every check reports a number and passes
or fails; nothing here needs a file, a GPU or ROS.
"""

from __future__ import annotations

import time

import numpy as np

from pose6d_ros.core.geometry import metrics
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.objects import ObjectModel, Symmetries
from pose6d_ros.core.geometry.pnp import solve_pnp
from pose6d_ros.core.geometry.poses import box_keypoints, Pose, random_rotation


def builtin_object():
    """A 20 x 16 x 18 cm box whose model points are its surface grid (no mesh file)."""
    half = np.array([0.10, 0.08, 0.09])
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 9)] * 3, indexing='ij'), -1).reshape(-1, 3)
    on_surface = np.abs(grid).max(axis=1) == 1.0
    diameter = float(2 * np.linalg.norm(half))
    obj = ObjectModel('builtin_box', 1, box_keypoints(-half, half), diameter,
                      Symmetries(discrete=(np.diag([-1.0, -1.0, 1.0, 1.0]),)))
    return obj, grid[on_surface] * half


def builtin_camera():
    """A 640x480 camera with LINEMOD-like intrinsics and visible radial distortion."""
    return CameraModel.from_intrinsics(572.4, 573.6, 325.3, 242.0, 640, 480,
                                       D=[-0.2, 0.08, 0.001, -0.001, 0.01])


def run(trials=500, seed=0):
    """Run every check; returns a report dict with 'passed' overall."""
    rng = np.random.default_rng(seed)
    obj, points = builtin_object()
    camera = builtin_camera()
    checks = {}

    recovered, outlier_recovered, add_pass, proj_pass, elapsed = 0, 0, 0, 0, 0.0
    for _ in range(trials):
        pose = Pose(random_rotation(rng), rng.uniform([-0.1, -0.1, 0.35], [0.1, 0.1, 0.6]))
        pixels = camera.project(pose.transform(obj.keypoints)) + rng.normal(0, 1.0, (9, 2))
        start = time.perf_counter()
        result = solve_pnp(obj.keypoints, pixels, camera)
        elapsed += time.perf_counter() - start
        if result.success:
            estimate = result.pose
            recovered += (metrics.translation_error(estimate, pose) < 0.01
                          and metrics.rotation_error_deg(estimate, pose) < 1.0)
            add_pass += metrics.add_passed(estimate, pose, obj, points)
            proj_pass += metrics.projection_2d(estimate, pose, points, camera) < 5.0
        bad = rng.choice(9, 2, replace=False)
        pixels[bad] += rng.uniform(30, 100, (2, 2)) * rng.choice([-1, 1], (2, 2))
        result = solve_pnp(obj.keypoints, pixels, camera)
        outlier_recovered += result.success and not set(bad) & set(result.inliers) and (
            metrics.translation_error(result.pose, pose) < 0.01
            and metrics.rotation_error_deg(result.pose, pose) < 2.0)
    checks['pnp_1px_noise_within_1cm_1deg'] = _check(recovered / trials, 0.99)
    checks['pnp_2_of_9_outliers_rejected_within_1cm_2deg'] = _check(
        outlier_recovered / trials, 0.99)
    checks['add_0.1d_pass_rate'] = _check(add_pass / trials, 0.99)
    checks['proj_2d_5px_pass_rate'] = _check(proj_pass / trials, 0.99)

    pose = Pose(random_rotation(rng), [0.0, 0.0, 0.5])
    symmetry = Pose.from_matrix(obj.symmetries.discrete[0])
    checks['add_identical_poses_is_zero'] = _check(metrics.add(pose, pose, points), 0.0, 'max')
    checks['add_s_symmetry_invariant'] = _check(
        metrics.add_s(pose @ symmetry, pose, points), 1e-9, 'max')

    letterbox = camera.letterbox(320, 320)
    pixels = rng.uniform([0, 0], [camera.width - 1, camera.height - 1], (1000, 2))
    round_trip = np.abs(letterbox.to_camera(letterbox.to_input(pixels)) - pixels).max()
    checks['letterbox_round_trip_px'] = _check(float(round_trip), 1e-9, 'max')
    undistorted = camera.pixels_to_normalized(pixels)
    checks['undistort_round_trip_px'] = _check(
        float(np.abs(camera.normalized_to_pixels(undistorted) - pixels).max()), 1e-3, 'max')

    return {
        'passed': all(c['passed'] for c in checks.values()),
        'checks': checks,
        'pnp_us_per_solve_mean': round(elapsed / trials * 1e6, 1),
        'trials': trials,
        'camera': repr(camera),
    }


def _check(value, limit, kind='min'):
    passed = value >= limit if kind == 'min' else value <= limit
    return {'value': value, 'limit': limit, 'kind': kind, 'passed': bool(passed)}


def format_report(report):
    """Human-readable lines for the terminal."""
    lines = [f'pose6d selfcheck: {report["trials"]} random poses, {report["camera"]}']
    for name, check in report['checks'].items():
        bound = '>=' if check['kind'] == 'min' else '<='
        value = check['value']
        value = f'{value:.4g}' if isinstance(value, float) else str(value)
        lines.append(f'  [{"ok" if check["passed"] else "FAIL"}] {name}: {value} '
                     f'(needs {bound} {check["limit"]:g})')
    lines.append(f'  PnP: {report["pnp_us_per_solve_mean"]:.0f} us per solve (9 points)')
    lines.append('all checks passed' if report['passed'] else 'SOME CHECKS FAILED')
    return '\n'.join(lines)
