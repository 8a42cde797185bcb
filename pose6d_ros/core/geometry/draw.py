"""Debug overlays: projected 3D boxes, object axes, keypoints, outlines and labels (cv2).

Every function draws on an RGB uint8 image (H, W, 3) in camera pixels; `draw_poses` returns a
copy, the other helpers draw in place so that callers can layer them.
"""

from __future__ import annotations

import cv2
import numpy as np

from pose6d_ros.core.geometry.poses import BOX_EDGES, CENTRE_INDEX

# Tableau-10 colours as RGB bytes, indexed by class id (the markers use the same order).
COLORS_RGB = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
AXIS_COLORS_RGB = ((255, 0, 0), (0, 255, 0), (0, 0, 255))  # x red, y green, z blue
TRUTH_RGB = (255, 255, 255)  # ground truth beside an estimate: thin white lines
PASS_RGB = (30, 140, 50)     # verdict badges: passed ...
FAIL_RGB = (215, 30, 30)     # ... and failed


def draw_poses(image_rgb, poses, camera, thickness=2, axes=True, labels=True):
    """A copy of `image_rgb` (H, W, 3) uint8 with each ObjectPose's box, axes and label.

    Points behind the camera are skipped; the box uses the instance's box size and centre in
    the object frame, the axes are half the largest box side long.
    """
    out = np.ascontiguousarray(image_rgb, dtype=np.uint8).copy()
    for obj in poses:
        color = COLORS_RGB[int(obj.class_id) % len(COLORS_RGB)]
        corners = camera.project(obj.box_corners_camera())  # (8, 2), NaN behind the camera
        draw_box(out, corners, color, thickness)
        if axes:
            length = 0.5 * float(np.max(obj.box_size)) if np.any(obj.box_size) else 0.05
            draw_axes(out, obj.pose, obj.box_centre, length, camera, thickness)
        if labels:
            anchor = label_anchor(corners, obj.box)
            if anchor is not None:
                draw_label(out, obj.label(), anchor, color)
    return out


def draw_box(image, corners, color, thickness=2):
    """Draw the 12 edges of a box from its 8 projected corners (8, 2) in keypoint order."""
    for a, b in BOX_EDGES:
        _line(image, corners[a], corners[b], color, thickness)


def draw_axes(image, pose, origin, length, camera, thickness=2):
    """Draw the object's x, y, z axes (red, green, blue) of `length` metres from `origin`.

    pose: T_cam_obj; origin: (3,) in the object frame.
    """
    origin = np.asarray(origin, dtype=np.float64).reshape(3)
    points_obj = np.vstack([origin, origin + np.eye(3) * length])
    pixels = camera.project(pose.transform(points_obj))
    for axis in range(3):
        _line(image, pixels[0], pixels[axis + 1], AXIS_COLORS_RGB[axis], thickness)


def draw_keypoints(image, keypoints, color, radius=3, numbers=True):
    """Mark the 9 projected keypoints (9, 2): corners as dots, the centre as a ring.

    numbers: write each keypoint's index beside it, so the corner order can be checked.
    """
    for index, point in enumerate(np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)):
        at = _finite_int(point)
        if at is None:
            continue
        if index == CENTRE_INDEX:
            cv2.circle(image, at, radius + 1, color, 1, cv2.LINE_AA)
        else:
            cv2.circle(image, at, radius, color, cv2.FILLED, cv2.LINE_AA)
            cv2.circle(image, at, radius, (255, 255, 255), 1, cv2.LINE_AA)
        if numbers:  # white on a dark rim: legible on any background
            where = (at[0] + radius + 1, at[1] - radius - 1)
            for ink, weight in (((0, 0, 0), 2), ((255, 255, 255), 1)):
                cv2.putText(image, str(index), where, cv2.FONT_HERSHEY_SIMPLEX, 0.3, ink, weight,
                            cv2.LINE_AA)


def draw_outline(image, mask, color, thickness=1):
    """Draw the outline of a bool mask (h, w), scaled to the image when its size differs."""
    mask = np.asarray(mask, dtype=np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return
    # Pixel centres map as (x + 0.5) * scale - 0.5, as in CameraModel.resized.
    scale = np.array([image.shape[1] / mask.shape[1], image.shape[0] / mask.shape[0]])
    scaled = [np.round((c.reshape(-1, 2) + 0.5) * scale - 0.5).astype(np.int32)
              for c in contours]
    cv2.polylines(image, scaled, True, color, thickness, cv2.LINE_AA)


def draw_label(image, text, anchor, color, scale=0.5):
    """Write `text` in white on a `color` box whose bottom-left is near `anchor` (x, y)."""
    at = _finite_int(anchor)
    if at is None:
        return
    font = cv2.FONT_HERSHEY_SIMPLEX
    (w, h), baseline = cv2.getTextSize(text, font, scale, 1)
    x = min(max(at[0], 0), max(image.shape[1] - w, 0))
    y = min(max(at[1] - 4, h + 2), image.shape[0] - baseline)
    cv2.rectangle(image, (x, y - h - 2), (x + w, y + baseline), color, cv2.FILLED)
    cv2.putText(image, text, (x, y), font, scale, (255, 255, 255), 1, cv2.LINE_AA)


def draw_verdicts(image, verdicts):
    """Badges in the top-left corner, one per (name, passed): 'ADD ok' green, '2D fail' red."""
    scale = float(np.clip(image.shape[1] / 800.0, 0.3, 0.5))  # legible, small at any size
    font = cv2.FONT_HERSHEY_SIMPLEX
    x = 2
    for name, passed in verdicts:
        text = f'{name} {"ok" if passed else "fail"}'
        (w, h), baseline = cv2.getTextSize(text, font, scale, 1)
        cv2.rectangle(image, (x, 2), (x + w + 4, h + baseline + 6),
                      PASS_RGB if passed else FAIL_RGB, cv2.FILLED)
        cv2.putText(image, text, (x + 2, h + 4), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
        x += w + 7


def label_anchor(corners, box=None):
    """Where a label goes: the top-left of the finite projected corners, else of `box`."""
    corners = np.asarray(corners, dtype=np.float64).reshape(-1, 2)
    finite = corners[np.isfinite(corners).all(axis=1)]
    if len(finite):
        return finite[:, 0].min(), finite[:, 1].min()
    box = np.asarray(box if box is not None else [], dtype=np.float64)
    if box.size == 4 and np.isfinite(box).all():
        return box[0], box[1]
    return None


def _finite_int(point):
    point = np.asarray(point, dtype=np.float64)
    if not np.isfinite(point).all() or np.abs(point).max() > 1e6:
        return None
    return int(round(point[0])), int(round(point[1]))


def _line(image, p, q, color, thickness):
    a, b = _finite_int(p), _finite_int(q)
    if a is not None and b is not None:
        cv2.line(image, a, b, color, thickness, cv2.LINE_AA)
