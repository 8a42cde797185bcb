"""The per-frame pipeline shared by the node and the bag tool (no rclpy here).

image + camera_info messages -> checks -> RGB array + CameraModel -> estimator -> filters ->
[tracker] -> `FrameResult`, whose output messages are built only when asked for (the debug
overlay, the most expensive, only when someone listens). A bad frame raises `FrameError` with
one clear message and produces no output; the pipeline keeps no state that a bad frame could
spoil (the tracker is left as it was).

With `tracking` on, the kept instances go through a `Tracker` (core/tracking) fed with the
image header's stamp: the outputs are its confirmed tracks, named `<object>_<track id>`, and
the network runs only on the frames the tracker asks for (every `tracking_network_every`
frames, or sooner when a track needs it).

The score threshold (`min_score`) is the user's when given, else the model's own: the
`min_score` of its card (set by `pose6d calibrate-scores` from a measured precision and
false-positive rate), else FALLBACK_MIN_SCORE.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
import math
import re
import time

import numpy as np

from pose6d_ros.core.errors import CameraError, Pose6dError
from pose6d_ros.core.geometry import draw
from pose6d_ros.core.geometry.poses import Pose
from pose6d_ros.core.tracking.se3_filter import MODELS
from pose6d_ros.core.tracking.tracker import Tracker, TrackerConfig
from pose6d_ros.ros import conversions
from pose6d_ros.ros.errors import FrameError

# tf2 frame ids: no whitespace, no leading slash (tf2 rejects those).
_FRAME_PREFIX = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_./-]*$')
# min_score meaning "the model's default" (a ROS parameter has no "unset"), and the threshold
# of a model whose card sets none (the node's default before cards had one).
MODEL_MIN_SCORE = -1.0
FALLBACK_MIN_SCORE = 0.5


@dataclass(frozen=True)
class PipelineConfig:
    """What to keep and how to publish it; every field is a runtime parameter of the node."""

    min_score: float = MODEL_MIN_SCORE    # keep instances with score >= this, in [0, 1];
    #                                       -1: the model's default (resolve_min_score)
    max_reprojection_error: float = 0.0   # px; keep error <= this; 0 disables the check
    objects: tuple = ()                   # object names to keep; empty keeps all
    frame_prefix: str = ''                # TF child frame = <prefix><object>_<k>
    marker_ns: str = 'pose6d'
    marker_lifetime: float = 0.5          # s; 0 keeps markers until the next DELETEALL
    line_width: float = 0.005             # m, box edges in RViz
    mesh_markers: bool = False            # add MESH_RESOURCE markers for objects with a mesh
    # Tracking (core/tracking/tracker.py explains each; TrackerConfig has the same defaults).
    tracking: bool = False                # off: every frame through the network, as alone
    tracking_network_every: int = 5       # frames between network runs; 1: every frame
    tracking_confirm_hits: int = 2        # published once seen in this many network runs ...
    tracking_confirm_window: int = 3      # ... of its last this many
    tracking_timeout: float = 1.0         # s of stamps without the network seeing it: dropped
    tracking_max_coast: float = 0.5       # s after the network last saw it: not published
    tracking_association_distance: float = 0.1  # m; farther from every track: a new track
    tracking_gate_distance: float = 0.03  # m; a farther jump is held back until confirmed
    tracking_gate_angle: float = 30.0     # degrees; the same for rotation
    tracking_filter: str = 'constant_velocity'  # or 'none'
    tracking_min_quality: float = 0.5     # a followed pose below this asks for the network

    def validated(self, object_names=None):
        """This config, or a Pose6dError naming the bad value and what is expected."""
        if not (isinstance(self.min_score, (int, float)) and (
                0.0 <= self.min_score <= 1.0 or self.min_score == MODEL_MIN_SCORE)):
            raise Pose6dError(f'min_score must be a number in [0, 1], or {MODEL_MIN_SCORE:g} '
                              f"for the model's default; got {self.min_score!r}")
        error = self.max_reprojection_error
        if not (isinstance(error, (int, float)) and error >= 0.0 and not math.isnan(error)):
            raise Pose6dError('max_reprojection_error must be >= 0 pixels (0 disables the '
                              f'check); got {error!r}')
        if isinstance(self.objects, str) or not all(isinstance(n, str) for n in self.objects):
            raise Pose6dError(f'objects must be a list of object names; got {self.objects!r}')
        if object_names is not None:
            unknown = [n for n in self.objects if n not in object_names]
            if unknown:
                raise Pose6dError(f'unknown object name(s) {", ".join(map(repr, unknown))}; '
                                  f'the model knows {", ".join(object_names) or "no objects"}')
        if self.frame_prefix and not _FRAME_PREFIX.match(self.frame_prefix):
            raise Pose6dError(f'frame_prefix {self.frame_prefix!r} is not a valid tf2 frame id '
                              'start; expected letters, digits, _ . / - and no leading slash')
        if not (isinstance(self.marker_lifetime, (int, float)) and self.marker_lifetime >= 0):
            raise Pose6dError(f'marker_lifetime must be >= 0 s; got {self.marker_lifetime!r}')
        if not (isinstance(self.line_width, (int, float)) and self.line_width > 0):
            raise Pose6dError(f'line_width must be > 0 m; got {self.line_width!r}')
        self.tracker_config()
        return self

    def tracker_config(self):
        """The TrackerConfig of the tracking_* fields; Pose6dError naming a bad one."""
        if self.tracking_filter not in MODELS:
            raise Pose6dError(f'tracking_filter is {self.tracking_filter!r}; expected one of '
                              f'{", ".join(MODELS)}')
        try:
            base = TrackerConfig()
            return base.with_values(
                network_every=self.tracking_network_every,
                confirm_hits=self.tracking_confirm_hits,
                confirm_window=self.tracking_confirm_window,
                timeout_s=self.tracking_timeout,
                max_coast_s=self.tracking_max_coast,
                max_distance=self.tracking_association_distance,
                gate_distance=self.tracking_gate_distance,
                gate_angle_deg=self.tracking_gate_angle,
                min_quality=self.tracking_min_quality,
                filter=replace(base.filter, model=self.tracking_filter))
        except ValueError as exc:
            raise Pose6dError(f'tracking settings: {exc}') from None

    def with_values(self, **values):
        """A copy with some fields changed (unknown names are a Pose6dError)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise Pose6dError(f'unknown pipeline setting(s) {", ".join(unknown)}; expected '
                              f'{", ".join(sorted(known))}')
        if 'objects' in values:
            values['objects'] = tuple(values['objects'] or ())
        return replace(self, **values)


