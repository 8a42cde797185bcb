"""The ROS-free core of pose6d_ros: it never imports rclpy or any message package."""

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.geometry.camera import CameraModel, Letterbox
from pose6d_ros.core.geometry.objects import ObjectModel, ObjectSet, Symmetries
from pose6d_ros.core.geometry.pnp import PnPResult, solve_pnp
from pose6d_ros.core.geometry.poses import Pose

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
