"""The parameters of the pose6d node as plain data (no rclpy), and their validation.

One table serves the node (descriptors.py builds its ParameterDescriptors from it and checks
every change with `validate`), config/pose6d.yaml and the table in docs/ros.md (both checked
against it by test/test_launch_config.py). Regenerate the docs table with
`python -m pose6d_ros.ros.parameters`. The webcam path's nodes have tables of the same
`ParameterSpec`s in camera.py.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
import re

from pose6d_ros.core.geometry.calibration import CAMERA_NAME

# tf2 frame ids: no whitespace, no leading slash (tf2 rejects those).
FRAME_ID = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_./-]*$')
FRAME_ID_RULE = "'' or a tf2 frame id: letters, digits, _ . / - and no leading slash"
CAMERA_NAME_RULE = 'letters, digits and _ (as camera_info_manager requires)'

_TYPE_NAMES = {bool: 'bool', int: 'int', float: 'double', str: 'string'}


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: its default (whose type is the parameter's type) and its limits."""

    name: str
    default: bool | int | float | str
    description: str
    read_only: bool = False            # set at startup only (launch file, params file)
    range: tuple | None = None  # noqa: A003 # inclusive (low, high) of a number
    sentinel: float | None = None      # a value outside `range` allowed too, with a meaning
    choices: tuple | None = None       # the allowed strings
    frame_id: bool = False             # '' or a valid tf2 frame id
    camera_name: bool = False          # a camera name camera_info_manager accepts
    pipeline_field: str | None = None  # PipelineConfig field a run-time change goes to
    required: bool = False             # a string that must not be empty

    @property
    def type(self):  # noqa: A003
        return type(self.default)

    @property
    def type_name(self):
        """The ROS parameter type: bool, int, double or string."""
        return _TYPE_NAMES[self.type]

    def constraints(self):
        """The limits in words ('' when any value of the type is allowed)."""
        if self.range is not None:
            return (f'{self.range[0]} to {self.range[1]}'
                    + ('' if self.sentinel is None else f', or {self.sentinel}'))
        if self.choices is not None:
            return 'one of ' + ', '.join(repr(c) for c in self.choices)
        if self.frame_id:
            return FRAME_ID_RULE.removeprefix("'' or ") if self.required else FRAME_ID_RULE
        if self.camera_name:
            return CAMERA_NAME_RULE
        return 'not empty' if self.required else ''


def _spec(name, default, description, **limits):
    return name, ParameterSpec(name, default, description, **limits)


