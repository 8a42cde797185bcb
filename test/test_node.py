"""The rclpy nodes where ROS 2 is installed (skipped, with the reason, where it is not).

The pose6d node (plain and lifecycle), the camera node and the static transform node, in
process. Also the guarantee that the bag tool, the pipeline, the conversions and the camera
node's work (camera.py, health.py) never import rclpy.
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

BLOCKER = """
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
from pose6d_ros.ros import bag, camera, conversions, errors, health, parameters, pipeline

types = conversions.RosbagsTypes.for_distro('jazzy')
header = conversions.make_header(types, 10**9, 'cam')
image = conversions.rgb_to_image(types, np.zeros((4, 6, 3), np.uint8), header, 'bgr8')
assert conversions.image_to_rgb(image).shape == (4, 6, 3)
types.serialize(conversions.marker_array(types, [], header))
cli.build_parser().parse_args(['bag', '--model', 'm', '--in', 'a', '--out', 'b'])
for name in ('node', 'camera_node', 'static_transform_node', 'descriptors', 'spinning'):
    try:
        __import__(f'pose6d_ros.ros.{name}')
    except ImportError as exc:
        assert 'blocked' in str(exc), exc
    else:
        raise AssertionError(f'pose6d_ros.ros.{name} imported without rclpy')
leaked = sorted(m for m in sys.modules if blocked(m))
assert not leaked, leaked
print('ok')
"""


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
    """One mug, 90 degrees about z, 0.5 m in front of the camera, in every frame.

    delay: seconds each frame takes (a slow network).
    """

    def __init__(self, delay=0.0):
        half = np.array([0.04, 0.04, 0.05])
        self.objects = ObjectSet([ObjectModel('mug', 1, box_keypoints(-half, half), 0.12)])
        self.device = 'cpu'
        self.delay = delay

    def __call__(self, image_rgb, camera):
        time.sleep(self.delay)
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

    def __init__(self, rclpy, lifecycle=False, parameters=None, delay=0.0, estimator=None):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from tf2_msgs.msg import TFMessage
        from vision_msgs.msg import Detection3DArray
        from visualization_msgs.msg import MarkerArray

        from pose6d_ros.ros.conversions import RclpyTypes
        from pose6d_ros.ros.node import Pose6dLifecycleNode, Pose6dNode

        self.types = RclpyTypes()
        overrides = [Parameter(k, value=v) for k, v in (parameters or {}).items()]
        self.node = (Pose6dLifecycleNode if lifecycle else Pose6dNode)(
            estimator=estimator or FakeEstimator(delay), parameter_overrides=overrides)
        self.peer = rclpy.create_node('pose6d_test_peer')
        self.received = {name: [] for name in ('poses', 'detections', 'markers', 'tf',
                                               'diagnostics')}
        for msg_type, topic, key in ((PoseArray, 'poses', 'poses'),
                                     (Detection3DArray, 'detections', 'detections'),
                                     (MarkerArray, 'markers', 'markers'),
                                     (TFMessage, '/tf', 'tf'),
                                     (DiagnosticArray, '/diagnostics', 'diagnostics')):
            self.peer.create_subscription(msg_type, topic, self.received[key].append, 10)
        self.image_pub = self.peer.create_publisher(Image, 'image', qos_profile_sensor_data)
        self.info_pub = self.peer.create_publisher(CameraInfo, 'camera_info',
                                                   qos_profile_sensor_data)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self.stamp_ns = 1_000_000_000

    def publish_frame(self, image_width=WIDTH, image=True, info=True):
        from pose6d_ros.ros import conversions

        self.stamp_ns += 100_000_000
        header = conversions.make_header(self.types, self.stamp_ns, FRAME)
        rgb = np.zeros((HEIGHT, image_width, 3), np.uint8)
        if image:
            self.image_pub.publish(conversions.rgb_to_image(self.types, rgb, header, 'bgr8'))
        if info:
            self.info_pub.publish(self.types.new(
                'sensor_msgs/msg/CameraInfo', header=header, width=WIDTH, height=HEIGHT,
                distortion_model='plumb_bob', d=[0.0] * 5, k=K))

    def statuses(self):
        """The pose6d node's diagnostics statuses received so far (level name, message)."""
        names = {0: 'OK', 1: 'WARN', 2: 'ERROR', 3: 'STALE'}
        return [(names[int.from_bytes(bytes(s.level), 'little') if isinstance(s.level, bytes)
                       else int(s.level)], s.message)
                for msg in self.received['diagnostics'] for s in msg.status
                if 'pose6d_node' in s.name]

    def tf_publishers(self):
        """Nodes that advertise /tf, by name."""
        return [info.node_name for info in self.peer.get_publishers_info_by_topic('/tf')]

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


