"""Symmetric objects: the equivalent of a measured pose that is closest to a reference pose.

An object with symmetries looks the same under x -> S x (its `Symmetries`), so T_cam_obj and
T_cam_obj @ S are the same observation and a network may answer either. Before a measurement
is compared with a track or filtered, it is replaced by its equivalent closest in rotation to
the track's pose: a symmetric object then never flips between equivalent orientations.

Discrete symmetries are enumerated; for a continuous one (any rotation about an axis through
a point) the best angle has a closed form.
"""

from __future__ import annotations

import numpy as np

from pose6d_ros.core.geometry.poses import Pose


def skew(v):
    """The cross-product matrix [v]x (3, 3)."""
    x, y, z = v
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def axis_rotation(axis, angle):
    """Rotation matrix of `angle` radians about the unit `axis` (Rodrigues)."""
    K = skew(axis)
    return np.eye(3) + np.sin(angle) * K + (1.0 - np.cos(angle)) * (K @ K)


def rotation_angle(R_a, R_b):
    """Angle in radians of the rotation between R_a and R_b."""
    cos = (np.trace(R_a.T @ R_b) - 1.0) / 2.0
    return float(np.arccos(min(1.0, max(-1.0, cos))))


def closest_equivalent(pose, reference, symmetries):
    """The pose equivalent to `pose` under the object's symmetries closest to `reference`.

    pose, reference: T_cam_obj Poses; symmetries: the object's `Symmetries`. Closest means
    the smallest rotation angle to `reference`; the translation follows the chosen symmetry
    (it moves only for symmetries about an axis or point off the object's origin).
    """
    if not symmetries.is_symmetric:
        return pose
    best, best_angle = pose, rotation_angle(pose.R, reference.R)
    for S in symmetries.discrete_poses():
        candidate = pose @ S
        for axis, offset in symmetries.continuous:
            candidate = _best_about_axis(candidate, reference.R, axis, offset)
        angle = rotation_angle(candidate.R, reference.R)
        if angle < best_angle - 1e-12:
            best, best_angle = candidate, angle
    return best


def symmetric_angle(pose, reference, symmetries):
    """Rotation distance (radians) between two poses, up to the object's symmetries."""
    return rotation_angle(closest_equivalent(pose, reference, symmetries).R, reference.R)


def _best_about_axis(pose, R_ref, axis, offset):
    """The pose turned by the best angle about `axis` through `offset`: closest to R_ref.

    trace(R_ref^T R Rot(a, theta)) = A cos(theta) + B sin(theta) + const, with
    M = R_ref^T R, A = tr(M) - a^T M a and B = tr(M [a]x); its maximum is at atan2(B, A).
    """
    axis = np.asarray(axis, dtype=np.float64)
    M = R_ref.T @ pose.R
    A = np.trace(M) - axis @ M @ axis
    B = np.trace(M @ skew(axis))
    rotation = axis_rotation(axis, float(np.arctan2(B, A)))
    offset = np.asarray(offset, dtype=np.float64)
    # x -> Rot (x - o) + o: a rotation about the axis through o
    return pose @ Pose(rotation, offset - rotation @ offset)