PARAMETERS = dict([
    _spec('model', '', "model bundle folder (pose6d train output); '' = the bundled demo model; "
          'needs a restart', read_only=True),
    _spec('device', 'auto', "'auto' (CUDA when present), 'cpu' or 'cuda'; needs a restart",
          read_only=True, choices=('auto', 'cpu', 'cuda')),
    _spec('compile', False, 'torch.compile the network (CUDA graphs on a GPU) at startup: '
          'about 1.2x faster on a CPU, more on a GPU, after a compilation of about a minute; '
          'needs a restart', read_only=True),
    _spec('onnx_model', '', 'run the network from this ONNX file of the model bundle with '
          'onnxruntime on the CPU (pose6d export --format onnx-int8: the fast CPU path); a '
          "relative path is also looked up in the bundle folder; '' = PyTorch; needs a restart",
          read_only=True),
    _spec('cpu_threads', 0, 'CPU threads for the network on a CPU; 0 = as many as the process '
          'may use (its CPU affinity and container CPU quota); needs a restart', read_only=True,
          range=(0, 256)),
    _spec('image_transport', 'raw', "'raw' subscribes image (sensor_msgs/Image), 'compressed' "
          'image/compressed (sensor_msgs/CompressedImage); needs a restart', read_only=True,
          choices=('raw', 'compressed')),
    _spec('qos_reliability', 'best_effort', "image/camera_info QoS: 'best_effort' (sensor data) "
          "or 'reliable'; needs a restart", read_only=True,
          choices=('best_effort', 'reliable')),
    _spec('qos_depth', 1, 'image/camera_info subscription queue depth; needs a restart',
          read_only=True, range=(1, 100)),
    # message_filters pairs stamps that differ by strictly less than the slop, so it is > 0.
    _spec('sync_slop', 0.05, 'seconds an image and a camera_info stamp may differ to be paired',
          read_only=True, range=(0.001, 1.0)),
    _spec('sync_queue_size', 5, 'messages per topic the approximate time synchronizer keeps',
          read_only=True, range=(1, 100)),
    _spec('min_score', -1.0, "keep instances whose score is at least this; -1.0 = the model's "
          "default: its card's min_score (pose6d calibrate-scores), 0.5 when it has none",
          range=(0.0, 1.0), sentinel=-1.0, pipeline_field='min_score'),
    _spec('max_reprojection_error', 0.0, 'keep instances whose mean PnP reprojection error (px) '
          'is at most this; 0 disables the check', range=(0.0, 1000.0),
          pipeline_field='max_reprojection_error'),
    _spec('objects', '', "comma-separated object names to keep, e.g. 'mug,box'; '' keeps all",
          pipeline_field='objects'),
    _spec('frame_prefix', '', 'TF child frames are <frame_prefix><object>_<k>', frame_id=True,
          pipeline_field='frame_prefix'),
    _spec('target_frame', '', 'publish poses, detections and markers in this frame (tf2 lookup '
          "at the image stamp); '' keeps the camera frame. TF stays camera-relative",
          frame_id=True),
    _spec('tf_timeout', 0.05, 'seconds to wait for the target_frame transform', range=(0.0, 1.0)),
    _spec('publish_poses', True, 'publish poses (geometry_msgs/PoseArray)'),
    _spec('publish_detections', True, 'publish detections (vision_msgs/Detection3DArray)'),
    _spec('publish_markers', True, 'publish markers (visualization_msgs/MarkerArray)'),
    _spec('publish_tf', True, 'broadcast T_cam_obj of every instance on /tf'),
    _spec('publish_debug_image', True, 'publish debug_image (built only while subscribed)'),
    _spec('marker_lifetime', 0.5, 'seconds a marker lives without an update; 0 = until replaced',
          range=(0.0, 60.0), pipeline_field='marker_lifetime'),
    _spec('mesh_markers', False, 'add MESH_RESOURCE markers for objects with a mesh file',
          pipeline_field='mesh_markers'),
    _spec('tracking', False, 'track objects over frames: stable ids in TF frames '
          '<frame_prefix><object>_<track id>, filtered poses, new tracks published once '
          'confirmed, and poses followed in the image (KLT + PnP) between network runs',
          pipeline_field='tracking'),
    _spec('tracking_network_every', 5, 'with tracking: run the network every this many frames '
          '(sooner when a track needs it); 1 = every frame, no following in the image',
          range=(1, 100), pipeline_field='tracking_network_every'),
    _spec('tracking_confirm_hits', 2, 'with tracking: a new track is published once the '
          'network has seen it in this many of its last tracking_confirm_window runs '
          '(1 = at once)', range=(1, 20), pipeline_field='tracking_confirm_hits'),
    _spec('tracking_confirm_window', 3, 'with tracking: the network runs over which '
          'tracking_confirm_hits are counted', range=(1, 20),
          pipeline_field='tracking_confirm_window'),
    _spec('tracking_timeout', 1.0, 'with tracking: seconds (of image stamps) a track lives '
          'without the network seeing it', range=(0.05, 60.0), pipeline_field='tracking_timeout'),
    _spec('tracking_max_coast', 0.5, 'with tracking: seconds a track is still published after '
          'the network last saw it (followed in the image or predicted meanwhile)',
          range=(0.0, 60.0), pipeline_field='tracking_max_coast'),
    _spec('tracking_association_distance', 0.1, 'with tracking: metres from every track of its '
          'object beyond which an instance starts a new track', range=(0.001, 10.0),
          pipeline_field='tracking_association_distance'),
    _spec('tracking_gate_distance', 0.03, 'with tracking: a measurement this many metres from '
          'the predicted pose is a jump, held back until the network confirms it',
          range=(0.001, 10.0), pipeline_field='tracking_gate_distance'),
    _spec('tracking_gate_angle', 30.0, 'with tracking: the same in degrees of rotation (up to '
          "the object's symmetries)", range=(1.0, 180.0), pipeline_field='tracking_gate_angle'),
    _spec('tracking_filter', 'constant_velocity', 'with tracking: the pose filter, '
          "'constant_velocity' (Kalman filter on position and rotation) or 'none' (the last "
          'measurement)', choices=('constant_velocity', 'none'), pipeline_field='tracking_filter'),
    _spec('tracking_min_quality', 0.5, 'with tracking: a pose followed in the image with a '
          'quality below this runs the network on the next frame', range=(0.0, 1.0),
          pipeline_field='tracking_min_quality'),
    _spec('diagnostics_period', 1.0, 'seconds between /diagnostics messages; needs a restart',
          read_only=True, range=(0.1, 60.0)),
    _spec('dropped_frames_warning', 0.1, '/diagnostics says WARN when more than this share of '
          'the frames of a period is dropped (the camera is faster than the node); 1 = never',
          range=(0.0, 1.0)),
])

