"""The ROS-free core of pose6d_ros: it never imports rclpy or any message package."""

from pose6d_ros.core.camera import CameraModel, Letterbox
from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.geometry import Pose
from pose6d_ros.core.objects import ObjectModel, ObjectSet, Symmetries
from pose6d_ros.core.pnp import PnPResult, solve_pnp

__all__ = [
    'CameraModel',
    'Letterbox',
    'ObjectModel',
    'ObjectSet',
    'PnPResult',
    'Pose',
    'Pose6dError',
    'Symmetries',
    'solve_pnp',
]
