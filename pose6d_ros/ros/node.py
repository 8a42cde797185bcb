"""The pose6d ROS 2 node (thin): parameters, subscriptions, a worker thread, publishers.

All the work per frame is `FramePipeline` (pipeline.py, tested without ROS); this file only
wires it to rclpy. Topic names are relative, so namespaces and remapping apply:

  subscribes  image (sensor_msgs/Image), or image/compressed (sensor_msgs/CompressedImage)
              with image_transport:=compressed; camera_info (sensor_msgs/CameraInfo).
              Sensor-data QoS (reliability and depth are parameters), approximate time sync.
  publishes   poses (geometry_msgs/PoseArray), detections (vision_msgs/Detection3DArray),
              markers (visualization_msgs/MarkerArray), debug_image (sensor_msgs/Image, only
              built while someone subscribes), /tf (T_cam_obj, child <prefix><object>_<k>),
              /diagnostics (rates in and out, latency, dropped and bad frames; health.py).

Frames are handled by one worker thread fed through a depth-1 slot: a frame that arrives while
another waits replaces it (counted as dropped), so nothing queues without bound. Ctrl-C stops
the worker before the ROS context goes (spinning.py), so no frame publishes into a dead one.
"""

from __future__ import annotations

import math
from pathlib import Path
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
import message_filters
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
import tf2_ros
import torch
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.inference.bundle import DEFAULT_MODEL, default_model
from pose6d_ros.ros import conversions, spinning
from pose6d_ros.ros.descriptors import declare_parameters, refused_change
from pose6d_ros.ros.errors import FrameError
from pose6d_ros.ros.health import assess, FrameCounts
from pose6d_ros.ros.parameters import PARAMETERS, RUNTIME_PARAMETERS
from pose6d_ros.ros.pipeline import FramePipeline, load_estimator, PipelineConfig

WARN_PERIOD_S = 5.0


def bundled_model():
    """The folder of the bundled demo model, used when the model parameter is empty.

    Looked for in this package's share directory (colcon install), then where
    `pose6d_ros.core.inference.bundle.default_model()` looks (source tree, pip prefix).
    """
    looked = []
    try:
        # deferred: only a ROS install has it; outside one the package's own folder serves
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory('pose6d_ros')) / 'models' / DEFAULT_MODEL
        if (share / 'card.yaml').is_file():
            return share
        looked.append(str(share))
    except (ImportError, LookupError):  # no ament index, or the package is not installed
        pass
    try:
        return default_model()
    except Pose6dError:
        looked.append('models/ of the source tree and of the Python prefix')
        raise Pose6dError(f'parameter model is empty, which means the bundled demo model '
                          f'{DEFAULT_MODEL}, but it is not installed (looked in '
                          f'{"; ".join(looked)}); set model to a model bundle folder '
                          '(--ros-args -p model:=DIR)') from None


def parse_objects(text):
    """'mug, box' -> ('mug', 'box'); '' -> () (all objects)."""
    return tuple(name.strip() for name in str(text).split(',') if name.strip())


