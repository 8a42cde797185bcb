"""pose6d_camera_node: a camera, video file or image folder as image_raw + camera_info.

The camera driver of webcam.launch.py (driver:=python): OpenCV capture in Python, no C++
driver to install. Topic names are relative (the launch file puts the node in /camera):

  publishes   image_raw (sensor_msgs/Image, rgb8) and camera_info (sensor_msgs/CameraInfo)
              with one header: the stamp taken as the frame arrived, frame_id the optical
              frame. Sensor-data QoS (best effort, keep last 5).
  serves      set_camera_info (sensor_msgs/SetCameraInfo), as camera drivers do through
              camera_info_manager: camera_calibration's COMMIT writes the calibration to the
              file camera_info_url names (its default for ''), and camera_info carries it
              from the next frame on. A bad request is answered with success false and why.

Parameters: CAMERA_PARAMETERS in parameters.py (docs/ros.md has the table), all read at
start-up. The work is `CameraStream` (camera.py, tested without ROS); here a capture thread
publishes each frame as it comes. A file played once (loop: false) ends the process.
"""

from __future__ import annotations

import threading

from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, Image
from sensor_msgs.srv import SetCameraInfo

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.ros import spinning
from pose6d_ros.ros.camera import CameraSettings, CameraStream
from pose6d_ros.ros.conversions import RclpyTypes
from pose6d_ros.ros.descriptors import declare_parameters, refused_change
from pose6d_ros.ros.parameters import CAMERA_PARAMETERS

STOP_TIMEOUT_S = 2.0  # a camera read in progress ends within a frame period


class CameraNode(Node):
    """Publishes the frames of its `source` parameter; see the module docstring."""

    def __init__(self, **kwargs):
        super().__init__('camera', **kwargs)
        declare_parameters(self, CAMERA_PARAMETERS)
        self.add_on_set_parameters_callback(self._parameters_callback)
        settings = CameraSettings(**{name: self.get_parameter(name).value
                                     for name in CAMERA_PARAMETERS})
        self.stream = CameraStream(settings, RclpyTypes(), warn=self.get_logger().warning,
                                   clock_ns=lambda: self.get_clock().now().nanoseconds)
        self.image_pub = self.create_publisher(Image, 'image_raw', qos_profile_sensor_data)
        self.info_pub = self.create_publisher(CameraInfo, 'camera_info',
                                              qos_profile_sensor_data)
        self.set_info_service = self.create_service(SetCameraInfo, 'set_camera_info',
                                                    self._set_camera_info_callback)
        self.finished = Future()   # done when a file played once ends, or the capture fails
        self.exit_code = 0
        self._stop = threading.Event()
        self.get_logger().info(f'publishing {self.image_pub.topic_name} and '
                               f'{self.info_pub.topic_name}: {self.stream.describe()}; '
                               f"serving {self.resolve_service_name('set_camera_info')}")
        self._thread = threading.Thread(target=self._capture, name='camera_capture',
                                        daemon=True)
        self._thread.start()

    def _parameters_callback(self, parameters):
        return refused_change(parameters, CAMERA_PARAMETERS) or SetParametersResult(
            successful=True)

    def _set_camera_info_callback(self, request, response):
        """Store and publish a new calibration (CameraStream.set_camera_info); never raises."""
        try:
            response.status_message = self.stream.set_camera_info(request.camera_info)
            response.success = True
            self.get_logger().info(f'set_camera_info: {response.status_message}')
        except Pose6dError as exc:   # a bad calibration, an unwritable file, ...
            response.success, response.status_message = False, str(exc)
            self.get_logger().error(f'set_camera_info refused: {exc}')
        except Exception as exc:  # the node keeps publishing whatever a request holds
            response.success = False
            response.status_message = f'set_camera_info failed: {type(exc).__name__}: {exc}'
            self.get_logger().error(response.status_message)
        return response

    def _capture(self):
        try:
            while not self._stop.is_set():
                messages = self.stream.next()
                if messages is None:
                    self.get_logger().info(f'end of {self.stream.settings.source} after '
                                           f'{self.stream.frames} frames (loop: false)')
                    break
                if self._stop.is_set():
                    break
                image, info = messages
                self.image_pub.publish(image)
                self.info_pub.publish(info)
        except Pose6dError as exc:   # the camera went, a calibration for another size, ...
            if self.context.ok():
                self.get_logger().fatal(str(exc))
            self.exit_code = 1
        except Exception as exc:  # the message says what failed; the process then ends
            if self.context.ok():  # shut down under us otherwise: nothing to report
                self.get_logger().fatal(f'capture failed: {type(exc).__name__}: {exc}')
                self.exit_code = 1
        finally:
            self.finished.set_result(self.exit_code)

    def stop(self):
        """Stop the capture thread (after the frame it is on) and release the source."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=STOP_TIMEOUT_S)
        if not self._thread.is_alive():  # never release a capture another thread still reads
            self.stream.close()

    def destroy_node(self):
        """Stop capturing first, then let rclpy destroy the node."""
        self.stop()
        return super().destroy_node()


def main(args=None):
    """Entry point of `ros2 run pose6d_ros pose6d_camera_node`; returns the exit status."""
    spinning.init(args)
    node = None
    try:
        node = CameraNode()
        spinning.spin_until_done(node, node.finished)
        return node.exit_code
    except Pose6dError as exc:
        rclpy.logging.get_logger('camera').fatal(str(exc))
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    raise SystemExit(main())
