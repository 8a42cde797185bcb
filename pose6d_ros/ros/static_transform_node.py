"""pose6d_static_transform_node: one fixed transform on /tf_static, in Python.

Where the camera sits on the robot, for webcam.launch.py, without the C++ tf2_ros package
and its static_transform_publisher: tf2_ros_py's StaticTransformBroadcaster (transient local,
so late subscribers get it too). Parameters (STATIC_TRANSFORM_PARAMETERS in parameters.py):
parent_frame, child_frame, x, y, z (m), roll, pitch, yaw (rad, fixed axes as URDF rpy and
static_transform_publisher's --roll --pitch --yaw).
"""

from __future__ import annotations

from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from tf2_ros.static_transform_broadcaster import StaticTransformBroadcaster

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.ros import conversions, spinning
from pose6d_ros.ros.descriptors import declare_parameters, refused_change
from pose6d_ros.ros.parameters import STATIC_TRANSFORM_PARAMETERS


class StaticTransformNode(Node):
    """Broadcasts parent_frame -> child_frame once, on /tf_static (latched)."""

    def __init__(self, **kwargs):
        super().__init__('static_transform', **kwargs)
        declare_parameters(self, STATIC_TRANSFORM_PARAMETERS)
        self.add_on_set_parameters_callback(
            lambda parameters: refused_change(parameters, STATIC_TRANSFORM_PARAMETERS)
            or SetParametersResult(successful=True))
        value = {name: self.get_parameter(name).value for name in STATIC_TRANSFORM_PARAMETERS}
        if value['parent_frame'] == value['child_frame']:
            raise Pose6dError(f'parameters parent_frame and child_frame are both '
                              f"{value['parent_frame']!r}; expected two different frames")
        types = conversions.RclpyTypes()
        header = conversions.make_header(types, self.get_clock().now().nanoseconds,
                                         value['parent_frame'])
        transform = conversions.static_transform(
            types, header, value['child_frame'], [value[k] for k in 'xyz'],
            [value[k] for k in ('roll', 'pitch', 'yaw')])
        self.broadcaster = StaticTransformBroadcaster(self)
        self.broadcaster.sendTransform(transform)
        t, q = transform.transform.translation, transform.transform.rotation
        self.get_logger().info(
            f"{value['parent_frame']} -> {value['child_frame']}: xyz ({t.x:g}, {t.y:g}, "
            f'{t.z:g}) m, quat_xyzw ({q.x:.4f}, {q.y:.4f}, {q.z:.4f}, {q.w:.4f})')


def main(args=None):
    """Entry point of `ros2 run pose6d_ros pose6d_static_transform_node`."""
    spinning.init(args)
    node = None
    try:
        node = StaticTransformNode()
        spinning.spin_until_done(node)
    except Pose6dError as exc:
        rclpy.logging.get_logger('static_transform').fatal(str(exc))
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