class Pose6dPhases:
    """What the pose6d node does, in the phases of a managed (lifecycle) node.

    configure: load the estimator, create the publishers and tf2; activate: subscribe and
    start the worker; deactivate: unsubscribe and stop it; cleanup: drop the publishers and
    the estimator (freeing the GPU). `Pose6dNode` runs configure + activate at once;
    `Pose6dLifecycleNode` leaves them to a lifecycle manager.
    """

    def _setup(self):
        """Per-node state that lives through every phase; parameters are declared here."""
        self._declare_parameters()
        self.types = conversions.RclpyTypes()
        self.pipeline = None
        self._outputs = {}
        self._slot = None
        self._slot_ready = threading.Condition()
        self._stopping = False
        self._worker = None
        self._stats_lock = threading.Lock()
        self._stats = FrameCounts()
        self._last_warning = {}
        self._subscriptions_made = ()
        self._diagnostics_timer = None
        self._active = False
        self.finished = Future()  # done when a lifecycle node is shut down: the process ends
        self.add_on_set_parameters_callback(self._parameters_callback)

    def _configure(self, estimator=None):
        """Load the estimator (unless given), build the pipeline, publishers and tf2."""
        if estimator is None:
            model = self._param('model')
            if not model:
                model = bundled_model()
                self.get_logger().info(f'parameter model is empty: using the bundled demo '
                                       f'model {model}')
            if self._param('compile') and not self._param('onnx_model'):
                self.get_logger().info('compiling the network (torch.compile) before '
                                       'subscribing; this takes about a minute')
            estimator = load_estimator(model, self._param('device'), self._param('compile'),
                                       self._param('cpu_threads'), self._param('onnx_model'))
        self.pipeline = FramePipeline(estimator, self._pipeline_config(), self.types)
        names = ', '.join(self.pipeline.object_names or []) or '?'
        self.get_logger().info(f'pose estimation on {getattr(estimator, "device", "?")} '
                               f'with {getattr(estimator, "backend", "pytorch")} '
                               f'(objects: {names}; {self.pipeline.describe_min_score()})')
        self._outputs = {
            'poses': self.create_publisher(PoseArray, 'poses', 10),
            'detections': self.create_publisher(Detection3DArray, 'detections', 10),
            'markers': self.create_publisher(MarkerArray, 'markers', 10),
            'debug_image': self.create_publisher(Image, 'debug_image', 1),
            'diagnostics': self.create_publisher(DiagnosticArray, '/diagnostics', 10),
        }
        self._tf_broadcaster = tf2_ros.TransformBroadcaster(self)
        self._tf_buffer = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)
        # From configure to cleanup, so that an inactive node says so on /diagnostics.
        self._diagnostics_timer = self.create_timer(self._param('diagnostics_period'),
                                                    self._diagnostics_callback)

    def _activate(self):
        """Subscribe to the camera and start the worker."""
        with self._slot_ready:
            self._stopping = False
            self._slot = None
        with self._stats_lock:
            self._stats = FrameCounts()
        self._worker = threading.Thread(target=self._work, name='pose6d_worker', daemon=True)
        self._worker.start()
        self._subscribe()
        self._active = True

    def _deactivate(self):
        """Unsubscribe and stop the worker (after the frame it is on); publishers stay."""
        self._active = False
        for subscriber in self._subscriptions_made:
            self.destroy_subscription(subscriber.sub)
        self._subscriptions_made = ()
        with self._slot_ready:
            self._stopping = True
            self._slot = None
            self._slot_ready.notify_all()
        if (self._worker is not None and self._worker.is_alive()
                and self._worker is not threading.current_thread()):
            self._worker.join(timeout=5.0)
        self._worker = None

    def _cleanup(self):
        """Destroy the publishers, timer and tf2 objects; drop the estimator (frees the GPU)."""
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
        for publisher in self._outputs.values():
            self.destroy_publisher(publisher)
        self._outputs = {}
        self._tf_listener.unregister()
        # The broadcaster keeps its /tf publisher until the node goes: destroy it here, or
        # the node advertises /tf after cleanup (and one more after each configure).
        self.destroy_publisher(self._tf_broadcaster.pub_tf)
        self._tf_broadcaster = self._tf_buffer = self._tf_listener = None
        device = str(getattr(self.pipeline.estimator, 'device', ''))
        self.pipeline = None
        if device.startswith('cuda'):
            torch.cuda.empty_cache()

    def destroy_node(self):
        """Stop processing first, then let rclpy destroy the node."""
        self._deactivate()
        return super().destroy_node()

    # --- parameters ---------------------------------------------------------------------------

    def _param(self, name):
        return self.get_parameter(name).value

    def _declare_parameters(self):
        """Declare every parameter of parameters.py; a bad startup value is a Pose6dError."""
        declare_parameters(self, PARAMETERS)

    def _pipeline_config(self, overrides=None):
        values = {field: self._param(name) for name, field in RUNTIME_PARAMETERS.items()
                  if field is not None}
        values.update(overrides or {})
        values['objects'] = parse_objects(values['objects'])
        return PipelineConfig().with_values(**values)

    def _parameters_callback(self, parameters):
        """Validate run-time changes; reject a bad value with the reason, apply good ones."""
        refused = refused_change(parameters, PARAMETERS)  # read-only ones: how to set them
        if refused is not None:
            return refused
        changes = {p.name: p.value for p in parameters}
        config_changes = {RUNTIME_PARAMETERS[name]: value for name, value in changes.items()
                          if RUNTIME_PARAMETERS.get(name)}
        if config_changes and self.pipeline is not None:
            try:
                config = self._pipeline_config(config_changes).validated(
                    self.pipeline.object_names)
            except Pose6dError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            self.pipeline.config = config  # one attribute store: the worker sees old or new
        return SetParametersResult(successful=True)

    # --- input --------------------------------------------------------------------------------

    def _subscribe(self):
        reliability = (ReliabilityPolicy.RELIABLE if self._param('qos_reliability') == 'reliable'
                       else ReliabilityPolicy.BEST_EFFORT)
        qos = QoSProfile(reliability=reliability, history=HistoryPolicy.KEEP_LAST,
                         depth=self._param('qos_depth'), durability=DurabilityPolicy.VOLATILE)
        compressed = self._param('image_transport') == 'compressed'
        image_type, image_topic = ((CompressedImage, 'image/compressed') if compressed
                                   else (Image, 'image'))
        self._image_sub = message_filters.Subscriber(self, image_type, image_topic,
                                                     qos_profile=qos)
        self._info_sub = message_filters.Subscriber(self, CameraInfo, 'camera_info',
                                                    qos_profile=qos)
        self._sync = message_filters.ApproximateTimeSynchronizer(
            [self._image_sub, self._info_sub], self._param('sync_queue_size'),
            self._param('sync_slop'))
        self._sync.registerCallback(self._frame_callback)
        # Counted apart from the pairs, so that diagnostics can tell which of the two is missing.
        self._image_sub.registerCallback(self._count_callback, 'images')
        self._info_sub.registerCallback(self._count_callback, 'infos')
        self._subscriptions_made = (self._image_sub, self._info_sub)
        self.get_logger().info(
            f'subscribed to {self._image_sub.sub.topic_name} and '
            f'{self._info_sub.sub.topic_name} ({self._param("qos_reliability")}, depth '
            f'{self._param("qos_depth")})')

    def _count_callback(self, _msg, counter):
        with self._stats_lock:
            setattr(self._stats, counter, getattr(self._stats, counter) + 1)

    def _frame_callback(self, image_msg, info_msg):
        with self._slot_ready:
            with self._stats_lock:
                self._stats.paired += 1
                if self._slot is not None:
                    self._stats.dropped += 1
            self._slot = (image_msg, info_msg)
            self._slot_ready.notify()

    # --- work ---------------------------------------------------------------------------------

    def _work(self):
        while True:
            with self._slot_ready:
                while self._slot is None and not self._stopping:
                    self._slot_ready.wait(0.5)
                if self._stopping:
                    return
                frame, self._slot = self._slot, None
            try:
                self._handle(*frame)
            except Exception as exc:  # keep the node alive; the message says what failed
                if not self.context.ok():  # shut down under us: nothing can publish or log
                    return
                self._warn('internal', f'frame failed: {type(exc).__name__}: {exc}')

    def _handle(self, image_msg, info_msg):
        start = time.monotonic()
        try:
            result = self.pipeline.process(image_msg, info_msg)
        except FrameError as exc:
            with self._stats_lock:
                self._stats.bad += 1
                self._stats.last_problem = str(exc)
            self._warn(exc.reason, f'bad frame skipped: {exc}')
            return
        if self._param('publish_tf') and result.poses:
            if result.frame_id:
                self._tf_broadcaster.sendTransform(result.transforms())
            else:
                self._warn('frame_id', 'image and camera_info have an empty frame_id; no TF')
        outputs = self._in_target_frame(result)
        if outputs is not None:
            if self._param('publish_poses'):
                self._outputs['poses'].publish(outputs.pose_array())
            if self._param('publish_detections'):
                self._outputs['detections'].publish(outputs.detections())
            if self._param('publish_markers'):
                self._outputs['markers'].publish(outputs.markers())
        debug = self._outputs['debug_image']
        if self._param('publish_debug_image') and debug.get_subscription_count() > 0:
            debug.publish(result.debug_image())
        now_ns = self.get_clock().now().nanoseconds
        age_s = (now_ns - conversions.stamp_to_ns(image_msg.header.stamp)) / 1e9
        with self._stats_lock:
            self._stats.add(time.monotonic() - start, age_s, result.inference_s)

    def _in_target_frame(self, result):
        """The result in target_frame, itself without one, None when tf2 has no transform."""
        target = self._param('target_frame')
        if not target or target == result.frame_id:
            return result
        try:
            transform = self._tf_buffer.lookup_transform(
                target, result.frame_id, Time.from_msg(result.header.stamp),
                timeout=Duration(seconds=self._param('tf_timeout')))
        except tf2_ros.TransformException as exc:
            self._warn('tf', f"no transform from camera frame '{result.frame_id}' to "
                             f"target_frame '{target}' at the image stamp; poses, detections "
                             f'and markers not published ({exc})')
            return None
        return result.transformed(conversions.pose_from_transform(transform), target)

    def _warn(self, reason, message):
        """A warning at most every WARN_PERIOD_S per kind of problem, with the skipped count."""
        now = time.monotonic()
        last, suppressed = self._last_warning.get(reason, (-math.inf, 0))
        if now - last < WARN_PERIOD_S:
            self._last_warning[reason] = (last, suppressed + 1)
            return
        more = f' ({suppressed} more like this since the last warning)' if suppressed else ''
        self._last_warning[reason] = (now, 0)
        self.get_logger().warning(message + more)

    # --- diagnostics --------------------------------------------------------------------------

    def _diagnostics_callback(self):
        with self._stats_lock:
            stats, self._stats = self._stats, FrameCounts()
        period = max(time.monotonic() - stats.since, 1e-6)
        status = assess(stats, period, self._active, self._param('dropped_frames_warning'))
        if status.warning is not None:
            self._warn(*status.warning)
        header = conversions.make_header(self.types, self.get_clock().now().nanoseconds, '')
        self._outputs['diagnostics'].publish(conversions.diagnostics(
            self.types, header, name=f'{self.get_name()}: pose estimation',
            hardware_id=str(getattr(self.pipeline.estimator, 'device', '')),
            rate_hz=stats.frames / period, latency_s=stats.mean('age'), level=status.level,
            message=status.message, values=status.values))


