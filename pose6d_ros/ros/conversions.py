"""ROS messages <-> core types, through field names only.

Every function here takes a `MessageTypes` (a message factory) and touches messages only by
their field names, so the same code builds and parses rclpy's generated message classes (the
node, `RclpyTypes`) and the dataclasses of a rosbags typestore (the bag tool and the tests,
`RosbagsTypes`, Humble or Jazzy definitions). Nothing here imports rclpy at import time.

Conventions (README): poses are T_cam_obj in metres, quaternions in ROS order (x, y, z, w)
taken from `ObjectPose.quat_xyzw`; stamps and frame ids are copied from the incoming image.

Markers: the box of an instance is a LINE_LIST whose 24 points (12 edges, `BOX_EDGES`) are in
the *object* frame and whose marker pose is T_cam_obj. A change of output frame (the node's
`target_frame`) then only changes the pose, and the mesh marker shares the same pose.

vision_msgs is not part of the rosbags typestores: its definitions (4.1.x, identical in Humble
and Jazzy) ship in `pose6d_ros/ros/msg/` and are registered by `RosbagsTypes`.
"""

from __future__ import annotations

import array
import importlib
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from pose6d_ros.core.errors import CameraError
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.poses import BOX_EDGES, box_keypoints, Pose
from pose6d_ros.ros.errors import FrameError

MSG_DIR = Path(__file__).resolve().parent / 'msg'
VISION_MSGS = ('ObjectHypothesis', 'BoundingBox3D', 'ObjectHypothesisWithPose', 'Detection3D',
               'Detection3DArray')
DISTROS = ('humble', 'jazzy')

# Raw sensor_msgs/Image encodings read by `image_to_rgb`: encoding -> (channels, bytes/channel).
RAW_ENCODINGS = {
    'rgb8': (3, 1), 'bgr8': (3, 1), 'rgba8': (4, 1), 'bgra8': (4, 1),
    'mono8': (1, 1), '8UC1': (1, 1), 'mono16': (1, 2), '16UC1': (1, 2),
    'yuv422': (2, 1), 'uyvy': (2, 1), 'yuv422_yuy2': (2, 1), 'yuyv': (2, 1),
}
# Encodings `rgb_to_image` writes.
WRITE_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', '8UC1', 'mono16', '16UC1')
COMPRESSED_FORMATS = ('jpeg', 'png')

# Tableau-10 colours (r, g, b in [0, 1]) for markers, indexed by class id.
PALETTE = (
    (0.12, 0.47, 0.71), (1.00, 0.50, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16),
    (0.58, 0.40, 0.74), (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.50, 0.50, 0.50),
    (0.74, 0.74, 0.13), (0.09, 0.75, 0.81),
)


# --- message factories -----------------------------------------------------------------------


class MessageTypes:
    """Message classes by full name ('geometry_msgs/msg/PoseArray') and a way to build them."""

    def get(self, name):
        """The message class called `name`."""
        raise NotImplementedError

    def new(self, msgtype, /, **fields):
        """A message of type `msgtype`; fields not given take their ROS default values."""
        raise NotImplementedError

    def constant(self, name, constant):
        """A constant of a message type (e.g. Marker.LINE_LIST), in this back end's own type."""
        return getattr(self.get(name), constant)


