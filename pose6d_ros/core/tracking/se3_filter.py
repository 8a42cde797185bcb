"""A filter of one object's pose T_cam_obj on SE(3), driven by the image stamps.

`PoseFilter` is an error-state Kalman filter of a damped constant-velocity model: position p
and velocity v (camera frame, metres), rotation R and angular velocity w (camera frame,
rad/s). The rotation is never an Euler-angle vector: it stays a matrix, and the filter's
error state holds a small rotation vector dtheta with R = Exp(dtheta) R_hat (a perturbation
on the left, in the camera frame), reset into R after every update. Velocities decay with a
time constant (`velocity_decay_s`), so a track that coasts without measurements slows down
instead of flying off.

Time is the stamp of each frame (seconds, from the image header), never the wall clock: a bag
played at any speed, or frames that arrive late, filter the same way.

`model='none'` keeps the last measurement as it is (identities and gating without smoothing).
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import cv2
import numpy as np

from pose6d_ros.core.geometry.poses import Pose

MODELS = ('constant_velocity', 'none')


@dataclass(frozen=True)
class MeasurementNoise:
    """Standard deviations of one kind of pose measurement.

    A pose from one camera knows the object's depth far worse than its sideways position, so
    the position noise is an ellipsoid elongated along the viewing ray.
    """

    lateral: float = 0.002      # metres, across the viewing ray
    depth: float = 0.008        # metres, along the viewing ray
    angle_deg: float = 3.0      # rotation, degrees

    def covariance(self, position):
        """The 6x6 covariance of a measurement at `position` (position, rotation vector)."""
        ray = np.asarray(position, dtype=np.float64)
        ray = ray / max(np.linalg.norm(ray), 1e-9)
        cov = np.zeros((6, 6))
        cov[:3, :3] = (self.lateral ** 2 * np.eye(3)
                       + (self.depth ** 2 - self.lateral ** 2) * np.outer(ray, ray))
        cov[3:, 3:] = math.radians(self.angle_deg) ** 2 * np.eye(3)
        return cov


@dataclass(frozen=True)
class FilterConfig:
    """The motion model of `PoseFilter`."""

    model: str = 'constant_velocity'   # or 'none': the last measurement, unfiltered
    acceleration: float = 0.5          # m/s^2, std of the white-noise acceleration
    angular_acceleration: float = 1.5  # rad/s^2, the same for rotation
    velocity_decay_s: float = 1.0      # s, time constant of the velocities' decay
    initial_speed: float = 0.3         # m/s, std of a new track's unknown velocity
    initial_angular_speed: float = 1.5  # rad/s, the same for its angular velocity

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f'filter model {self.model!r} is unknown; expected one of '
                             f'{", ".join(MODELS)}')


def exp_so3(rotvec):
    """Rotation matrix of a rotation vector (radians)."""
    return cv2.Rodrigues(np.asarray(rotvec, dtype=np.float64).reshape(3, 1))[0]


def log_so3(R):
    """Rotation vector (radians) of a rotation matrix; robust near 0 and near pi."""
    cos = min(1.0, max(-1.0, (np.trace(R) - 1.0) / 2.0))
    angle = math.acos(cos)
    if angle < 1e-6:
        return np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / 2.0
    if angle > math.pi - 1e-4:  # sin ~ 0: the axis from the symmetric part
        B = (R + np.eye(3)) / 2.0
        axis = np.sqrt(np.clip(np.diag(B), 0.0, None))
        i = int(np.argmax(axis))
        axis = B[i] / max(axis[i], 1e-12)
        return angle * axis / np.linalg.norm(axis)
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    return w * (angle / (2.0 * math.sin(angle)))


def _orthonormal(R):
    """The nearest rotation matrix (keeps R a rotation after many small products)."""
    if np.abs(R @ R.T - np.eye(3)).max() < 1e-10:  # the usual case: nothing to do
        return R
    U, _, Vt = np.linalg.svd(R)
    R = U @ Vt
    if np.linalg.det(R) < 0:
        U[:, -1] *= -1.0
        R = U @ Vt
    return R


class PoseFilter:
    """The pose of one object over time: predict to a stamp, update with a measured pose.

    Error state (12): dp, dv, dtheta, dw; `covariance` is the 6x6 of (p, theta) in the
    ROS order of PoseWithCovariance (x, y, z, rotation about x, y, z of the camera frame).
    """

    def __init__(self, pose, stamp, noise, config=None):
        self.config = config or FilterConfig()
        self.stamp = float(stamp)
        self.p = np.array(pose.t, dtype=np.float64)
        self.R = np.array(pose.R, dtype=np.float64)
        self.v = np.zeros(3)
        self.w = np.zeros(3)
        measurement = noise.covariance(self.p)
        self.P = np.zeros((12, 12))
        self.P[0:3, 0:3] = measurement[:3, :3]
        self.P[3:6, 3:6] = self.config.initial_speed ** 2 * np.eye(3)
        self.P[6:9, 6:9] = measurement[3:, 3:]
        self.P[9:12, 9:12] = self.config.initial_angular_speed ** 2 * np.eye(3)

    @property
    def pose(self):
        """The current estimate T_cam_obj."""
        return Pose(self.R, self.p)

    @property
    def covariance(self):
        """6x6 covariance of (position, rotation vector), camera frame."""
        index = np.r_[0:3, 6:9]
        return self.P[np.ix_(index, index)].copy()

    @property
    def speed(self):
        """(linear m/s, angular rad/s) of the current estimate."""
        return float(np.linalg.norm(self.v)), float(np.linalg.norm(self.w))

    def prediction(self, stamp):
        """The pose predicted at `stamp` (seconds), without changing the filter."""
        gain = self._drift_time(stamp)
        return Pose(exp_so3(self.w * gain) @ self.R, self.p + self.v * gain)

    def predict(self, stamp):
        """Move the estimate and its covariance to `stamp`; an earlier stamp changes nothing."""
        dt = float(stamp) - self.stamp
        if dt <= 0.0:
            return
        self.stamp = float(stamp)
        if self.config.model == 'none':
            return
        gain = self._drift_time(stamp, dt)
        decay = math.exp(-dt / self.config.velocity_decay_s)
        step = exp_so3(self.w * gain)
        self.p = self.p + self.v * gain
        self.R = _orthonormal(step @ self.R)
        self.v = self.v * decay
        self.w = self.w * decay
        F = np.eye(12)
        F[0:3, 3:6] = gain * np.eye(3)
        F[3:6, 3:6] = decay * np.eye(3)
        F[6:9, 6:9] = step            # a left perturbation is carried by the step's rotation
        F[6:9, 9:12] = gain * np.eye(3)
        F[9:12, 9:12] = decay * np.eye(3)
        self.P = F @ self.P @ F.T + self._process_noise(dt)

    def update(self, pose, noise):
        """Fuse a measured pose (already the symmetric equivalent closest to this estimate)."""
        R_meas = noise.covariance(pose.t)
        if self.config.model == 'none':
            self.p, self.R = np.array(pose.t, dtype=np.float64), np.array(pose.R)
            self.P[0:3, 0:3], self.P[6:9, 6:9] = R_meas[:3, :3], R_meas[3:, 3:]
            return
        residual = np.concatenate([pose.t - self.p, log_so3(pose.R @ self.R.T)])
        H = np.zeros((6, 12))
        H[0:3, 0:3] = np.eye(3)
        H[3:6, 6:9] = np.eye(3)
        S = H @ self.P @ H.T + R_meas
        K = np.linalg.solve(S, H @ self.P).T          # P H^T S^-1 (S and P are symmetric)
        delta = K @ residual
        self.p = self.p + delta[0:3]
        self.v = self.v + delta[3:6]
        self.R = _orthonormal(exp_so3(delta[6:9]) @ self.R)
        self.w = self.w + delta[9:12]
        IKH = np.eye(12) - K @ H
        self.P = IKH @ self.P @ IKH.T + K @ R_meas @ K.T  # Joseph form: stays symmetric PSD

    def reset(self, pose, stamp, noise):
        """Start again from `pose` at `stamp` (a confirmed jump): velocities unknown."""
        self.__init__(pose, stamp, noise, self.config)

    def _drift_time(self, stamp, dt=None):
        """Seconds of travel at the current velocity until `stamp`, with the decay."""
        dt = float(stamp) - self.stamp if dt is None else dt
        if dt <= 0.0 or self.config.model == 'none':
            return 0.0
        tau = self.config.velocity_decay_s
        return tau * (1.0 - math.exp(-dt / tau))

    def _process_noise(self, dt):
        """White-noise acceleration over dt, for position/velocity and rotation/rate."""
        block = np.array([[dt ** 3 / 3.0, dt ** 2 / 2.0], [dt ** 2 / 2.0, dt]])
        Q = np.zeros((12, 12))
        for start, sigma in ((0, self.config.acceleration),
                             (6, self.config.angular_acceleration)):
            for i in range(2):
                for j in range(2):
                    rows = slice(start + 3 * i, start + 3 * i + 3)
                    cols = slice(start + 3 * j, start + 3 * j + 3)
                    Q[rows, cols] = sigma ** 2 * block[i, j] * np.eye(3)
        return Q