def resolve_min_score(min_score, estimator=None):
    """The threshold in force: `min_score` when given (>= 0), else the model's default.

    The model's default is its card's min_score (`estimator.card_min_score`), else
    FALLBACK_MIN_SCORE.
    """
    if min_score is not None and min_score >= 0:
        return float(min_score)
    card = getattr(estimator, 'card_min_score', None)
    return float(card) if card is not None else FALLBACK_MIN_SCORE


def filter_poses(poses, config, min_score=None):
    """Instances that pass the score / reprojection / name filters, highest score first.

    min_score: the threshold in force (default: `resolve_min_score(config.min_score)`).
    """
    threshold = resolve_min_score(config.min_score) if min_score is None else min_score
    kept = []
    for obj in poses:
        if float(obj.score) < threshold:
            continue
        if config.max_reprojection_error > 0 and not (
                float(obj.reprojection_error) <= config.max_reprojection_error):
            continue
        if config.objects and obj.object_name not in config.objects:
            continue
        kept.append(obj)
    return sorted(kept, key=lambda obj: -float(obj.score))


def transform_object_pose(obj, T_target_cam):
    """The ObjectPose with its pose expressed in another frame.

    T_target_obj = T_target_cam @ T_cam_obj (pixels are untouched: they stay camera-image
    pixels); a tracked pose's covariance is turned into the target frame as well.
    """
    T_target_obj = T_target_cam @ obj.pose
    covariance = obj.covariance
    if covariance is not None:  # position and rotation vector both turn with the frame
        turn = np.kron(np.eye(2), T_target_cam.R)
        covariance = turn @ np.asarray(covariance) @ turn.T
    return replace(obj, R=T_target_obj.R, t=T_target_obj.t, covariance=covariance)


