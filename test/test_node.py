"""The rclpy node where ROS 2 is installed (skipped, with the reason, where it is not).

Also the guarantee that the bag tool, the pipeline and the conversions never import rclpy.
"""

import importlib.util
from pathlib import Path
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from pose6d_ros.core.geometry.objects import ObjectModel, ObjectSet
from pose6d_ros.core.geometry.poses import box_keypoints
from pose6d_ros.core.geometry.results import ObjectPose

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ('rclpy', 'message_filters', 'tf2_ros', 'sensor_msgs', 'geometry_msgs',
                'visualization_msgs', 'vision_msgs', 'diagnostic_msgs', 'tf2_msgs',
                'rcl_interfaces')
MISSING = [m for m in NODE_MODULES if importlib.util.find_spec(m) is None]
needs_ros = pytest.mark.skipif(
    bool(MISSING), reason=f'ROS 2 is not installed or not sourced (cannot import '
                          f'{", ".join(MISSING)}); the node is tested where it is')

BLOCKER = '''
import importlib.abc, sys

BLOCKED = {'rclpy', 'message_filters', 'tf2_ros', 'tf2_py', 'cv_bridge', 'launch',
           'launch_ros', 'launch_testing', 'rosidl_runtime_py', 'builtin_interfaces',
           'rcl_interfaces', 'rpyutils'}

def blocked(name):
    top = name.split('.')[0]
    return top in BLOCKED or top.endswith('_msgs') or top.endswith('_srvs')

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if blocked(name):
            raise ImportError(f'{name} is blocked: this module must work without ROS 2')
        return None

sys.meta_path.insert(0, Blocker())

import numpy as np
import pose6d_ros.ros
from pose6d_ros.tools import cli
from pose6d_ros.ros import bag, conversions, errors, pipeline

types = conversions.RosbagsTypes.for_distro('jazzy')
header = conversions.make_header(types, 10**9, 'cam')
image = conversions.rgb_to_image(types, np.zeros((4, 6, 3), np.uint8), header, 'bgr8')
assert conversions.image_to_rgb(image).shape == (4, 6, 3)
types.serialize(conversions.marker_array(types, [], header))
cli.build_parser().parse_args(['bag', '--model', 'm', '--in', 'a', '--out', 'b'])
try:
    import pose6d_ros.ros.node
except ImportError as exc:
    assert 'blocked' in str(exc), exc
else:
    raise AssertionError('pose6d_ros.ros.node imported without rclpy')
leaked = sorted(m for m in sys.modules if blocked(m))
assert not leaked, leaked
print('ok')
'''