# Parameters changeable at run time -> PipelineConfig field (None: handled by the node).
RUNTIME_PARAMETERS = {name: spec.pipeline_field for name, spec in PARAMETERS.items()
                      if not spec.read_only}

# pose6d_camera_node (camera_node.py): every parameter is read at start-up.
CAMERA_PARAMETERS = dict([
    _spec('source', '0', "a camera index ('0') or device ('/dev/video0'), a video file, an "
          'image folder (its images in name order) or one image file', read_only=True,
          required=True),
    _spec('camera_info_url', '', 'the calibration, as camera_info_manager reads it: '
          'file:///absolute/path.yaml (the ROS calibration YAML that pose6d calibrate and '
          'camera_calibration write), package://<package>/<path> or a plain path, with ${NAME} '
          '(camera_name) and ${ROS_HOME} (its environment variable, else ~/.ros) substituted; '
          "'' = file://${ROS_HOME}/camera_info/${NAME}.yaml. Without the file: a rough K from "
          'field_of_view, with a warning that distances will be off. set_camera_info writes '
          'this file', read_only=True),
    _spec('camera_name', 'camera', "the camera's name: ${NAME} in camera_info_url, and the "
          'camera_name that set_camera_info writes in the calibration file (a file that names '
          'another camera is used, with a warning, as camera_info_manager does)',
          read_only=True, camera_name=True),
    _spec('field_of_view', 60.0, 'horizontal field of view (degrees) of the rough K used '
          'without a calibration (a typical laptop webcam: 55-70)', read_only=True,
          range=(1.0, 179.0)),
    _spec('frame_id', 'camera_optical_frame', 'frame_id of image_raw and camera_info: the '
          "camera's optical frame (REP 103: x right, y down, z forward)", read_only=True,
          frame_id=True, required=True),
    _spec('width', 0, 'image width (pixels) asked of a camera; frames of another width are '
          'resized to it; 0 = as the source gives (set width and height together)',
          read_only=True, range=(0, 16384)),
    _spec('height', 0, 'image height (pixels), as width', read_only=True, range=(0, 16384)),
    _spec('fps', 0.0, 'frames per second asked of a camera, or the pace of a video or folder; '
          "0 = the camera's or the video's own rate (a folder: 10)", read_only=True,
          range=(0.0, 1000.0)),
    _spec('loop', True, 'a video or image folder starts again at its end; false: played once, '
          'then the node exits', read_only=True),
])

# pose6d_static_transform_node (static_transform_node.py): one transform on /tf_static.
STATIC_TRANSFORM_PARAMETERS = dict([
    _spec('parent_frame', 'base_link', 'the parent frame', read_only=True, frame_id=True,
          required=True),
    _spec('child_frame', 'camera_optical_frame', 'the child frame', read_only=True,
          frame_id=True, required=True),
    *(_spec(axis, 0.0, f"position of the child frame along the parent's {axis} (m)",
            read_only=True, range=(-1e4, 1e4)) for axis in 'xyz'),
    *(_spec(angle, 0.0, f'{angle} (rad) of the child frame in the parent: roll about x, then '
            'pitch about y, then yaw about z, fixed axes (URDF rpy)', read_only=True,
            range=(-7.0, 7.0)) for angle in ('roll', 'pitch', 'yaw')),
])
TABLES = {'pose6d': PARAMETERS, 'camera': CAMERA_PARAMETERS,
          'static_transform': STATIC_TRANSFORM_PARAMETERS}