@dataclass
class FrameResult:
    """The kept instances of one frame and the messages built from them, on request.

    `poses` are in the frame of `header` (the camera's optical frame, or the node's
    target_frame after `transformed`); `camera_poses` always in the camera frame. With
    tracking, they are the confirmed tracks (by track id) and `all_poses` is empty on the
    frames where the network did not run (`network_ran`).
    """

    header: object                  # std_msgs/Header of the outputs (image stamp, frame id)
    camera: object                  # CameraModel from the frame's camera_info
    image_rgb: np.ndarray           # (H, W, 3) uint8
    poses: list                     # kept ObjectPoses, highest score first
    camera_poses: list              # the same, in the camera frame
    all_poses: list                 # everything the estimator returned
    inference_s: float              # estimator wall time
    types: object = field(repr=False)
    config: PipelineConfig = field(repr=False, default_factory=PipelineConfig)
    mesh_resources: dict = field(repr=False, default_factory=dict)
    label_up: tuple = (0.0, -1.0, 0.0)  # "up" in the header's frame, for marker labels
    camera_header: object = None    # the header in the camera frame (TF, debug image)
    network_ran: bool = True        # False on frames the tracker followed without it

    def __post_init__(self):
        if self.camera_header is None:
            self.camera_header = self.header

    @property
    def frame_id(self):
        return self.header.frame_id

    def pose_array(self):
        return conversions.pose_array(self.types, self.poses, self.header)

    def detections(self):
        return conversions.detection3d_array(self.types, self.poses, self.header)

    def markers(self):
        config = self.config
        return conversions.marker_array(
            self.types, self.poses, self.header, lifetime_s=config.marker_lifetime,
            ns=config.marker_ns, line_width=config.line_width, label_up=self.label_up,
            mesh_resources=self.mesh_resources if config.mesh_markers else None)

    def transforms(self):
        """A TransformStamped T_cam_obj per instance: parent = the camera frame, always."""
        return conversions.transforms(self.types, self.camera_poses, self.camera_header,
                                      self.config.frame_prefix)

    def tf_message(self):
        return conversions.tf_message(self.types, self.transforms())

    def debug_rgb(self):
        """The overlay (H, W, 3) uint8: boxes, axes, labels drawn on the camera image."""
        return draw.draw_poses(self.image_rgb, self.camera_poses, self.camera)

    def debug_image(self, encoding='rgb8'):
        """sensor_msgs/Image of the overlay, in the camera frame."""
        return conversions.rgb_to_image(self.types, self.debug_rgb(), self.camera_header,
                                        encoding)

    def transformed(self, T_target_cam, target_frame, label_up=(0.0, 0.0, 1.0)):
        """This result with poses, detections and markers in `target_frame`.

        TF and the debug image stay in the camera frame. T_target_cam: a Pose, camera frame ->
        target frame.
        """
        if not isinstance(T_target_cam, Pose):
            T_target_cam = Pose(*T_target_cam)
        return replace(self, poses=[transform_object_pose(o, T_target_cam)
                                    for o in self.camera_poses],
                       header=conversions.copy_header(self.types, self.header, target_frame),
                       label_up=tuple(label_up))


