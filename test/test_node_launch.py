"""launch/pose6d.launch.py for real.

`pose6d_node` started by the launch file with a model bundle takes image + camera_info on the
remapped camera topics and publishes, under the launch namespace, a PoseArray stamped with the
image header and /diagnostics.

A launch_testing test: where ROS 2 is installed and sourced, pytest runs it through
launch_testing's plugin (or `launch_test test/test_node_launch.py`); elsewhere it is skipped
with the reason. The package is found through a temporary ament prefix that points at this
source tree, so the test needs no colcon build.
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

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402, I100
from geometry_msgs.msg import PoseArray  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from pose6d_ros.core.geometry.objects import ObjectModel, ObjectSet  # noqa: E402
from pose6d_ros.core.geometry.poses import box_keypoints  # noqa: E402
from pose6d_ros.core.inference.bundle import save_bundle  # noqa: E402
from pose6d_ros.core.nets.methods import get_method  # noqa: E402
from pose6d_ros.ros import conversions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 96, 72
FRAME = 'launch_test_camera'
K = [80.0, 0.0, 47.5, 0.0, 80.0, 35.5, 0.0, 0.0, 1.0]


def ament_prefix(folder):
    """An install prefix in which ament finds pose6d_ros.

    It holds this tree's launch/ and config/, and a lib/pose6d_ros/pose6d_node that runs the
    node with this Python.
    """
    share = folder / 'share' / 'pose6d_ros'
    share.mkdir(parents=True)
    for name in ('launch', 'config', 'package.xml'):
        (share / name).symlink_to(ROOT / name)
    index = folder / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    (index / 'pose6d_ros').touch()
    executable = folder / 'lib' / 'pose6d_ros' / 'pose6d_node'
    executable.parent.mkdir(parents=True)
    executable.write_text(f'#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n'
                          'from pose6d_ros.ros.node import main\nraise SystemExit(main())\n')
    executable.chmod(0o755)
    return folder


def untrained_bundle(folder):
    """A small keypoints bundle: the outputs are noise, but every topic is published."""
    half = np.array([0.04, 0.04, 0.05])
    objects = ObjectSet([ObjectModel('mug', 1, box_keypoints(-half, half), 0.12)])
    network = get_method('keypoints', 1, {'backbone': 'hrnet_tiny'}).build_network()
    return save_bundle(folder / 'bundle', 'keypoints', network.config_dict(),
                       network.state_dict(), objects, (WIDTH, HEIGHT))


@pytest.mark.launch_test
def generate_test_description():
    work = Path(tempfile.mkdtemp(prefix='pose6d_launch_test_'))
    prefix = ament_prefix(work / 'prefix')
    os.environ['AMENT_PREFIX_PATH'] = os.pathsep.join(
        [str(prefix)] + [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep)
                         if p])
    bundle = untrained_bundle(work)
    launch = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(ROOT / 'launch' / 'pose6d.launch.py')),
        launch_arguments={'model': str(bundle), 'device': 'cpu', 'namespace': 'launch_test',
                          'image_topic': '/test_camera/image_raw',
                          'camera_info_topic': '/test_camera/camera_info'}.items())
    return LaunchDescription([launch, launch_testing.actions.ReadyToTest()])


class TestNodeFromLaunchFile(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.peer = rclpy.create_node('pose6d_launch_test_peer')

    @classmethod
    def tearDownClass(cls):
        cls.peer.destroy_node()
        rclpy.shutdown()

    def test_image_in_pose_array_and_diagnostics_out(self, proc_output):
        poses, diagnostics = [], []
        self.peer.create_subscription(PoseArray, '/launch_test/poses', poses.append, 10)
        self.peer.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 10)
        image_pub = self.peer.create_publisher(Image, '/test_camera/image_raw',
                                               qos_profile_sensor_data)
        info_pub = self.peer.create_publisher(CameraInfo, '/test_camera/camera_info',
                                              qos_profile_sensor_data)
        types = conversions.RclpyTypes()
        sent = []
        end = time.monotonic() + 60.0   # the node loads torch and the bundle first
        next_publish = 0.0
        while time.monotonic() < end and not (poses and diagnostics):
            if time.monotonic() >= next_publish:
                stamp_ns = 1_000_000_000 + 50_000_000 * len(sent)
                header = conversions.make_header(types, stamp_ns, FRAME)
                rgb = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
                image_pub.publish(conversions.rgb_to_image(types, rgb, header, 'rgb8'))
                info_pub.publish(types.new(
                    'sensor_msgs/msg/CameraInfo', header=header, width=WIDTH, height=HEIGHT,
                    distortion_model='plumb_bob', d=[0.0] * 5, k=K))
                sent.append(stamp_ns)
                next_publish = time.monotonic() + 0.2
            rclpy.spin_once(self.peer, timeout_sec=0.05)
        self.assertTrue(poses, f'no PoseArray on /launch_test/poses after {len(sent)} frames')
        self.assertTrue(diagnostics, 'no /diagnostics from the node')
        self.assertEqual(poses[-1].header.frame_id, FRAME)
        self.assertIn(conversions.stamp_to_ns(poses[-1].header.stamp), sent)
        status = [s for msg in diagnostics for s in msg.status if 'pose6d_node' in s.name]
        self.assertTrue(status, [s.name for msg in diagnostics for s in msg.status])
        proc_output.assertWaitFor('pose estimation on cpu', timeout=5)


@launch_testing.post_shutdown_test()
class TestNodeShutdown(unittest.TestCase):

    def test_node_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