class GhostEstimator(FakeEstimator):
    """The mug moving 2 mm per frame along x, and on one frame a second, false mug 0.3 m away.

    calls: how many frames it has estimated so far.
    """

    def __init__(self, ghost_call=3):
        super().__init__()
        self.ghost_call = ghost_call
        self.calls = 0

    def __call__(self, image_rgb, camera):
        self.calls += 1
        mug = super().__call__(image_rgb, camera)[0]
        mug.t = np.array([0.002 * self.calls, 0.1, 0.5])
        if self.calls != self.ghost_call:
            return [mug]
        ghost = ObjectPose('mug', 0, 1, 0.95, np.zeros((9, 2)), np.array([20, 20, 30, 30.0]),
                           np.eye(3), np.array([0.3, -0.1, 0.7]), 0.8, 9)
        return [ghost, mug]   # the higher score first: without tracking it would be mug_0


@needs_ros
def test_tracking_keeps_tf_child_frames_and_holds_back_a_one_frame_false_detection(ros):
    estimator = GhostEstimator(ghost_call=3)
    harness = Harness(ros, parameters={
        'tracking': True, 'tracking_network_every': 1, 'tracking_confirm_hits': 2,
        'tracking_confirm_window': 3, 'frame_prefix': 'cell1/'}, estimator=estimator)
    tf = harness.received['tf']
    try:
        def transforms():
            return [t for msg in tf for t in msg.transforms]

        assert exchange(harness.executor, harness.publish_frame,
                        lambda: estimator.calls >= 8 and len(transforms()) >= 4)
        tracker = harness.node.pipeline.tracker
        assert tracker is not None and tracker.next_id == 2    # the ghost did start a track ...
        children = {t.child_frame_id for t in transforms()}
        assert children == {'cell1/mug_0'}, children           # ... that never reached /tf
        assert all(len(msg.poses) <= 1 for msg in harness.received['poses'])
        xs = [t.transform.translation.x for t in transforms()]
        assert xs[-1] > xs[0]                                  # the same frame, moving
        assert all(t.header.frame_id == FRAME for t in transforms())
        # Confirmation: the first frame's track is not published, so TF lags the network.
        assert len(tf) < estimator.calls
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
        result = set_one('model', 'elsewhere')                         # read-only
        assert not result.successful and 'model is fixed at start-up' in result.reason
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


class _Log:
    """Stands in for a node's logger: keeps what is logged."""

    def __init__(self):
        self.lines = []

    def __getattr__(self, level):
        return lambda text, **_: self.lines.append((level, text))


@needs_ros
def test_lifecycle_diagnostics_logs_tf_and_the_end_of_the_process(ros):
    from rclpy.lifecycle import TransitionCallbackReturn

    SUCCESS = TransitionCallbackReturn.SUCCESS
    harness = Harness(ros, lifecycle=True, parameters={'diagnostics_period': 0.2})
    node, log = harness.node, _Log()
    node.get_logger = lambda: log
    try:
        def spin_until(condition, publish=lambda: None, timeout=10.0):
            return exchange(harness.executor, publish, condition, timeout=timeout)

        assert node.trigger_configure() == SUCCESS
        assert spin_until(lambda: any(m.startswith('inactive') for _, m in harness.statuses()))
        assert spin_until(lambda: 'pose6d_node' in harness.tf_publishers())
        assert node.trigger_activate() == SUCCESS
        harness.received['diagnostics'].clear()
        assert spin_until(lambda: any(m.startswith('ok') for _, m in harness.statuses()),
                          harness.publish_frame)
        assert node.trigger_deactivate() == SUCCESS
        assert any('deactivated' in text for _, text in log.lines)
        harness.received['diagnostics'].clear()
        assert spin_until(lambda: any(m.startswith('inactive') for _, m in harness.statuses()))
        assert node.trigger_cleanup() == SUCCESS
        assert any('cleaned up' in text for _, text in log.lines)
        assert spin_until(lambda: 'pose6d_node' not in harness.tf_publishers())
        harness.received['diagnostics'].clear()
        spin_until(lambda: False, timeout=0.6)
        assert harness.statuses() == []          # unconfigured: no diagnostics publisher
        assert not node.finished.done()
        assert node.trigger_shutdown() == SUCCESS
        assert node.finished.done()              # main() then returns: the process ends
    finally:
        harness.close()