class FramePipeline:
    """image + camera_info messages -> FrameResult, or FrameError for a bad frame.

    estimator: callable (image_rgb (H, W, 3) uint8, CameraModel) -> list[ObjectPose], with
    `objects` (ObjectSet) and `device`. types: the MessageTypes the outputs are built with.
    """

    def __init__(self, estimator, config=None, types=None, mesh_resources=None):
        self.estimator = estimator
        self.object_names = _object_names(estimator)
        self.config = (config or PipelineConfig()).validated(self.object_names)
        self.types = types if types is not None else conversions.RosbagsTypes.for_distro()
        self.mesh_resources = mesh_resources
        self._camera_key = None
        self._camera = None
        self._tracker = None

    @property
    def config(self):
        """The PipelineConfig in force (setting it re-resolves min_score)."""
        return self._state[0]

    @config.setter
    def config(self, config):
        min_score = resolve_min_score(config.min_score, self.estimator)
        # The estimator's own threshold follows: it then skips the PnP of instances that
        # would be dropped here, and a min_score below its default still takes effect.
        if hasattr(self.estimator, 'score_threshold'):
            self.estimator.score_threshold = min_score
        # One attribute store for both: the worker reads (config, min_score) old or new.
        self._state = (config, min_score)

    @property
    def min_score(self):
        """The score threshold in force (the config's, or the model's default)."""
        return self._state[1]

    def describe_min_score(self):
        """One line for a log: the threshold in force and where it comes from."""
        if self.config.min_score >= 0:
            return f'min_score {self.min_score:g}'
        if getattr(self.estimator, 'card_min_score', None) is not None:
            calibrated = getattr(self.estimator, 'calibration', None) is not None
            return (f"min_score {self.min_score:g}: the model card's default"
                    + (' (scores calibrated to precision)' if calibrated else ''))
        return f'min_score {self.min_score:g} (the model card sets none)'

    def update(self, **values):
        """Change settings at run time; a Pose6dError (and no change) for a bad value."""
        self.config = self.config.with_values(**values).validated(self.object_names)
        return self.config

    def camera(self, info_msg):
        """The CameraModel of a camera_info message (the last one is cached); FrameError if bad."""
        key = _camera_key(info_msg)
        if key != self._camera_key:
            try:
                camera = conversions.camera_from_info(info_msg)
            except CameraError as exc:
                raise FrameError(str(exc), 'camera_info') from None
            self._camera_key, self._camera = key, camera
        return self._camera

    def process(self, image_msg, info_msg):
        """Check, convert and run one frame; FrameResult, or FrameError with no output."""
        image_rgb = conversions.image_to_rgb(image_msg)
        camera = self.camera(info_msg)
        height, width = image_rgb.shape[:2]
        if (width, height) != camera.size:
            raise FrameError(
                f'image is {width}x{height} but camera_info is for {camera.width}x'
                f'{camera.height}; expected the same size (camera_info of another camera or '
                'resolution?)', 'size')
        # One read: the node may replace the settings from another thread.
        config, min_score = self._state
        tracker = self._tracker_for(config)
        runs = []  # what the estimator returned, when it ran

        def detect():
            start = time.perf_counter()
            try:
                found = list(self.estimator(image_rgb, camera))
            except CameraError as exc:
                raise FrameError(f'camera_info: {exc}', 'camera_info') from None
            except Pose6dError as exc:
                raise FrameError(str(exc), 'estimator') from None
            runs.append((found, time.perf_counter() - start))
            return filter_poses(found, config, min_score)

        if tracker is None:
            kept = detect()
        else:
            stamp_s = conversions.stamp_to_ns(image_msg.header.stamp) / 1e9
            kept = [p for p in tracker.step(image_rgb, camera, stamp_s, detect)
                    if not config.objects or p.object_name in config.objects]
        found, inference_s = runs[0] if runs else ([], 0.0)
        frame_id = image_msg.header.frame_id or info_msg.header.frame_id
        header = conversions.copy_header(self.types, image_msg.header, frame_id)
        mesh_resources = self.mesh_resources
        if mesh_resources is None and config.mesh_markers:
            mesh_resources = self.mesh_resources = _mesh_resources(self.estimator)
        return FrameResult(header=header, camera=camera, image_rgb=image_rgb, poses=kept,
                           camera_poses=kept, all_poses=found, inference_s=inference_s,
                           types=self.types, config=config,
                           mesh_resources=mesh_resources or {}, network_ran=bool(runs))

    @property
    def tracker(self):
        """The Tracker while tracking is on (None otherwise)."""
        return self._tracker

    def _tracker_for(self, config):
        """The tracker for `config`: made when tracking turns on, given new settings."""
        if not config.tracking:
            self._tracker = None
            return None
        wanted = config.tracker_config()
        if self._tracker is None:
            objects = getattr(self.estimator, 'objects', None)
            if objects is None:
                raise FrameError("tracking needs the estimator's object set (objects); this "
                                 'estimator has none', 'estimator')
            self._tracker = Tracker(objects, wanted)
        elif self._tracker.config != wanted:
            self._tracker.configure(wanted)
        return self._tracker


def load_estimator(bundle, device='auto', compile_network=False, cpu_threads=0, onnx=''):
    """Estimator.from_bundle(bundle, device) ('auto': CUDA when present).

    Pose6dError if the estimator cannot be imported, and whatever from_bundle raises for a bad
    bundle or device.

    compile_network: torch.compile the network (CUDA graphs on a GPU; the input size is the
    bundle's, whatever the camera), compiled here by a warm-up rather than on the first frame.
    cpu_threads: the network's threads on a CPU (0: as many as the process may use).
    onnx: run the network from this ONNX file of the bundle (onnxruntime, CPU); '' = PyTorch.
    """
    try:  # deferred: a broken PyTorch install is one message from the node, not a traceback
        from pose6d_ros.core.inference.estimator import Estimator, EstimatorConfig
    except ImportError as exc:
        raise Pose6dError('cannot load the estimator (pose6d_ros.core.inference.estimator): '
                          f'{exc}') from None
    estimator = Estimator.from_bundle(bundle, device=device,
                                      config=EstimatorConfig(compile=compile_network,
                                                             threads=cpu_threads,
                                                             onnx=onnx or None))
    if compile_network:
        try:
            estimator.warm_up()
        except Exception as exc:  # no C++ compiler for inductor, an unsupported op, ...
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise Pose6dError(f'torch.compile failed ({type(exc).__name__}: {first_line}); '
                              'set the compile parameter to false') from None
    return estimator


def _object_names(estimator):
    objects = getattr(estimator, 'objects', None)
    if objects is None:
        return None
    return list(objects.names)


def _mesh_resources(estimator):
    objects = getattr(estimator, 'objects', None)
    return conversions.mesh_resources_from_objects(objects) if objects is not None else {}


def _camera_key(info):
    return (int(info.width), int(info.height), str(info.distortion_model),
            np.asarray(info.k, dtype=np.float64).tobytes(),
            np.asarray(info.d, dtype=np.float64).tobytes(),
            np.asarray(info.p, dtype=np.float64).tobytes())