class RosbagsTypes(MessageTypes):
    """Message classes of a rosbags typestore (Humble or Jazzy), vision_msgs registered."""

    def __init__(self, typestore, distro=None):
        self.typestore = typestore
        self.distro = distro
        if 'vision_msgs/msg/Detection3DArray' not in typestore.fielddefs:
            register_vision_msgs(typestore)

    @classmethod
    def for_distro(cls, distro='jazzy'):
        """A fresh typestore with the message definitions of ROS 2 `distro` (humble, jazzy)."""
        from rosbags.typesys import get_typestore, Stores  # deferred: the node never needs it

        if distro not in DISTROS:
            raise ValueError(f'unknown ROS 2 distribution {distro!r}; expected one of '
                             f'{", ".join(DISTROS)}')
        store = Stores.ROS2_HUMBLE if distro == 'humble' else Stores.ROS2_JAZZY
        return cls(get_typestore(store), distro)

    def get(self, name):
        try:
            return self.typestore.types[name]
        except KeyError:
            raise KeyError(f'message type {name!r} is not in this typestore') from None

    def new(self, msgtype, /, **fields):
        _constants, fielddefs = self.typestore.fielddefs[msgtype]
        values = {}
        for name, desc in fielddefs:
            if name in fields:
                values[name] = self._convert(desc, fields.pop(name), msgtype, name)
            else:
                values[name] = self._default(desc)
        if fields:
            raise TypeError(f'{msgtype} has no field(s) {", ".join(sorted(fields))}')
        return self.get(msgtype)(**values)

    def serialize(self, message):
        """CDR bytes of a message of this typestore."""
        return bytes(self.typestore.serialize_cdr(message, message.__msgtype__))

    def deserialize(self, data, name):
        """A message of type `name` from CDR bytes."""
        return self.typestore.deserialize_cdr(data, name)

    # Node types of rosbags' field descriptions: BASE 1, NAME 2, ARRAY 3, SEQUENCE 4.
    def _default(self, desc):
        kind, rest = int(desc[0]), desc[1]
        if kind == 1:
            return _base_default(rest[0])
        if kind == 2:
            return self.new(rest)
        sub, length = rest
        count = length if kind == 3 else 0
        if int(sub[0]) == 1 and sub[1][0] not in ('string', 'wstring'):
            return np.zeros(count, dtype=_DTYPES[sub[1][0]])
        return [self._default(sub) for _ in range(count)]

    def _convert(self, desc, value, msgtype, name):
        kind, rest = int(desc[0]), desc[1]
        if kind == 1:
            return _base_value(rest[0], value)
        if kind == 2:
            return value
        sub, length = rest
        if int(sub[0]) == 1 and sub[1][0] not in ('string', 'wstring'):
            dtype = _DTYPES[sub[1][0]]
            if isinstance(value, (bytes, bytearray, memoryview)):
                out = np.frombuffer(value, dtype=np.uint8).view(dtype)
            else:
                out = np.asarray(value, dtype=dtype).ravel()
            if kind == 3 and out.size != length:
                raise ValueError(f'{msgtype}.{name} takes {length} values; got {out.size}')
            return out
        return list(value)


class RclpyTypes(MessageTypes):
    """rclpy's generated message classes, imported on first use (needs a sourced ROS 2)."""

    def __init__(self):
        self._classes = {}

    def get(self, name):
        if name not in self._classes:
            package, kind, type_name = name.split('/')
            module = importlib.import_module(f'{package}.{kind}')
            self._classes[name] = getattr(module, type_name)
        return self._classes[name]

    def new(self, msgtype, /, **fields):
        cls = self.get(msgtype)
        kinds = cls.get_fields_and_field_types()  # e.g. {'data': 'sequence<uint8>'}
        return cls(**{key: _rclpy_value(value, kinds.get(key, ''))
                      for key, value in fields.items()})


def register_vision_msgs(typestore):
    """Register the vision_msgs definitions shipped in pose6d_ros/ros/msg with a typestore."""
    from rosbags.typesys import get_types_from_msg  # deferred: the node never needs it

    types = {}
    for type_name in VISION_MSGS:
        text = (MSG_DIR / f'{type_name}.msg').read_text()
        types.update(get_types_from_msg(text, f'vision_msgs/msg/{type_name}'))
    typestore.register(types)
    return typestore


_DTYPES = {
    'bool': np.bool_, 'byte': np.uint8, 'octet': np.uint8, 'char': np.uint8,
    'uint8': np.uint8, 'int8': np.int8, 'uint16': np.uint16, 'int16': np.int16,
    'uint32': np.uint32, 'int32': np.int32, 'uint64': np.uint64, 'int64': np.int64,
    'float32': np.float32, 'float64': np.float64,
}


def _base_default(type_name):
    if type_name in ('string', 'wstring'):
        return ''
    if type_name == 'bool':
        return False
    if type_name in ('float32', 'float64'):
        return 0.0
    return 0


def _base_value(type_name, value):
    if type_name in ('string', 'wstring'):
        return str(value)
    if type_name == 'bool':
        return bool(value)
    if type_name in ('float32', 'float64'):
        return float(value)
    if isinstance(value, (bytes, bytearray)):  # rclpy's `byte` constants are 1-byte bytes
        return int.from_bytes(value, 'little')
    return int(value)