def defaults():
    """{name: default} of every parameter."""
    return {name: spec.default for name, spec in PARAMETERS.items()}


def validate(name, value, table=None):
    """Why `value` is not acceptable for parameter `name`, or None when it is.

    Checks the type (as ROS does: no int for a double, no bool for an int), the range, the
    choices and frame ids. Object names are checked against the model by the pipeline, and
    read-only parameters by the node's callback, so neither is done here. table: the
    parameters of another node (camera.py); default the pose6d node's.
    """
    table = PARAMETERS if table is None else table
    spec = table.get(name)
    if spec is None:
        return f'unknown parameter {name!r}; expected one of {", ".join(table)}'
    if type(value) is not spec.type:  # bool is an int in Python, never in ROS
        hint = f' (write {float(value)!r})' if spec.type is float and type(value) is int else ''
        return (f'{name} must be of type {spec.type_name}; got {value!r} '
                f'({_TYPE_NAMES.get(type(value), type(value).__name__)}){hint}')
    if spec.range is not None and not (spec.sentinel is not None and value == spec.sentinel):
        low, high = spec.range
        if math.isnan(value) or not low <= value <= high:
            also = '' if spec.sentinel is None else f', or {spec.sentinel}'
            return f'{name} must be in [{low}, {high}]{also}; got {value!r}'
    if spec.choices is not None and value not in spec.choices:
        return f'{name} is {value!r}; expected {spec.constraints()}'
    if spec.required and not value:
        return f'{name} must not be empty'
    if spec.frame_id and value and not FRAME_ID.match(value):
        return f'{name} {value!r} is not a valid frame id; expected {FRAME_ID_RULE}'
    if spec.camera_name and not CAMERA_NAME.fullmatch(value):
        return f'{name} {value!r} is not a camera name; expected {CAMERA_NAME_RULE}, e.g. webcam'
    return None


def startup_reason(name, value, table=None):
    """The one line for a value given at start-up that the parameter refuses.

    ROS's own message for a declaration that fails is garbled ('... value: -1.0: min_score');
    this one names the parameter, what was given, what is expected, and where to fix it.
    """
    reason = validate(name, value, table)
    if reason is None:  # refused by ROS for a reason of its own (not expected)
        spec = (PARAMETERS if table is None else table)[name]
        reason = f'{name} {value!r} is refused; expected a {spec.type_name}' + (
            f' ({spec.constraints()})' if spec.constraints() else '')
    return (f'parameter {reason}; it was given at start-up (--ros-args -p {name}:=..., a '
            'launch argument or a parameters file): correct it there')


def read_only_reason(name):
    """The answer to `ros2 param set` on a parameter that is fixed at start-up."""
    return (f'{name} is fixed at start-up (read-only): set it in the parameters file, as a '
            f'launch argument or with --ros-args -p {name}:=VALUE, and restart the node')


def format_value(value):
    """A value as written in YAML and in the docs table: true, 0.5, auto, ''."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        return value if value else "''"
    return repr(value)


def markdown_table(table=None):
    """The parameter table of docs/ros.md (of the pose6d node, or of another `table`)."""
    table = PARAMETERS if table is None else table
    lines = ['| parameter | type | default | range / choices | changeable at run time | '
             'description |',
             '| --- | --- | --- | --- | --- | --- |']
    for name, spec in table.items():
        cells = [f'`{name}`', spec.type_name, f'`{format_value(spec.default)}`',
                 _cell(spec.constraints() or 'any'), 'no' if spec.read_only else 'yes',
                 _cell(spec.description)]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _cell(text):
    """Text safe in a GitHub table cell: | < > escaped."""
    for char in '|<>':
        text = text.replace(char, '\\' + char)
    return text


if __name__ == '__main__':
    import sys  # deferred: only this command line reads it

    print(markdown_table(TABLES[sys.argv[1] if len(sys.argv) > 1 else 'pose6d']))