def test_bag_pipeline_and_conversions_never_import_rclpy():
    result = subprocess.run([sys.executable, '-c', BLOCKER], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok'


# --- the node (needs ROS 2) ------------------------------------------------------------------

WIDTH, HEIGHT = 64, 48
FRAME = 'test_camera_optical'
K = [60.0, 0.0, 32.0, 0.0, 60.0, 24.0, 0.0, 0.0, 1.0]


class FakeEstimator:
    """One mug, 90 degrees about z, 0.5 m in front of the camera, in every frame."""

    def __init__(self):
        half = np.array([0.04, 0.04, 0.05])
        self.objects = ObjectSet([ObjectModel('mug', 1, box_keypoints(-half, half), 0.12)])
        self.device = 'cpu'

    def __call__(self, image_rgb, camera):
        R = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        return [ObjectPose('mug', 0, 1, 0.9, np.zeros((9, 2)), np.array([0, 0, 10, 10.0]), R,
                           np.array([0.0, 0.1, 0.5]), 0.8, 9, np.array([0.08, 0.08, 0.1]),
                           np.zeros(3))]


@pytest.fixture()
def ros():
    import rclpy

    rclpy.init()
    yield rclpy
    rclpy.try_shutdown()


def exchange(executor, publish, condition, timeout=15.0, period=0.2):
    """Publish every `period` s and spin until `condition()` or timeout; returns condition()."""
    end = time.monotonic() + timeout
    next_publish = 0.0
    while time.monotonic() < end:
        if time.monotonic() >= next_publish:
            publish()
            next_publish = time.monotonic() + period
        executor.spin_once(timeout_sec=0.02)
        if condition():
            return True
    return condition()


class Harness:
    """The node with a fake estimator and a peer node that feeds it and listens."""

    def __init__(self, rclpy, lifecycle=False):
        from geometry_msgs.msg import PoseArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from tf2_msgs.msg import TFMessage
        from vision_msgs.msg import Detection3DArray
        from visualization_msgs.msg import MarkerArray

        from pose6d_ros.ros.conversions import RclpyTypes
        from pose6d_ros.ros.node import Pose6dLifecycleNode, Pose6dNode

        self.types = RclpyTypes()
        self.node = (Pose6dLifecycleNode if lifecycle else Pose6dNode)(estimator=FakeEstimator())
        self.peer = rclpy.create_node('pose6d_test_peer')
        self.received = {name: [] for name in ('poses', 'detections', 'markers', 'tf')}
        for msg_type, topic, key in ((PoseArray, 'poses', 'poses'),
                                     (Detection3DArray, 'detections', 'detections'),
                                     (MarkerArray, 'markers', 'markers'),
                                     (TFMessage, '/tf', 'tf')):
            self.peer.create_subscription(msg_type, topic, self.received[key].append, 10)
        self.image_pub = self.peer.create_publisher(Image, 'image', qos_profile_sensor_data)
        self.info_pub = self.peer.create_publisher(CameraInfo, 'camera_info',
                                                   qos_profile_sensor_data)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self.stamp_ns = 1_000_000_000

    def publish_frame(self, image_width=WIDTH):
        from pose6d_ros.ros import conversions

        self.stamp_ns += 100_000_000
        header = conversions.make_header(self.types, self.stamp_ns, FRAME)
        rgb = np.zeros((HEIGHT, image_width, 3), np.uint8)
        self.image_pub.publish(conversions.rgb_to_image(self.types, rgb, header, 'bgr8'))
        self.info_pub.publish(self.types.new(
            'sensor_msgs/msg/CameraInfo', header=header, width=WIDTH, height=HEIGHT,
            distortion_model='plumb_bob', d=[0.0] * 5, k=K))

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.peer.destroy_node()


@needs_ros
def test_node_publishes_poses_detections_markers_and_tf(ros):
    from pose6d_ros.ros import conversions

    harness = Harness(ros)
    try:
        got_all = exchange(harness.executor, harness.publish_frame,
                           lambda: all(harness.received.values()))
        assert got_all, {k: len(v) for k, v in harness.received.items()}
        poses = harness.received['poses'][-1]
        assert poses.header.frame_id == FRAME
        q = poses.poses[0].orientation
        np.testing.assert_allclose([q.x, q.y, q.z, q.w], [0, 0, np.sqrt(0.5), np.sqrt(0.5)],
                                   atol=1e-9)
        assert poses.poses[0].position.z == pytest.approx(0.5)
        detection = harness.received['detections'][-1].detections[0]
        assert detection.results[0].hypothesis.class_id == 'mug'
        assert detection.bbox.size.z == pytest.approx(0.1)
        markers = harness.received['markers'][-1].markers
        assert len(markers[1].points) == 24
        tf = [t for msg in harness.received['tf'] for t in msg.transforms]
        assert tf[-1].child_frame_id == 'mug_0' and tf[-1].header.frame_id == FRAME
        stamp = conversions.stamp_to_ns(poses.header.stamp)
        assert stamp == conversions.stamp_to_ns(tf[-1].header.stamp)
    finally:
        harness.close()


@needs_ros
def test_node_skips_a_bad_frame_and_processes_the_next(ros):
    harness = Harness(ros)
    try:
        exchange(harness.executor, lambda: harness.publish_frame(image_width=80),
                 lambda: False, timeout=1.5)
        assert harness.received['poses'] == []  # size mismatch: nothing published
        assert exchange(harness.executor, harness.publish_frame,
                        lambda: bool(harness.received['poses']))
    finally:
        harness.close()


@needs_ros
def test_node_parameters_are_validated(ros):
    from rclpy.parameter import Parameter

    harness = Harness(ros)
    node = harness.node
    try:
        def set_one(name, value):
            return node.set_parameters([Parameter(name, value=value)])[0]

        assert not set_one('min_score', 2.0).successful              # outside its range
        result = set_one('objects', 'mug,teapot')
        assert not result.successful and 'teapot' in result.reason
        result = set_one('target_frame', '/base link')
        assert not result.successful and 'target_frame' in result.reason
        assert not set_one('frame_prefix', 'has space/').successful
        assert not set_one('model', 'elsewhere').successful          # read-only
        assert not set_one('onnx_model', 'model_int8.onnx').successful
        assert node.pipeline.config.min_score == -1.0 and node.pipeline.min_score == 0.5
        assert not set_one('min_score', -0.5).successful             # only -1: the model's
        assert set_one('min_score', 0.8).successful
        assert node.pipeline.config.min_score == 0.8 and node.pipeline.min_score == 0.8
        assert set_one('min_score', -1.0).successful                # back to the model's
        assert node.pipeline.min_score == 0.5                        # (its card sets none)
        assert set_one('min_score', 0.8).successful
        assert set_one('objects', 'mug').successful
        assert node.pipeline.config.objects == ('mug',)
    finally:
        harness.close()


@needs_ros
def test_node_runs_the_network_of_its_onnx_model_parameter(ros, learned_bundle, tmp_path):
    pytest.importorskip('onnxruntime', reason='onnxruntime is not installed: '
                                              'pip install -e ".[export]"')
    from rclpy.parameter import Parameter

    from pose6d_ros.core.inference.export import export_model
    from pose6d_ros.ros.node import Pose6dNode

    bundle = shutil.copytree(learned_bundle[0], tmp_path / 'bundle')
    export_model(bundle, 'onnx')
    node = Pose6dNode(parameter_overrides=[Parameter('model', value=str(bundle)),
                                           Parameter('device', value='cpu'),
                                           Parameter('onnx_model', value='model.onnx')])
    try:
        assert node.pipeline.estimator.backend == 'onnxruntime float32'
        assert node.pipeline.estimator.network.path == bundle / 'model.onnx'
    finally:
        node.destroy_node()


@needs_ros
def test_rclpy_message_classes_build_the_same_messages(ros):
    from pose6d_ros.ros import conversions

    types = conversions.RclpyTypes()
    header = conversions.make_header(types, 1_500_000_000, FRAME)
    objects = FakeEstimator()(None, None)
    pose_array = conversions.pose_array(types, objects, header)
    assert pose_array.poses[0].orientation.w == pytest.approx(np.sqrt(0.5))
    detections = conversions.detection3d_array(types, objects, header)
    assert detections.detections[0].results[0].hypothesis.class_id == 'mug'
    markers = conversions.marker_array(types, objects, header)
    assert len(markers.markers[1].points) == 24
    assert conversions.transforms(types, objects, header, 'p/')[0].child_frame_id == 'p/mug_0'
    diagnostics = conversions.diagnostics(types, header, 'n', 'cpu', 1.0, 0.01, level='WARN')
    assert diagnostics.status[0].level == types.get('diagnostic_msgs/msg/DiagnosticStatus').WARN
    rgb = np.arange(HEIGHT * WIDTH * 3, dtype=np.uint8).reshape(HEIGHT, WIDTH, 3)
    for encoding in ('rgb8', 'bgr8', 'mono16'):
        image = conversions.rgb_to_image(types, rgb, header, encoding, row_padding=4)
        back = conversions.image_to_rgb(image)
        assert back.shape == rgb.shape
    np.testing.assert_array_equal(
        conversions.image_to_rgb(conversions.rgb_to_image(types, rgb, header, 'bgr8')), rgb)
    info = types.new('sensor_msgs/msg/CameraInfo', header=header, width=WIDTH, height=HEIGHT,
                     distortion_model='plumb_bob', d=[0.0] * 5, k=K)
    assert conversions.camera_from_info(info).fx == 60.0


@needs_ros
def test_lifecycle_node_works_only_while_active_and_frees_the_model_on_cleanup(ros):
    from rclpy.lifecycle import TransitionCallbackReturn

    SUCCESS = TransitionCallbackReturn.SUCCESS
    harness = Harness(ros, lifecycle=True)
    node, poses = harness.node, harness.received['poses']
    try:
        def quiet_for(seconds):
            poses.clear()
            exchange(harness.executor, harness.publish_frame, lambda: False, timeout=seconds)
            return not poses

        assert node.pipeline is None and quiet_for(1.0)            # unconfigured: no model
        assert node.trigger_configure() == SUCCESS
        assert node.pipeline is not None and quiet_for(1.0)        # inactive: not subscribed
        assert node.trigger_activate() == SUCCESS
        assert exchange(harness.executor, harness.publish_frame, lambda: bool(poses))
        assert poses[-1].poses[0].position.z == pytest.approx(0.5)
        assert node.trigger_deactivate() == SUCCESS
        assert quiet_for(1.0)
        assert node.trigger_activate() == SUCCESS   # and back again
        assert exchange(harness.executor, harness.publish_frame, lambda: bool(poses))
        node.trigger_deactivate()
        assert node.trigger_cleanup() == SUCCESS
        assert node.pipeline is None
    finally:
        harness.close()
