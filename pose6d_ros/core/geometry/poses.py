"""Rigid poses, quaternions (scipy, ROS order x, y, z, w) and the 9 box keypoints.

A pose `T_cam_obj` maps object-frame points into the camera frame: x_cam = R @ x_obj + t.
Translations are in metres.

Keypoint order (contract, shared by both networks): corner k of the tight box
[min, max] in the object frame has
    x = max_x if k & 4 else min_x,  y = max_y if k & 2 else min_y,  z = max_z if k & 1 else min_z,
so corner 0 is (min, min, min) and corner 7 is (max, max, max); keypoint 8 is the box centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

NUM_KEYPOINTS = 9  # 8 box corners + centre
CENTRE_INDEX = 8

# The 12 edges of the box as pairs of corner indices (corners differ in exactly one bit).
BOX_EDGES = tuple((a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count('1') == 1)


@dataclass(frozen=True)
class Pose:
    """A rigid transform (R: 3x3 rotation, t: (3,) metres); name instances by frames: T_cam_obj."""

    R: np.ndarray
    t: np.ndarray

    def __post_init__(self):
        R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        t = np.asarray(self.t, dtype=np.float64).reshape(3)
        object.__setattr__(self, 'R', R)
        object.__setattr__(self, 't', t)

    @classmethod
    def identity(cls):
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def from_matrix(cls, T):
        """From a 4x4 homogeneous matrix."""
        T = np.asarray(T, dtype=np.float64)
        return cls(T[:3, :3], T[:3, 3])

    @classmethod
    def from_quat_xyzw(cls, quat_xyzw, t):
        """From a quaternion in ROS order (x, y, z, w), normalised here, and a translation."""
        return cls(Rotation.from_quat(quat_xyzw).as_matrix(), t)

    @classmethod
    def from_rotvec(cls, rotvec, t):
        """From an axis-angle vector (radians), as OpenCV's rvec."""
        return cls(Rotation.from_rotvec(np.ravel(rotvec)).as_matrix(), t)

    @property
    def quat_xyzw(self):
        """Rotation as a unit quaternion (x, y, z, w) with w >= 0."""
        q = Rotation.from_matrix(self.R).as_quat()
        return q if q[3] >= 0 else -q

    @property
    def rotvec(self):
        return Rotation.from_matrix(self.R).as_rotvec()

    def as_matrix(self):
        """The 4x4 homogeneous matrix."""
        T = np.eye(4)
        T[:3, :3] = self.R
        T[:3, 3] = self.t
        return T

    def inverse(self):
        """T_b_a from T_a_b."""
        return Pose(self.R.T, -self.R.T @ self.t)

    def __matmul__(self, other):
        """Compose: (T_a_b @ T_b_c) = T_a_c, or apply to points (N, 3)."""
        if isinstance(other, Pose):
            return Pose(self.R @ other.R, self.R @ other.t + self.t)
        return self.transform(other)

    def transform(self, points):
        """Transform points (N, 3) -> (N, 3)."""
        return np.asarray(points, dtype=np.float64) @ self.R.T + self.t

    def is_valid(self, atol=1e-6):
        """True for a finite proper rotation (orthonormal, det +1) and a finite translation."""
        return bool(np.isfinite(self.R).all() and np.isfinite(self.t).all()
                    and np.allclose(self.R @ self.R.T, np.eye(3), atol=atol)
                    and abs(np.linalg.det(self.R) - 1.0) < atol)


def project_points(points_obj, pose, camera):
    """Project object-frame points (N, 3) with pose T_cam_obj into camera pixels (N, 2)."""
    return camera.project(pose.transform(points_obj))


def box_keypoints(box_min, box_max):
    """The 9 keypoints (9, 3) of the axis-aligned box [box_min, box_max]: corners, centre."""
    box_min = np.asarray(box_min, dtype=np.float64)
    box_max = np.asarray(box_max, dtype=np.float64)
    bits = (np.arange(8)[:, None] >> np.array([2, 1, 0])) & 1  # (8, 3) x, y, z bit of corner k
    corners = np.where(bits == 1, box_max, box_min)
    return np.concatenate([corners, ((box_min + box_max) / 2)[None]], axis=0)


def rotation_angle_deg(R_a, R_b):
    """Angle in degrees of the rotation between R_a and R_b."""
    cos = (np.trace(np.asarray(R_a).T @ np.asarray(R_b)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def random_rotation(rng):
    """A uniformly distributed rotation matrix drawn from a numpy Generator."""
    return Rotation.random(random_state=rng).as_matrix()


def box_2d(pixels):
    """Tight 2D box (x_min, y_min, x_max, y_max) of pixels (N, 2)."""
    pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    return np.concatenate([pixels.min(axis=0), pixels.max(axis=0)])
