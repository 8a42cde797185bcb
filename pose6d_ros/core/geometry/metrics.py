"""Standard 6D pose metrics: ADD, ADD-S, 5cm5deg, 2D projection, 2D IoU, and curves.

All distances are in metres, angles in degrees, image errors in pixels. Poses are `Pose`
objects (T_cam_obj). Missed detections count as infinite error in the curves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from pose6d_ros.core.geometry.poses import box_2d, rotation_angle_deg

ADD_THRESHOLD = 0.1        # fraction of the object's diameter
CM_DEG_THRESHOLDS = (0.05, 5.0)  # metres, degrees
PROJ_2D_THRESHOLD = 5.0    # pixels
IOU_THRESHOLD = 0.5


def add(pose_est, pose_gt, points):
    """ADD: mean distance between model points (N, 3) under the two poses (metres)."""
    return float(np.linalg.norm(pose_est.transform(points) - pose_gt.transform(points),
                                axis=1).mean())


def add_s(pose_est, pose_gt, points):
    """ADD-S: mean distance from each ground-truth point to the nearest estimated point (metres).

    Uses a k-d tree, so it stays fast for 10k+ model points.
    """
    distances, _ = cKDTree(pose_est.transform(points)).query(pose_gt.transform(points), k=1)
    return float(distances.mean())


def add_auto(pose_est, pose_gt, obj, points=None):
    """ADD-S for objects with symmetries, ADD otherwise (the usual LINEMOD rule)."""
    points = obj.model_points() if points is None else points
    return add_s(pose_est, pose_gt, points) if obj.uses_add_s else add(pose_est, pose_gt, points)


def add_passed(pose_est, pose_gt, obj, points=None, fraction=ADD_THRESHOLD):
    """True when ADD(-S) is below `fraction` of the object's diameter."""
    return add_auto(pose_est, pose_gt, obj, points) < fraction * obj.diameter


def rotation_error_deg(pose_est, pose_gt):
    """Angle of the relative rotation, degrees."""
    return rotation_angle_deg(pose_est.R, pose_gt.R)


def translation_error(pose_est, pose_gt):
    """Distance between the two translations, metres."""
    return float(np.linalg.norm(pose_est.t - pose_gt.t))


def cm_deg_passed(pose_est, pose_gt, max_translation=CM_DEG_THRESHOLDS[0],
                  max_rotation_deg=CM_DEG_THRESHOLDS[1]):
    """The 5cm5deg test: translation error < 5 cm and rotation error < 5 degrees."""
    return (translation_error(pose_est, pose_gt) < max_translation
            and rotation_error_deg(pose_est, pose_gt) < max_rotation_deg)


def projection_2d(pose_est, pose_gt, points, camera):
    """2D projection error: mean pixel distance between the model points projected both ways."""
    return _projection_error(*_project_both(pose_est, pose_gt, points, camera))


def iou_2d(box_a, box_b):
    """Intersection over union of two boxes (x_min, y_min, x_max, y_max)."""
    box_a, box_b = np.asarray(box_a, dtype=np.float64), np.asarray(box_b, dtype=np.float64)
    width = min(box_a[2], box_b[2]) - max(box_a[0], box_b[0])
    height = min(box_a[3], box_b[3]) - max(box_a[1], box_b[1])
    intersection = max(width, 0.0) * max(height, 0.0)
    area_a = max(box_a[2] - box_a[0], 0.0) * max(box_a[3] - box_a[1], 0.0)
    area_b = max(box_b[2] - box_b[0], 0.0) * max(box_b[3] - box_b[1], 0.0)
    union = area_a + area_b - intersection
    return float(intersection / union) if union > 0 else 0.0


def pose_iou_2d(pose_est, pose_gt, points, camera):
    """Zhang et al.'s 2D IoU: the overlap of the object's mask boxes under both poses.

    The masks are rendered whole (occlusion ignored) with the estimated and the true pose, so
    a pose is scored, not a detector's box. The box of a mask is that of the projected mesh
    vertices, up to pixel rounding: the projection of a mesh is that of its triangles.
    """
    return _box_iou(*_project_both(pose_est, pose_gt, points, camera))


def _project_both(pose_est, pose_gt, points, camera):
    """The model points in pixels (N, 2) under each pose; NaN behind the camera."""
    return camera.project(pose_est.transform(points)), camera.project(pose_gt.transform(points))