class Pose6dNode(Pose6dPhases, Node):
    """Image + camera_info in; poses, detections, markers, TF, debug image, diagnostics out.

    Configured and active from the start. `estimator` may be given (tests); otherwise it is
    loaded from the `model` parameter.
    """

    def __init__(self, estimator=None, **kwargs):
        super().__init__('pose6d_node', **kwargs)
        self._setup()
        self._configure(estimator)
        self._activate()


class Pose6dLifecycleNode(Pose6dPhases, LifecycleNode):
    """The pose6d node as a managed node: nothing is loaded until configure.

    configure loads the model and creates the publishers, activate subscribes to the camera,
    deactivate stops processing, cleanup frees the model (and the GPU memory it held).
    `estimator` may be given (tests); it is then used at configure instead of the model.
    """

    def __init__(self, estimator=None, **kwargs):
        super().__init__('pose6d_node', **kwargs)
        self._setup()
        self._given_estimator = estimator

    def on_configure(self, state):
        try:
            self._configure(self._given_estimator)
        except Pose6dError as exc:
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state):
        self._activate()
        return super().on_activate(state)

    def on_deactivate(self, state):
        self._deactivate()
        self.get_logger().info('deactivated: unsubscribed from the camera, processing stopped '
                               '(publishers and model kept)')
        return super().on_deactivate(state)

    def on_cleanup(self, state):
        self._cleanup()
        self.get_logger().info('cleaned up: model, publishers and tf2 released')
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state):
        self._deactivate()
        if self.pipeline is not None:
            self._cleanup()
        self.get_logger().info('shut down: the process ends')
        self.finished.set_result(True)
        return TransitionCallbackReturn.SUCCESS


def main(args=None, node_class=None):
    """Entry point of `ros2 run pose6d_ros pose6d_node`; returns the exit status."""
    spinning.init(args)   # Ctrl-C stops the worker before rclpy goes (spinning.py)
    node = None
    try:
        node = (node_class or Pose6dNode)()
        spinning.spin_until_done(node, node.finished)
    except Pose6dError as exc:
        rclpy.logging.get_logger('pose6d_node').fatal(str(exc))
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()  # stops the worker first (Pose6dPhases.destroy_node)
        rclpy.try_shutdown()
    return 0


def lifecycle_main(args=None):
    """Entry point of `ros2 run pose6d_ros pose6d_lifecycle_node` (a managed node)."""
    return main(args, Pose6dLifecycleNode)


if __name__ == '__main__':
    raise SystemExit(main())