def _rclpy_value(value, kind=''):
    """Values as rclpy's field setters accept them.

    No numpy scalars, uint8[] data as array('B') (the fast path of the setter), a `byte` field's
    constant left as bytes.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        if kind in ('byte', 'octet'):
            return bytes(value)
        return array.array('B', bytes(value))
    if isinstance(value, np.ndarray):
        if value.dtype == np.uint8:
            return array.array('B', value.tobytes())
        return value.tolist()
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_rclpy_value(v) for v in value]
    return value


# --- headers, stamps, poses ------------------------------------------------------------------


def stamp_to_ns(stamp):
    """Nanoseconds of a builtin_interfaces/Time."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def make_header(types, stamp_ns, frame_id):
    """A std_msgs/Header from nanoseconds and a frame id."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    stamp = types.new('builtin_interfaces/msg/Time', sec=sec, nanosec=nanosec)
    return types.new('std_msgs/msg/Header', stamp=stamp, frame_id=frame_id)


def copy_header(types, header, frame_id=None):
    """A copy of `header` (from either back end) in `types`, optionally with a new frame id."""
    return make_header(types, stamp_to_ns(header.stamp),
                       header.frame_id if frame_id is None else frame_id)


def _duration(types, seconds):
    sec = int(np.floor(seconds))
    nanosec = min(int(round((seconds - sec) * 1e9)), 999_999_999)
    return types.new('builtin_interfaces/msg/Duration', sec=sec, nanosec=nanosec)


def _point(types, xyz, name='geometry_msgs/msg/Point'):
    x, y, z = (float(v) for v in xyz)
    return types.new(name, x=x, y=y, z=z)


def _quaternion(types, quat_xyzw):
    x, y, z, w = (float(v) for v in quat_xyzw)
    return types.new('geometry_msgs/msg/Quaternion', x=x, y=y, z=z, w=w)


def _pose(types, position, quat_xyzw):
    return types.new('geometry_msgs/msg/Pose', position=_point(types, position),
                     orientation=_quaternion(types, quat_xyzw))


def object_pose_msg(types, obj):
    """geometry_msgs/Pose of T_cam_obj (the object frame's origin)."""
    return _pose(types, obj.t, obj.quat_xyzw)


def box_centre_pose_msg(types, obj):
    """geometry_msgs/Pose of the object's box centre: same rotation, centre moved by T_cam_obj."""
    centre = obj.pose.transform(np.asarray(obj.box_centre, dtype=np.float64)[None])[0]
    return _pose(types, centre, obj.quat_xyzw)


def instance_names(objects):
    """'<object>_<id>' per instance: its track id when tracked (stable over frames), else k.

    k counts the untracked instances of that object in the list (its rank in this frame).
    """
    counts, names = {}, []
    for obj in objects:
        if obj.track_id is not None:
            names.append(obj.instance_name)
            continue
        k = counts.get(obj.object_name, 0)
        counts[obj.object_name] = k + 1
        names.append(f'{obj.object_name}_{k}')
    return names


def _covariance(obj):
    """The 36 row-major values of PoseWithCovariance: the tracker's, else zeros (unknown)."""
    if obj.covariance is None:
        return np.zeros(36)
    return np.asarray(obj.covariance, dtype=np.float64).reshape(36)


# --- output messages -------------------------------------------------------------------------


def pose_array(types, objects, header):
    """geometry_msgs/PoseArray of T_cam_obj, one pose per instance, in the header's frame."""
    return types.new('geometry_msgs/msg/PoseArray', header=copy_header(types, header),
                     poses=[object_pose_msg(types, obj) for obj in objects])


def detection3d_array(types, objects, header):
    """vision_msgs/Detection3DArray: class id = object name, score, pose, box (metres).

    The hypothesis pose is T_cam_obj (the object frame's origin); the bounding box is centred
    on the box centre with the object's orientation, size = the object's box size. The
    detection id is the instance name '<object>_<k>' (the TF child frame without prefix),
    '<object>_<track id>' for a tracked instance, whose hypothesis pose also carries the
    tracker's covariance (x, y, z, rotation about x, y, z; zeros when untracked) and whose
    score is its quality.
    """
    detections = []
    for obj, name in zip(objects, instance_names(objects)):
        hypothesis = types.new('vision_msgs/msg/ObjectHypothesis', class_id=obj.object_name,
                               score=float(obj.score))
        pose = types.new('geometry_msgs/msg/PoseWithCovariance',
                         pose=object_pose_msg(types, obj), covariance=_covariance(obj))
        result = types.new('vision_msgs/msg/ObjectHypothesisWithPose', hypothesis=hypothesis,
                           pose=pose)
        bbox = types.new('vision_msgs/msg/BoundingBox3D', center=box_centre_pose_msg(types, obj),
                         size=_point(types, obj.box_size, 'geometry_msgs/msg/Vector3'))
        detections.append(types.new('vision_msgs/msg/Detection3D',
                                    header=copy_header(types, header), results=[result],
                                    bbox=bbox, id=name))
    return types.new('vision_msgs/msg/Detection3DArray', header=copy_header(types, header),
                     detections=detections)


def box_edge_points(obj):
    """The 24 end points (24, 3) of the 12 box edges in the object frame, edge by edge."""
    half = np.asarray(obj.box_size, dtype=np.float64) / 2.0
    centre = np.asarray(obj.box_centre, dtype=np.float64)
    corners = box_keypoints(centre - half, centre + half)[:8]
    return corners[np.asarray(BOX_EDGES).ravel()]


def marker_array(types, objects, header, lifetime_s=0.5, ns='pose6d', mesh_resources=None,
                 line_width=0.005, text_height=0.03, label_up=(0.0, -1.0, 0.0), delete_all=True):
    """visualization_msgs/MarkerArray: per instance a box LINE_LIST, a label, maybe a mesh.

    The array starts with a DELETEALL of the namespace (when `delete_all`; type LINE_LIST)
    so boxes of objects no longer seen vanish, and every marker also has `lifetime_s` (0:
    forever). Marker ids: 3 * i + (0 box, 1 label, 2 mesh), i = a tracked instance's track id
    (stable over frames), for the others their count in the list (after the largest track
    id); a tracked instance's label is '<object>_<track id> <score> <source>'. The box's points
    are in the object frame and the marker pose is T_cam_obj. The label sits above the box
    centre along `label_up` (a unit vector in the header's frame; the default is "up" in an
    optical camera frame, whose y points down). `mesh_resources` maps object names to (uri,
    scale) for MESH_RESOURCE markers.
    """
    Marker = 'visualization_msgs/msg/Marker'
    constant = types.constant
    lifetime = _duration(types, lifetime_s)
    markers = []
    if delete_all:
        # RViz ignores a DELETEALL's type (it clears the namespace), but `ros2 topic echo`,
        # bag viewers and Foxglove show it: the message default, ARROW, reads as an arrow that
        # is not there. LINE_LIST is the type of the boxes it clears.
        markers.append(types.new(Marker, header=copy_header(types, header), ns=ns, id=0,
                                 type=constant(Marker, 'LINE_LIST'),
                                 action=constant(Marker, 'DELETEALL')))
    label_up = np.asarray(label_up, dtype=np.float64)
    # Untracked instances count on after the largest track id, so that ids never collide.
    next_free = 1 + max((int(o.track_id) for o in objects if o.track_id is not None),
                        default=-1)
    for obj in objects:
        if obj.track_id is None:
            i, next_free = next_free, next_free + 1
        else:
            i = int(obj.track_id)
        r, g, b = PALETTE[int(obj.class_id) % len(PALETTE)]
        color = types.new('std_msgs/msg/ColorRGBA', r=r, g=g, b=b, a=1.0)
        pose = object_pose_msg(types, obj)
        common = {'ns': ns, 'action': constant(Marker, 'ADD'), 'lifetime': lifetime}
        markers.append(types.new(
            Marker, header=copy_header(types, header), id=3 * i,
            type=constant(Marker, 'LINE_LIST'), pose=pose,
            scale=_point(types, (line_width, 0.0, 0.0), 'geometry_msgs/msg/Vector3'),
            color=color, points=[_point(types, p) for p in box_edge_points(obj)], **common))
        size = float(np.max(obj.box_size)) if np.size(obj.box_size) else 0.0
        centre = obj.pose.transform(np.asarray(obj.box_centre, dtype=np.float64)[None])[0]
        markers.append(types.new(
            Marker, header=copy_header(types, header), id=3 * i + 1,
            type=constant(Marker, 'TEXT_VIEW_FACING'),
            pose=_pose(types, centre + label_up * (0.6 * size + text_height),
                       (0.0, 0.0, 0.0, 1.0)),
            scale=_point(types, (0.0, 0.0, text_height), 'geometry_msgs/msg/Vector3'),
            color=color, text=obj.label(), **common))
        if mesh_resources and obj.object_name in mesh_resources:
            uri, scale = mesh_resources[obj.object_name]
            mesh_color = types.new('std_msgs/msg/ColorRGBA', r=r, g=g, b=b, a=0.6)
            markers.append(types.new(
                Marker, header=copy_header(types, header), id=3 * i + 2,
                type=constant(Marker, 'MESH_RESOURCE'), pose=pose,
                scale=_point(types, (scale, scale, scale), 'geometry_msgs/msg/Vector3'),
                color=mesh_color, mesh_resource=uri, **common))
    return types.new('visualization_msgs/msg/MarkerArray', markers=markers)


def mesh_resources_from_objects(object_set):
    """{name: (file:// uri, scale)} for the objects of an ObjectSet that have a mesh file."""
    resources = {}
    for obj in object_set:
        if obj.mesh_path is not None:
            resources[obj.name] = (Path(obj.mesh_path).resolve().as_uri(), float(obj.scale))
    return resources


def transforms(types, objects, header, prefix=''):
    """geometry_msgs/TransformStamped T_cam_obj per instance, child '<prefix><object>_<k>'."""
    out = []
    for obj, name in zip(objects, instance_names(objects)):
        transform = types.new(
            'geometry_msgs/msg/Transform',
            translation=_point(types, obj.t, 'geometry_msgs/msg/Vector3'),
            rotation=_quaternion(types, obj.quat_xyzw))
        out.append(types.new('geometry_msgs/msg/TransformStamped',
                             header=copy_header(types, header),
                             child_frame_id=f'{prefix}{name}', transform=transform))
    return out


def pose_from_transform(transform_stamped):
    """Pose (R, t) of a geometry_msgs/TransformStamped or Transform (e.g. from a tf2 lookup)."""
    transform = getattr(transform_stamped, 'transform', transform_stamped)
    q, t = transform.rotation, transform.translation
    return Pose.from_quat_xyzw((q.x, q.y, q.z, q.w), (t.x, t.y, t.z))


def tf_message(types, transform_list):
    """tf2_msgs/TFMessage holding the given transforms (what /tf carries)."""
    return types.new('tf2_msgs/msg/TFMessage', transforms=list(transform_list))


def diagnostics(types, header, name, hardware_id, rate_hz, latency_s, level='OK', message='',
                values=None):
    """diagnostic_msgs/DiagnosticArray with one status: rate, latency and extra key/values.

    `level` is a DiagnosticStatus constant name: OK, WARN, ERROR or STALE.
    """
    Status = 'diagnostic_msgs/msg/DiagnosticStatus'
    pairs = {'rate (Hz)': f'{rate_hz:.2f}', 'latency (ms)': f'{latency_s * 1e3:.1f}'}
    pairs.update({str(k): str(v) for k, v in (values or {}).items()})
    status = types.new(
        Status, level=types.constant(Status, level), name=name, hardware_id=hardware_id,
        message=message or level.lower(),
        values=[types.new('diagnostic_msgs/msg/KeyValue', key=k, value=v)
                for k, v in pairs.items()])
    return types.new('diagnostic_msgs/msg/DiagnosticArray', header=copy_header(types, header),
                     status=[status])


def static_transform(types, header, child_frame, xyz, rpy):
    """geometry_msgs/TransformStamped of a child frame placed in the header's frame.

    xyz: position (m); rpy: roll about x, then pitch about y, then yaw about z, all fixed axes
    of the parent (URDF rpy, and static_transform_publisher's --roll --pitch --yaw).
    """
    quat_xyzw = Rotation.from_euler('xyz', [float(a) for a in rpy]).as_quat()
    transform = types.new('geometry_msgs/msg/Transform',
                          translation=_point(types, xyz, 'geometry_msgs/msg/Vector3'),
                          rotation=_quaternion(types, quat_xyzw))
    return types.new('geometry_msgs/msg/TransformStamped', header=copy_header(types, header),
                     child_frame_id=child_frame, transform=transform)


# --- camera_info -----------------------------------------------------------------------------


def camera_info(types, camera, header):
    """sensor_msgs/CameraInfo of a CameraModel: K, D, R = I, P (or [K | 0]), size, model."""
    D = np.asarray(camera.D, dtype=np.float64)
    model = camera.distortion_model
    if not D.size or model == 'none':  # as camera_calibration writes an undistorted camera
        D, model = np.zeros(5), 'plumb_bob'
    P = camera.P if camera.P is not None else np.hstack([camera.K, np.zeros((3, 1))])
    return types.new('sensor_msgs/msg/CameraInfo', header=copy_header(types, header),
                     height=int(camera.height), width=int(camera.width),
                     distortion_model=model, d=D.tolist(),
                     k=np.asarray(camera.K, dtype=np.float64).ravel().tolist(),
                     r=np.eye(3).ravel().tolist(),
                     p=np.asarray(P, dtype=np.float64).ravel().tolist())


def camera_from_info(msg):
    """A CameraModel from a sensor_msgs/CameraInfo; CameraError names the bad value."""
    p = np.asarray(msg.p, dtype=np.float64)
    if not np.isfinite(p).all():
        raise CameraError('camera_info P contains NaN or infinite values; expected finite '
                          'numbers')
    try:
        return CameraModel.from_camera_info(
            np.asarray(msg.k, dtype=np.float64), np.asarray(msg.d, dtype=np.float64),
            int(msg.width), int(msg.height), msg.distortion_model or None, p)
    except CameraError as exc:
        raise CameraError(f'camera_info: {exc}') from None


# --- images ----------------------------------------------------------------------------------


def is_compressed(msg):
    """True for a sensor_msgs/CompressedImage, False for a sensor_msgs/Image."""
    return hasattr(msg, 'format') and not hasattr(msg, 'encoding')


def image_to_rgb(msg):
    """An (H, W, 3) uint8 RGB array (a copy) from a sensor_msgs/Image or CompressedImage.

    Raw encodings: see RAW_ENCODINGS; `step` (row padding) and `is_bigendian` are honoured;
    16-bit images are scaled to 8 bit (value / 257). Compressed: JPEG or PNG. Raises
    FrameError for an unsupported encoding, truncated or empty data, undecodable data.
    """
    if is_compressed(msg):
        return _compressed_to_rgb(msg)
    width, height, encoding = int(msg.width), int(msg.height), str(msg.encoding)
    if width <= 0 or height <= 0:
        raise FrameError(f'empty image: {width}x{height} pixels; expected a positive width '
                         'and height', 'empty')
    if encoding not in RAW_ENCODINGS:
        raise FrameError(f'unsupported image encoding {encoding!r}; supported: '
                         f'{", ".join(RAW_ENCODINGS)} (or a compressed JPEG/PNG image)',
                         'encoding')
    channels, depth = RAW_ENCODINGS[encoding]
    row_bytes = width * channels * depth
    step = int(msg.step)
    if step < row_bytes:
        raise FrameError(f'image step {step} is smaller than a {encoding} row of {width} '
                         f'pixels ({row_bytes} bytes)', 'truncated')
    data = np.frombuffer(msg.data, dtype=np.uint8)
    expected = step * height
    if data.size < expected:
        raise FrameError(f'truncated image data: {width}x{height} {encoding} with step {step} '
                         f'needs {expected} bytes; got {data.size}', 'truncated')
    rows = data[:expected].reshape(height, step)[:, :row_bytes]
    if depth == 2:
        dtype = np.dtype('>u2' if msg.is_bigendian else '<u2')
        gray16 = np.ascontiguousarray(rows).view(dtype).reshape(height, width)
        gray = ((gray16.astype(np.uint32) + 128) // 257).astype(np.uint8)
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    pixels = rows.reshape(height, width, channels)
    if encoding == 'rgb8':
        return pixels.copy()
    code = {
        'bgr8': cv2.COLOR_BGR2RGB, 'rgba8': cv2.COLOR_RGBA2RGB, 'bgra8': cv2.COLOR_BGRA2RGB,
        'mono8': cv2.COLOR_GRAY2RGB, '8UC1': cv2.COLOR_GRAY2RGB,
        'yuv422': cv2.COLOR_YUV2RGB_UYVY, 'uyvy': cv2.COLOR_YUV2RGB_UYVY,
        'yuv422_yuy2': cv2.COLOR_YUV2RGB_YUY2, 'yuyv': cv2.COLOR_YUV2RGB_YUY2,
    }[encoding]
    if channels == 2 and width % 2:
        raise FrameError(f'{encoding} image width must be even; got {width}', 'encoding')
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)


def _compressed_to_rgb(msg):
    fmt = str(msg.format)
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if 'compresseddepth' in fmt.lower():
        raise FrameError(f'unsupported compressed image format {fmt!r} (a depth image); '
                         f'supported: {", ".join(COMPRESSED_FORMATS)}', 'encoding')
    if data.size == 0:
        raise FrameError(f'empty compressed image (format {fmt!r}, 0 bytes)', 'empty')
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise FrameError(f'cannot decode compressed image (format {fmt!r}, {data.size} bytes); '
                         f'expected {" or ".join(COMPRESSED_FORMATS)} data', 'decode')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_image(types, rgb, header, encoding='rgb8', row_padding=0, bigendian=False):
    """sensor_msgs/Image from an (H, W, 3) uint8 RGB array, in `encoding` (WRITE_ENCODINGS).

    `row_padding` bytes are appended to every row (step = row bytes + padding); 16-bit
    encodings store value * 257, big-endian when `bigendian`.
    """
    rgb = _checked_rgb(rgb)
    if encoding not in WRITE_ENCODINGS:
        raise FrameError(f'cannot write image encoding {encoding!r}; supported: '
                         f'{", ".join(WRITE_ENCODINGS)}', 'encoding')
    height, width = rgb.shape[:2]
    if encoding in ('rgb8',):
        pixels = rgb
    elif encoding in ('mono8', '8UC1', 'mono16', '16UC1'):
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if encoding in ('mono16', '16UC1'):
            pixels = (pixels.astype(np.uint16) * 257).astype('>u2' if bigendian else '<u2')
    else:
        code = {'bgr8': cv2.COLOR_RGB2BGR, 'rgba8': cv2.COLOR_RGB2RGBA,
                'bgra8': cv2.COLOR_RGB2BGRA}[encoding]
        pixels = cv2.cvtColor(rgb, code)
    rows = np.ascontiguousarray(pixels).view(np.uint8).reshape(height, -1)
    if row_padding:
        rows = np.concatenate([rows, np.zeros((height, int(row_padding)), np.uint8)], axis=1)
    return types.new('sensor_msgs/msg/Image', header=copy_header(types, header), height=height,
                     width=width, encoding=encoding, is_bigendian=int(bool(bigendian)),
                     step=rows.shape[1], data=rows.tobytes())


def rgb_to_compressed(types, rgb, header, fmt='jpeg', quality=90):
    """sensor_msgs/CompressedImage (JPEG or PNG) from an (H, W, 3) uint8 RGB array."""
    rgb = _checked_rgb(rgb)
    if fmt not in COMPRESSED_FORMATS:
        raise FrameError(f'cannot write compressed format {fmt!r}; supported: '
                         f'{", ".join(COMPRESSED_FORMATS)}', 'encoding')
    ext, params = ('.jpg', [cv2.IMWRITE_JPEG_QUALITY, int(quality)]) if fmt == 'jpeg' else (
        '.png', [])
    ok, buffer = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise FrameError(f'OpenCV could not encode the image as {fmt}', 'encoding')
    # image_transport's compressed plugin names its format this way.
    return types.new('sensor_msgs/msg/CompressedImage', header=copy_header(types, header),
                     format=f'rgb8; {fmt} compressed bgr8', data=buffer.tobytes())


def _checked_rgb(rgb):
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f'expected an (H, W, 3) uint8 RGB image; got {rgb.shape} {rgb.dtype}')
    return np.ascontiguousarray(rgb)