def _projection_error(uv_est, uv_gt):
    error = np.linalg.norm(uv_est - uv_gt, axis=1)
    return float(np.nanmean(error)) if np.isfinite(error).any() else float('inf')


def _box_iou(uv_est, uv_gt):
    uv_est = uv_est[np.isfinite(uv_est).all(axis=1)]
    uv_gt = uv_gt[np.isfinite(uv_gt).all(axis=1)]
    if len(uv_est) == 0 or len(uv_gt) == 0:
        return 0.0
    return iou_2d(box_2d(uv_est), box_2d(uv_gt))


def accuracy_curve(errors, thresholds):
    """Fraction of errors below each threshold; NaN/inf errors (misses) never pass."""
    errors = np.asarray(errors, dtype=np.float64).ravel()
    thresholds = np.asarray(thresholds, dtype=np.float64).ravel()
    if errors.size == 0:
        return np.zeros_like(thresholds)
    errors = np.where(np.isfinite(errors), errors, np.inf)
    return (errors[None, :] < thresholds[:, None]).mean(axis=1)


def curve_auc(errors, max_threshold):
    """Area under the accuracy-vs-threshold curve on [0, max_threshold], normalised to [0, 1].

    Exact: an error e passes every threshold in (e, max_threshold], so it adds
    max(0, 1 - e / max_threshold); misses add 0 and perfect errors give 1.
    """
    errors = np.asarray(errors, dtype=np.float64).ravel()
    if errors.size == 0:
        return 0.0
    errors = np.where(np.isfinite(errors), errors, np.inf)
    return float(np.mean(np.clip(1.0 - errors / max_threshold, 0.0, 1.0)))


@dataclass
class PoseErrors:
    """Every error of one estimate against its ground truth."""

    add: float               # ADD or ADD-S, by the object's symmetries, metres
    add_passed: bool         # add < 0.1 * diameter
    rotation_deg: float
    translation: float       # metres
    cm_deg_passed: bool
    proj_2d: float           # pixels
    proj_2d_passed: bool
    iou_2d: float            # overlap of the boxes of the masks rendered with both poses


def pose_errors(pose_est, pose_gt, obj, camera, points=None):
    """All standard errors of one estimate (ADD(-S) chosen from the object's symmetries)."""
    points = obj.model_points() if points is None else points
    add_value = add_auto(pose_est, pose_gt, obj, points)
    projected = _project_both(pose_est, pose_gt, points, camera)  # for 2D projection and IoU
    proj = _projection_error(*projected)
    return PoseErrors(
        add=add_value,
        add_passed=add_value < ADD_THRESHOLD * obj.diameter,
        rotation_deg=rotation_error_deg(pose_est, pose_gt),
        translation=translation_error(pose_est, pose_gt),
        cm_deg_passed=cm_deg_passed(pose_est, pose_gt),
        proj_2d=proj,
        proj_2d_passed=proj < PROJ_2D_THRESHOLD,
        iou_2d=_box_iou(*projected),
    )


@dataclass
class KeypointErrors:
    """How the estimated 2D keypoints (before PnP) sit on the ground truth's, in pixels."""

    errors: np.ndarray       # (n,) distance of each found keypoint to its own projection
    corners_found: int       # found corners (of the 8)
    corner_swaps: int        # found corners nearer another corner's projection than their own


def keypoint_errors(keypoints, pose_gt, obj, camera):
    """Errors of an estimate's 2D keypoints ((9, 2), NaN where not found) against the truth.

    A corner nearer another corner's projection than its own is a swap: the network found a
    corner but took it for another (for a keypoint network, the usual way a pose goes wrong
    while the object is found). A symmetric object's corners swap with their symmetric
    partners by nature; its pose can still be right.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    truth = camera.project(pose_gt.transform(obj.keypoints))
    found = np.isfinite(keypoints).all(axis=1)
    errors = np.linalg.norm(keypoints[found] - truth[found], axis=1)
    corners = np.flatnonzero(found[:8])
    distances = np.linalg.norm(keypoints[corners, None] - truth[None, :8], axis=2)
    swaps = int(np.sum(np.argmin(distances, axis=1) != corners)) if len(corners) else 0
    return KeypointErrors(errors, len(corners), swaps)
