"""launch/webcam.launch.py for real, with a rendered video of the demo box as the camera.

The python camera driver plays a short video of the demo box (rendered by this test, with
the rendering camera's calibration as camera_info_url), the pose6d node runs the bundled
model on it, and the static transform node places the camera on base_link. The test checks
that poses come out, that the TF tree is base_link -> camera optical frame -> demo_box_0,
and that every process exits cleanly on SIGINT, with no frame published into a dead context.

A launch_testing test: where ROS 2 is installed and sourced, pytest runs it through
launch_testing's plugin (or `launch_test test/test_webcam_launch.py`); elsewhere it is
skipped with the reason. The package is found through a temporary ament prefix that points
at this source tree, so the test needs no colcon build. Rendering needs an OpenGL context
(EGL or OSMesa); without one the test is skipped.
"""

import os
from pathlib import Path
import sys
import tempfile
import time
import unittest

import numpy as np
import pytest

pytest.importorskip('launch_testing', reason='ROS 2 (launch_testing) is not installed or not '
                                             'sourced; the launch file is tested where it is')
pytest.importorskip('rclpy', reason='ROS 2 (rclpy) is not installed or not sourced')
pytest.importorskip('tf2_ros', reason='ROS 2 (tf2_ros_py) is not installed or not sourced')

import cv2  # noqa: E402, I100
from geometry_msgs.msg import PoseArray  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from rclpy.time import Time  # noqa: E402
import tf2_ros  # noqa: E402

from pose6d_ros.core.geometry.calibration import ros_calibration_yaml  # noqa: E402
from pose6d_ros.core.geometry.camera import CameraModel  # noqa: E402
from pose6d_ros.core.inference.bundle import default_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, FRAMES, FPS = 320, 240, 12, 5.0
EXECUTABLES = {'pose6d_node': 'pose6d_ros.ros.node:main',
               'pose6d_camera_node': 'pose6d_ros.ros.camera_node:main',
               'pose6d_static_transform_node': 'pose6d_ros.ros.static_transform_node:main'}
# What a Ctrl-C under load used to print: a frame published into a dead context.
SHUTDOWN_FAILURES = ('context is invalid', 'frame failed', 'Failed to publish', 'Traceback')


def ament_prefix(folder):
    """An install prefix in which ament finds pose6d_ros with the three executables."""
    share = folder / 'share' / 'pose6d_ros'
    share.mkdir(parents=True)
    for name in ('launch', 'config', 'package.xml'):
        (share / name).symlink_to(ROOT / name)
    index = folder / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    (index / 'pose6d_ros').touch()
    for executable, entry in EXECUTABLES.items():
        module, function = entry.split(':')
        path = folder / 'lib' / 'pose6d_ros' / executable
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n'
                        f'from {module} import {function}\nraise SystemExit({function}())\n')
        path.chmod(0o755)
    return folder


def record_demo_box(folder):
    """A rendered MJPG video of the demo box and its camera's calibration file."""
    from pose6d_ros.core.inference.estimator import Estimator
    from pose6d_ros.tools.demo import render_sequence

    objects = Estimator.from_bundle(default_model(), device='cpu').objects
    camera = CameraModel.from_intrinsics(286.0, 286.0, (WIDTH - 1) / 2, (HEIGHT - 1) / 2,
                                         WIDTH, HEIGHT)
    sequence = render_sequence(objects, camera, FRAMES, seed=11, occluded_share=0.0)
    video = folder / 'demo_box.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), FPS, (WIDTH, HEIGHT))
    for image, _truth, _visible in sequence:
        writer.write(np.ascontiguousarray(image[:, :, ::-1]))
    writer.release()
    calibration = folder / 'camera.yaml'
    calibration.write_text(ros_calibration_yaml(camera, 'render'))
    return video, calibration


WORK = Path(tempfile.mkdtemp(prefix='pose6d_webcam_launch_test_'))
try:
    VIDEO, CALIBRATION = record_demo_box(WORK)
except Exception as exc:  # no OpenGL context on this machine
    pytest.skip(f'cannot render the demo box video here: {exc}', allow_module_level=True)


@pytest.mark.launch_test
def generate_test_description():
    prefix = ament_prefix(WORK / 'prefix')
    os.environ['AMENT_PREFIX_PATH'] = os.pathsep.join(
        [str(prefix)] + [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep)
                         if p])
    launch = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(ROOT / 'launch' / 'webcam.launch.py')),
        launch_arguments={'driver': 'python', 'video_device': str(VIDEO),
                          'image_size': f'[{WIDTH}, {HEIGHT}]', 'fps': str(FPS),
                          'camera_info_url': f'file://{CALIBRATION}', 'rviz': 'false',
                          'model': str(default_model()), 'device': 'cpu',
                          'namespace': 'pose6d'}.items())
    return LaunchDescription([launch, launch_testing.actions.ReadyToTest()])


class TestWebcamLaunch(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.peer = rclpy.create_node('webcam_launch_test_peer')

    @classmethod
    def tearDownClass(cls):
        cls.peer.destroy_node()
        rclpy.shutdown()

    def test_poses_come_out_and_the_tf_tree_reaches_the_object(self, proc_output):
        poses = []
        self.peer.create_subscription(PoseArray, '/pose6d/poses', poses.append, 10)
        buffer = tf2_ros.Buffer()
        listener = tf2_ros.TransformListener(buffer, self.peer)
        end = time.monotonic() + 120.0   # the node loads torch and the model first
        found = None
        while time.monotonic() < end and found is None:
            rclpy.spin_once(self.peer, timeout_sec=0.1)
            if any(p.poses for p in poses) and buffer.can_transform(
                    'base_link', 'demo_box_0', Time()):
                found = buffer.lookup_transform('base_link', 'demo_box_0', Time())
        listener.unregister()
        self.assertTrue(poses, 'no PoseArray on /pose6d/poses')
        self.assertIsNotNone(found, 'no TF from base_link to demo_box_0')
        with_box = [p for p in poses if p.poses]
        self.assertEqual(with_box[-1].header.frame_id, 'camera_optical_frame')
        # base_link -> camera_optical_frame is the launch's default camera pose
        camera = buffer.lookup_transform('base_link', 'camera_optical_frame', Time())
        q = camera.transform.rotation
        np.testing.assert_allclose([q.x, q.y, q.z, q.w], [-0.5, 0.5, -0.5, 0.5], atol=1e-6)
        # the demo box circles 0.28-0.40 m in front of the camera: +x of base_link
        t = found.transform.translation
        self.assertTrue(0.2 < t.x < 0.6, (t.x, t.y, t.z))
        proc_output.assertWaitFor('publishing /camera/image_raw', timeout=5)
        proc_output.assertWaitFor('pose estimation on cpu', timeout=5)


@launch_testing.post_shutdown_test()
class TestWebcamShutdown(unittest.TestCase):

    def test_every_process_exits_cleanly(self, proc_info, proc_output):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
        for event in proc_output:
            text = event.text.decode(errors='replace')
            for failure in SHUTDOWN_FAILURES:
                self.assertNotIn(failure, text, f'{event.process_name}: {text}')
