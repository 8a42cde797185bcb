"""What the estimator returns for one object instance (contract shared with the ROS side)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pose6d_ros.core.geometry.poses import box_keypoints, Pose


@dataclass
class ObjectPose:
    """One detected object instance and its 6D pose T_cam_obj, in the camera's optical frame.

    Pixels are camera-image pixels (after the network's letterbox is undone); metres elsewhere.
    """

    object_name: str
    class_id: int                 # index in the model's object set
    object_id: int                # dataset object id
    score: float                  # detection confidence in [0, 1]; with a calibrated model
    #                               (its card's calibration:) the precision measured there
    keypoints: np.ndarray         # (9, 2) 8 box corners + centre, camera pixels; NaN if missing
    box: np.ndarray               # (4,) x_min, y_min, x_max, y_max, camera pixels
    R: np.ndarray                 # (3, 3) rotation object -> camera
    t: np.ndarray                 # (3,) translation, metres
    reprojection_error: float     # mean over PnP inliers, pixels
    inliers: int                  # keypoints that agreed with the pose
    box_size: np.ndarray = field(default_factory=lambda: np.zeros(3))    # object box, metres
    box_centre: np.ndarray = field(default_factory=lambda: np.zeros(3))  # in the object frame
    # Set by the tracker (core/tracking): the instance's identity for its life, where the
    # pose comes from ('network', 'tracked' or 'predicted'; `score` is then its quality), and
    # the 6x6 covariance of (x, y, z, rotation about x, y, z), camera frame, or None.
    track_id: int | None = None
    source: str = 'network'
    covariance: np.ndarray | None = None

    @property
    def instance_name(self):
        """'<object>_<track id>' of a tracked instance; None for an untracked one."""
        return None if self.track_id is None else f'{self.object_name}_{self.track_id}'

    def label(self):
        """'<object> <score>'; a tracked one: '<object>_<track id> <score> <source>'."""
        if self.track_id is None:
            return f'{self.object_name} {float(self.score):.2f}'
        return f'{self.instance_name} {float(self.score):.2f} {self.source}'

    @property
    def pose(self):
        """T_cam_obj as a Pose."""
        return Pose(self.R, self.t)

    @property
    def quat_xyzw(self):
        """Rotation as a quaternion in ROS order (x, y, z, w)."""
        return self.pose.quat_xyzw

    def box_corners_camera(self):
        """The 8 corners of the object's box in the camera frame (8, 3), keypoint order."""
        half = np.asarray(self.box_size) / 2.0
        corners = box_keypoints(self.box_centre - half, self.box_centre + half)[:8]
        return self.pose.transform(corners)

    def to_dict(self):
        """Plain JSON-ready values (quaternion in x, y, z, w order); tracking fields if tracked."""
        data = {
            'object_name': self.object_name,
            'class_id': int(self.class_id),
            'object_id': int(self.object_id),
            'score': float(self.score),
            't': np.asarray(self.t, dtype=float).tolist(),
            'quat_xyzw': self.quat_xyzw.tolist(),
            'R': np.asarray(self.R, dtype=float).tolist(),
            'keypoints': np.where(np.isfinite(self.keypoints), self.keypoints, None).tolist(),
            'box': np.asarray(self.box, dtype=float).tolist(),
            'reprojection_error': float(self.reprojection_error),
            'inliers': int(self.inliers),
            'box_size': np.asarray(self.box_size, dtype=float).tolist(),
            'box_centre': np.asarray(self.box_centre, dtype=float).tolist(),
        }
        if self.track_id is not None:
            data.update(track_id=int(self.track_id), source=self.source,
                        covariance=(None if self.covariance is None
                                    else np.asarray(self.covariance, dtype=float).tolist()))
        return data
