"""Debug overlays: projected 3D boxes, object axes and labels drawn on a camera image (cv2)."""

from __future__ import annotations

import cv2
import numpy as np

from pose6d_ros.core.geometry.poses import BOX_EDGES

# Tableau-10 colours as RGB bytes, indexed by class id (the markers use the same order).
COLORS_RGB = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
AXIS_COLORS_RGB = ((255, 0, 0), (0, 255, 0), (0, 0, 255))  # x red, y green, z blue


def draw_poses(image_rgb, poses, camera, thickness=2, axes=True, labels=True):
    """A copy of `image_rgb` (H, W, 3) uint8 with each ObjectPose's box, axes and label.

    Points behind the camera are skipped; the box uses the instance's box size and centre in
    the object frame, the axes are half the largest box side long.
    """
    out = np.ascontiguousarray(image_rgb, dtype=np.uint8).copy()
    for obj in poses:
        color = COLORS_RGB[int(obj.class_id) % len(COLORS_RGB)]
        corners = camera.project(obj.box_corners_camera())  # (8, 2), NaN behind the camera
        for a, b in BOX_EDGES:
            _line(out, corners[a], corners[b], color, thickness)
        if axes:
            length = 0.5 * float(np.max(obj.box_size)) if np.any(obj.box_size) else 0.05
            origin = np.asarray(obj.box_centre, dtype=np.float64)
            points_obj = np.vstack([origin, origin + np.eye(3) * length])
            pixels = camera.project(obj.pose.transform(points_obj))
            for axis in range(3):
                _line(out, pixels[0], pixels[axis + 1], AXIS_COLORS_RGB[axis], thickness)
        if labels:
            anchor = _label_anchor(obj, corners)
            if anchor is not None:
                text = f'{obj.object_name} {float(obj.score):.2f}'
                _label(out, text, anchor, color)
    return out


def _finite_int(point):
    point = np.asarray(point, dtype=np.float64)
    if not np.isfinite(point).all() or np.abs(point).max() > 1e6:
        return None
    return int(round(point[0])), int(round(point[1]))


def _line(image, p, q, color, thickness):
    a, b = _finite_int(p), _finite_int(q)
    if a is not None and b is not None:
        cv2.line(image, a, b, color, thickness, cv2.LINE_AA)


def _label_anchor(obj, corners):
    finite = corners[np.isfinite(corners).all(axis=1)]
    if len(finite):
        return finite[:, 0].min(), finite[:, 1].min()
    box = np.asarray(obj.box, dtype=np.float64)
    if box.size == 4 and np.isfinite(box).all():
        return box[0], box[1]
    return None


def _label(image, text, anchor, color):
    at = _finite_int(anchor)
    if at is None:
        return
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.5
    (w, h), baseline = cv2.getTextSize(text, font, scale, 1)
    x = min(max(at[0], 0), max(image.shape[1] - w, 0))
    y = min(max(at[1] - 4, h + 2), image.shape[0] - baseline)
    cv2.rectangle(image, (x, y - h - 2), (x + w, y + baseline), color, cv2.FILLED)
    cv2.putText(image, text, (x, y), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