@needs_ros
def test_diagnostics_say_which_input_is_missing_and_when_frames_are_dropped(ros):
    harness = Harness(ros, parameters={'diagnostics_period': 0.3})
    log = _Log()
    harness.node.get_logger = lambda: log
    try:
        assert exchange(harness.executor, lambda: harness.publish_frame(info=False),
                        lambda: any('but no camera_info' in m for _, m in harness.statuses()))
        assert any('but no camera_info' in text for level, text in log.lines
                   if level == 'warning')
        harness.received['diagnostics'].clear()
        assert exchange(harness.executor, lambda: harness.publish_frame(image=False),
                        lambda: any('but no images' in m for _, m in harness.statuses()))
    finally:
        harness.close()

    slow = Harness(ros, parameters={'diagnostics_period': 0.5}, delay=0.25)
    try:
        assert exchange(slow.executor, slow.publish_frame,
                        lambda: any(level == 'WARN' and 'of the frames dropped' in m
                                    for level, m in slow.statuses()), period=0.05)
    finally:
        slow.close()


@needs_ros
def test_a_bad_start_up_parameter_is_one_clear_line(ros):
    from rclpy.parameter import Parameter

    from pose6d_ros.core.errors import Pose6dError
    from pose6d_ros.ros.node import Pose6dNode

    # -0.5: within the interval ROS checks (widened to the sentinel -1), refused by ours;
    # 1.5: refused by ROS, read back and named.
    for value, words in ((-0.5, 'min_score must be in [0.0, 1.0], or -1.0; got -0.5'),
                         (1.5, 'min_score must be in [0.0, 1.0], or -1.0; got 1.5'),
                         ('high', "min_score must be of type double; got 'high'")):
        with pytest.raises(Pose6dError) as refused:
            Pose6dNode(estimator=FakeEstimator(),
                       parameter_overrides=[Parameter('min_score', value=value)])
        message = str(refused.value)
        assert message.startswith(f'parameter {words}') and 'given at start-up' in message


def write_video(path, frames=3, fps=20.0):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), fps, (WIDTH, HEIGHT))
    for k in range(frames):
        writer.write(np.full((HEIGHT, WIDTH, 3), 20 * k % 256, np.uint8))
    writer.release()
    return path


@needs_ros
def test_camera_node_publishes_image_and_camera_info_with_one_header(ros, tmp_path):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from pose6d_ros.core.geometry.calibration import ros_calibration_yaml
    from pose6d_ros.core.geometry.camera import CameraModel
    from pose6d_ros.ros import conversions
    from pose6d_ros.ros.camera_node import CameraNode

    calibration = tmp_path / 'cam.yaml'
    camera = CameraModel.from_intrinsics(60.0, 60.0, 31.5, 23.5, WIDTH, HEIGHT)
    calibration.write_text(ros_calibration_yaml(camera, 'test'))
    video = write_video(tmp_path / 'clip.avi', frames=10)
    peer = ros.create_node('camera_test_peer')
    images, infos = [], []
    peer.create_subscription(Image, 'image_raw', images.append, qos_profile_sensor_data)
    peer.create_subscription(CameraInfo, 'camera_info', infos.append, qos_profile_sensor_data)
    executor = SingleThreadedExecutor()
    executor.add_node(peer)
    exchange(executor, lambda: None, lambda: False, timeout=0.5)   # let discovery settle
    node = CameraNode(parameter_overrides=[
        Parameter('source', value=str(video)), Parameter('frame_id', value='test_optical'),
        Parameter('camera_info_url', value=f'file://{calibration}'),
        Parameter('fps', value=10.0), Parameter('loop', value=False)])
    executor.add_node(node)
    try:
        assert exchange(executor, lambda: None, lambda: node.finished.done(), timeout=10)
        exchange(executor, lambda: None, lambda: False, timeout=0.3)
        assert node.exit_code == 0 and node.stream.frames == 10   # played once, then done
        infos_by_stamp = {conversions.stamp_to_ns(i.header.stamp): i for i in infos}
        pairs = [(image, infos_by_stamp[conversions.stamp_to_ns(image.header.stamp)])
                 for image in images
                 if conversions.stamp_to_ns(image.header.stamp) in infos_by_stamp]
        assert pairs, (len(images), len(infos))   # best effort: the first may be missed
        for image, info in pairs:
            assert image.header.frame_id == info.header.frame_id == 'test_optical'
            assert (image.width, image.height, image.encoding) == (WIDTH, HEIGHT, 'rgb8')
        stamps = sorted(infos_by_stamp)
        # 10 fps, paced: on a fixed schedule, so one late frame (a busy CPU) brings the next
        # closer; the mean spacing is the pace (unpaced, a file is read in a few ms a frame).
        assert len(stamps) >= 5, len(stamps)
        mean_spacing_s = (stamps[-1] - stamps[0]) / (len(stamps) - 1) / 1e9
        assert 0.08 < mean_spacing_s < 0.2, np.diff(stamps) / 1e9
        assert conversions.camera_from_info(infos[-1]) == camera
    finally:
        executor.shutdown()
        node.destroy_node()
        peer.destroy_node()


def write_folder(path, frames=3):
    import cv2

    path.mkdir()
    for k in range(frames):
        cv2.imwrite(str(path / f'{k:03d}.png'), np.full((HEIGHT, WIDTH, 3), 40 * k, np.uint8))
    return path


@needs_ros
def test_camera_node_set_camera_info_writes_and_publishes_the_calibration(
        ros, tmp_path, monkeypatch):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo
    from sensor_msgs.srv import SetCameraInfo

    from pose6d_ros.core.geometry.camera import CameraModel
    from pose6d_ros.ros import conversions
    from pose6d_ros.ros.camera_node import CameraNode

    monkeypatch.setenv('ROS_HOME', str(tmp_path / 'ros_home'))   # camera_info_url '': there
    node = CameraNode(namespace='/cam_test', parameter_overrides=[
        Parameter('source', value=str(write_folder(tmp_path / 'frames'))),
        Parameter('camera_name', value='bench_cam'), Parameter('fps', value=20.0)])
    peer = ros.create_node('set_camera_info_peer')
    infos = []
    peer.create_subscription(CameraInfo, '/cam_test/camera_info', infos.append,
                             qos_profile_sensor_data)
    client = peer.create_client(SetCameraInfo, '/cam_test/set_camera_info')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(peer)

    def call(camera_info):
        future = client.call_async(SetCameraInfo.Request(camera_info=camera_info))
        assert exchange(executor, lambda: None, future.done, timeout=10)
        return future.result()

    try:
        assert client.wait_for_service(timeout_sec=10)
        assert exchange(executor, lambda: None, lambda: bool(infos))
        rough = conversions.camera_from_info(infos[-1])   # no calibration: the rough K
        camera = CameraModel.from_intrinsics(58.0, 59.0, 32.5, 22.5, WIDTH, HEIGHT,
                                             D=[0.05, -0.02, 0.001, 0.0, 0.0])
        wrong_size = CameraModel.from_intrinsics(58.0, 59.0, 159.5, 119.5, 320, 240)
        types = conversions.RclpyTypes()
        refused = call(conversions.camera_info(types, wrong_size, infos[-1].header))
        assert not refused.success
        assert 'is for 320x240 images, but this camera publishes 64x48' in (
            refused.status_message)
        answer = call(conversions.camera_info(types, camera, infos[-1].header))
        path = tmp_path / 'ros_home' / 'camera_info' / 'bench_cam.yaml'
        assert answer.success, answer.status_message
        assert f'to {path}' in answer.status_message
        assert CameraModel.load(path) == camera != rough
        # camera_info carries it from the next frame on, and the node goes on publishing
        count = len(infos)
        assert exchange(executor, lambda: None,
                        lambda: len(infos) > count + 2
                        and conversions.camera_from_info(infos[-1]) == camera)
        assert not node.finished.done()
    finally:
        executor.shutdown()
        node.destroy_node()
        peer.destroy_node()


@needs_ros
def test_static_transform_node_latches_the_camera_pose(ros):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from tf2_msgs.msg import TFMessage

    from pose6d_ros.ros.static_transform_node import StaticTransformNode

    node = StaticTransformNode(parameter_overrides=[
        Parameter('parent_frame', value='base_link'), Parameter('child_frame', value='cam'),
        Parameter('z', value=0.45), Parameter('roll', value=-np.pi / 2),
        Parameter('yaw', value=-np.pi / 2)])
    peer = ros.create_node('static_test_peer')   # subscribes after the one message was sent
    received = []
    peer.create_subscription(TFMessage, '/tf_static', received.append,
                             QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(peer)
    try:
        assert exchange(executor, lambda: None, lambda: bool(received))
        transform = received[-1].transforms[0]
        assert (transform.header.frame_id, transform.child_frame_id) == ('base_link', 'cam')
        assert transform.transform.translation.z == pytest.approx(0.45)
        q = transform.transform.rotation
        np.testing.assert_allclose([q.x, q.y, q.z, q.w], [-0.5, 0.5, -0.5, 0.5], atol=1e-9)
    finally:
        executor.shutdown()
        node.destroy_node()
        peer.destroy_node()
