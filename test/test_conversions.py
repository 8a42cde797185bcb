"""Message building and parsing without ROS.

The Humble and Jazzy definitions that rosbags ships, every message serialised to CDR and read
back; image decoding for every encoding; bad input.
"""

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pose6d_ros.core.errors import CameraError
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.poses import BOX_EDGES, Pose
from pose6d_ros.core.geometry.results import ObjectPose
from pose6d_ros.ros import conversions
from pose6d_ros.ros.conversions import RosbagsTypes
from pose6d_ros.ros.errors import FrameError

STAMP_NS = 1_700_000_123_456_789_012  # 1700000123.456789012 s
FRAME = 'camera_optical_frame'
SQRT_HALF = np.sqrt(0.5)


@pytest.fixture(scope='module', params=['humble', 'jazzy'])
def types(request):
    return RosbagsTypes.for_distro(request.param)


def round_trip(types, msg):
    """Serialise to CDR and back: what a bag or the wire would carry."""
    return types.deserialize(types.serialize(msg), msg.__msgtype__)


def header(types, stamp_ns=STAMP_NS, frame_id=FRAME):
    return conversions.make_header(types, stamp_ns, frame_id)


def object_pose(name='mug', class_id=0, score=0.9, R=None, t=(0.1, -0.2, 1.5),
                box_size=(0.08, 0.1, 0.12), box_centre=(0.0, 0.0, 0.06), reprojection_error=1.0):
    return ObjectPose(
        object_name=name, class_id=class_id, object_id=class_id + 1, score=score,
        keypoints=np.zeros((9, 2)), box=np.array([10.0, 20.0, 50.0, 80.0]),
        R=np.eye(3) if R is None else np.asarray(R), t=np.asarray(t, dtype=float),
        reprojection_error=reprojection_error, inliers=9, box_size=np.asarray(box_size),
        box_centre=np.asarray(box_centre, dtype=float))


def rot_z(degrees):
    return Rotation.from_euler('z', degrees, degrees=True).as_matrix()


def check_header(msg_header, stamp_ns=STAMP_NS, frame_id=FRAME):
    assert msg_header.frame_id == frame_id
    assert conversions.stamp_to_ns(msg_header.stamp) == stamp_ns


# --- the message factory ---------------------------------------------------------------------


def test_vision_msgs_are_registered_with_the_ros2_definitions(types):
    fields = {name: dict(types.typestore.fielddefs[f'vision_msgs/msg/{name}'][1])
              for name in conversions.VISION_MSGS}
    assert list(fields['ObjectHypothesis']) == ['class_id', 'score']
    assert fields['ObjectHypothesis']['class_id'][1][0] == 'string'
    assert fields['ObjectHypothesis']['score'][1][0] == 'float64'
    assert list(fields['ObjectHypothesisWithPose']) == ['hypothesis', 'pose']
    assert list(fields['BoundingBox3D']) == ['center', 'size']
    assert list(fields['Detection3D']) == ['header', 'results', 'bbox', 'id']
    assert list(fields['Detection3DArray']) == ['header', 'detections']


def test_new_fills_defaults_and_rejects_unknown_fields(types):
    info = types.new('sensor_msgs/msg/CameraInfo', width=640)
    assert info.width == 640 and info.height == 0 and info.k.shape == (9,)
    assert info.d.size == 0 and info.header.frame_id == ''
    with pytest.raises(TypeError, match='no field'):
        types.new('geometry_msgs/msg/Point', x=1.0, w=2.0)
    with pytest.raises(ValueError, match='takes 9 values; got 4'):
        types.new('sensor_msgs/msg/CameraInfo', k=[1, 2, 3, 4])
    with pytest.raises(ValueError, match='unknown ROS 2 distribution'):
        RosbagsTypes.for_distro('kinetic')


def test_copy_header_across_typestores():
    humble, jazzy = RosbagsTypes.for_distro('humble'), RosbagsTypes.for_distro('jazzy')
    copied = conversions.copy_header(jazzy, header(humble), frame_id='other')
    check_header(round_trip(jazzy, copied), frame_id='other')


# --- output messages -------------------------------------------------------------------------


def test_pose_array_quaternion_order_units_and_header(types):
    poses = [object_pose(R=rot_z(90), t=(0.1, -0.2, 1.5)), object_pose('box', 1, 0.7)]
    msg = round_trip(types, conversions.pose_array(types, poses, header(types)))
    check_header(msg.header)
    assert len(msg.poses) == 2
    q = msg.poses[0].orientation
    np.testing.assert_allclose([q.x, q.y, q.z, q.w], [0.0, 0.0, SQRT_HALF, SQRT_HALF],
                               atol=1e-12)
    p = msg.poses[0].position
    np.testing.assert_allclose([p.x, p.y, p.z], [0.1, -0.2, 1.5])  # metres, unchanged
    q = msg.poses[1].orientation
    assert (q.x, q.y, q.z, q.w) == (0.0, 0.0, 0.0, 1.0)


def test_detection3d_array_class_score_pose_and_box(types):
    R = rot_z(90)
    poses = [object_pose('mug', 0, 0.9, R=R, t=(0.1, 0.2, 1.0), box_size=(0.08, 0.1, 0.12),
                         box_centre=(0.01, 0.0, 0.06)),
             object_pose('mug', 0, 0.8), object_pose('box', 1, 0.6, box_size=(0.3, 0.2, 0.1))]
    msg = round_trip(types, conversions.detection3d_array(types, poses, header(types)))
    check_header(msg.header)
    assert [d.id for d in msg.detections] == ['mug_0', 'mug_1', 'box_0']
    first = msg.detections[0]
    check_header(first.header)
    assert len(first.results) == 1
    hypothesis = first.results[0].hypothesis
    assert hypothesis.class_id == 'mug' and hypothesis.score == pytest.approx(0.9)
    pose = first.results[0].pose.pose
    assert (pose.position.x, pose.position.y, pose.position.z) == pytest.approx((0.1, 0.2, 1.0))
    q = pose.orientation
    np.testing.assert_allclose([q.x, q.y, q.z, q.w], [0, 0, SQRT_HALF, SQRT_HALF], atol=1e-12)
    # The box is centred on the box centre, moved by T_cam_obj: R @ (0.01, 0, 0.06) + t.
    centre = first.bbox.center
    np.testing.assert_allclose([centre.position.x, centre.position.y, centre.position.z],
                               R @ [0.01, 0.0, 0.06] + [0.1, 0.2, 1.0], atol=1e-12)
    assert centre.orientation.z == pytest.approx(SQRT_HALF)
    size = first.bbox.size
    assert (size.x, size.y, size.z) == pytest.approx((0.08, 0.1, 0.12))  # metres
    assert msg.detections[2].results[0].hypothesis.class_id == 'box'
    size = msg.detections[2].bbox.size
    assert (size.x, size.y, size.z) == pytest.approx((0.3, 0.2, 0.1))


def test_marker_array_boxes_labels_and_delete_all(types):
    Marker = types.get('visualization_msgs/msg/Marker')
    obj = object_pose('mug', 2, 0.87, R=rot_z(30), t=(0.1, 0.0, 0.8))
    msg = round_trip(types, conversions.marker_array(types, [obj, object_pose('box', 1)],
                                                     header(types), lifetime_s=0.25,
                                                     ns='pose6d'))
    markers = msg.markers
    assert markers[0].action == Marker.DELETEALL  # stale boxes vanish
    assert markers[0].type == Marker.LINE_LIST    # what it clears, not ARROW (the default)
    assert [m.type for m in markers[1:]] == [Marker.LINE_LIST, Marker.TEXT_VIEW_FACING] * 2
    assert [m.id for m in markers[1:]] == [0, 1, 3, 4]
    box, label = markers[1], markers[2]
    for marker in markers:
        check_header(marker.header)
        assert marker.ns == 'pose6d'
    assert box.action == Marker.ADD
    assert (box.lifetime.sec, box.lifetime.nanosec) == (0, 250_000_000)
    assert len(box.points) == 24 == 2 * len(BOX_EDGES)
    # Points are in the object frame; the marker pose T_cam_obj puts them on the object.
    q, p = box.pose.orientation, box.pose.position
    T_cam_obj = Pose.from_quat_xyzw([q.x, q.y, q.z, q.w], [p.x, p.y, p.z])
    points_cam = T_cam_obj.transform([[pt.x, pt.y, pt.z] for pt in box.points])
    corners = obj.box_corners_camera()
    np.testing.assert_allclose(points_cam, corners[np.asarray(BOX_EDGES).ravel()], atol=1e-12)
    assert box.scale.x > 0 and box.color.a == 1.0
    assert label.text == 'mug 0.87'
    assert label.pose.position.y < obj.t[1]  # above the object in an optical frame (y down)


def test_marker_array_mesh_resource_and_empty_frame(types):
    Marker = types.get('visualization_msgs/msg/Marker')
    obj = object_pose('mug')
    msg = round_trip(types, conversions.marker_array(
        types, [obj, object_pose('box', 1)], header(types),
        mesh_resources={'mug': ('file:///meshes/mug.ply', 0.001)}))
    meshes = [m for m in msg.markers if m.type == Marker.MESH_RESOURCE]
    assert len(meshes) == 1
    assert meshes[0].mesh_resource == 'file:///meshes/mug.ply'
    assert meshes[0].scale.x == pytest.approx(0.001) and meshes[0].id == 2
    empty = round_trip(types, conversions.marker_array(types, [], header(types)))
    assert [m.action for m in empty.markers] == [Marker.DELETEALL]


def test_transforms_child_frames_and_tf_message(types):
    poses = [object_pose('mug', R=rot_z(90), t=(0.1, 0.2, 0.3)), object_pose('box', 1),
             object_pose('mug', t=(0.0, 0.0, 2.0))]
    transforms = conversions.transforms(types, poses, header(types), prefix='robot/')
    msg = round_trip(types, conversions.tf_message(types, transforms))
    assert [t.child_frame_id for t in msg.transforms] == ['robot/mug_0', 'robot/box_0',
                                                          'robot/mug_1']
    first = msg.transforms[0]
    check_header(first.header)
    tr, rot = first.transform.translation, first.transform.rotation
    assert (tr.x, tr.y, tr.z) == pytest.approx((0.1, 0.2, 0.3))
    np.testing.assert_allclose([rot.x, rot.y, rot.z, rot.w], [0, 0, SQRT_HALF, SQRT_HALF],
                               atol=1e-12)
    back = conversions.pose_from_transform(first)
    np.testing.assert_allclose(back.R, rot_z(90), atol=1e-12)
    np.testing.assert_allclose(back.t, [0.1, 0.2, 0.3])


def test_tracked_instances_are_named_by_track_id_everywhere(types):
    from dataclasses import replace

    Marker = types.get('visualization_msgs/msg/Marker')
    covariance = np.diag([1e-6, 2e-6, 9e-6, 1e-3, 2e-3, 3e-3])
    covariance[0, 2] = covariance[2, 0] = 5e-7
    tracked = replace(object_pose('mug', score=0.8, t=(0.1, 0.0, 0.8)), track_id=7,
                      source='tracked', covariance=covariance)
    also = replace(object_pose('mug', score=0.95), track_id=3, source='network',
                   covariance=covariance)
    untracked = object_pose('box', 1)
    poses = [tracked, also, untracked]
    assert conversions.instance_names(poses) == ['mug_7', 'mug_3', 'box_0']
    transforms = conversions.transforms(types, poses, header(types), 'cam1/')
    frames = [t.child_frame_id for t in transforms]
    assert frames == ['cam1/mug_7', 'cam1/mug_3', 'cam1/box_0']
    detections = round_trip(types, conversions.detection3d_array(types, poses,
                                                                 header(types))).detections
    assert [d.id for d in detections] == ['mug_7', 'mug_3', 'box_0']
    assert detections[0].results[0].hypothesis.class_id == 'mug'
    assert detections[0].results[0].hypothesis.score == pytest.approx(0.8)
    np.testing.assert_allclose(np.asarray(detections[0].results[0].pose.covariance),
                               covariance.ravel())
    assert not np.asarray(detections[2].results[0].pose.covariance).any()  # unknown: zeros
    markers = round_trip(types, conversions.marker_array(types, poses, header(types))).markers
    by_id = {m.id: m for m in markers[1:]}
    assert sorted(by_id) == [9, 10, 21, 22, 24, 25]  # 3 * track id (+1 label); the box next
    assert by_id[22].type == Marker.TEXT_VIEW_FACING
    assert by_id[22].text == 'mug_7 0.80 tracked' and by_id[10].text == 'mug_3 0.95 network'
    assert by_id[25].text == 'box 0.90'


def test_diagnostics(types):
    Status = types.get('diagnostic_msgs/msg/DiagnosticStatus')
    msg = round_trip(types, conversions.diagnostics(
        types, header(types), name='pose6d_node: pose estimation', hardware_id='cuda',
        rate_hz=29.97, latency_s=0.0412, level='WARN', message='2 bad frames',
        values={'dropped frames': 3}))
    check_header(msg.header)
    status = msg.status[0]
    assert status.level == Status.WARN and status.hardware_id == 'cuda'
    assert status.message == '2 bad frames'
    values = {kv.key: kv.value for kv in status.values}
    assert values == {'rate (Hz)': '29.97', 'latency (ms)': '41.2', 'dropped frames': '3'}


# --- camera_info -----------------------------------------------------------------------------


def camera_info(types, k=(500.0, 0, 320, 0, 500, 240, 0, 0, 1), d=(0.1, -0.05, 0, 0, 0),
                width=640, height=480, model='plumb_bob', p=None):
    p = (500.0, 0, 320, 0, 0, 500, 240, 0, 0, 0, 1, 0) if p is None else p
    return types.new('sensor_msgs/msg/CameraInfo', header=header(types), width=width,
                     height=height, distortion_model=model, d=list(d), k=list(k), p=list(p))


def test_camera_from_info(types):
    camera = conversions.camera_from_info(round_trip(types, camera_info(types)))
    assert isinstance(camera, CameraModel)
    assert camera.size == (640, 480) and camera.fx == 500.0 and camera.cy == 240.0
    np.testing.assert_allclose(camera.D, [0.1, -0.05, 0, 0, 0])


@pytest.mark.parametrize('kwargs, message', [
    ({'k': [0.0] * 9}, 'camera_info: camera K is all zeros'),
    ({'k': (np.nan, 0, 320, 0, 500, 240, 0, 0, 1)}, 'K contains NaN'),
    ({'d': (np.nan, 0, 0, 0, 0)}, 'D contains NaN'),
    ({'p': [np.nan] * 12}, 'P contains NaN'),
    ({'width': 0}, 'width and height must be positive'),
    ({'model': 'equidistant', 'd': (0.1, 0.0, 0.0, 0.0)}, "'equidistant' is not supported"),
])
def test_camera_from_info_bad_values(types, kwargs, message):
    with pytest.raises(CameraError, match=message):
        conversions.camera_from_info(camera_info(types, **kwargs))


# --- images ----------------------------------------------------------------------------------


def sample_image(height=6, width=10):
    """A small RGB image with distinct values everywhere."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def gray3(rgb):
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return np.stack([gray] * 3, axis=-1)


@pytest.mark.parametrize('encoding', conversions.WRITE_ENCODINGS)
@pytest.mark.parametrize('row_padding', [0, 7])
def test_raw_image_round_trip_every_encoding_with_row_padding(types, encoding, row_padding):
    rgb = sample_image()
    msg = round_trip(types, conversions.rgb_to_image(types, rgb, header(types), encoding,
                                                     row_padding=row_padding))
    check_header(msg.header)
    assert msg.encoding == encoding and (msg.width, msg.height) == (10, 6)
    channels, depth = conversions.RAW_ENCODINGS[encoding]
    assert msg.step == 10 * channels * depth + row_padding
    back = conversions.image_to_rgb(msg)
    assert back.shape == (6, 10, 3) and back.dtype == np.uint8 and back.flags.writeable
    expected = rgb if channels >= 3 else gray3(rgb)
    np.testing.assert_array_equal(back, expected)


@pytest.mark.parametrize('bigendian', [False, True])
def test_mono16_honours_endianness_and_scales_to_8_bit(types, bigendian):
    values = np.array([[0, 257, 65535, 1000]], dtype=np.uint16)
    data = values.astype('>u2' if bigendian else '<u2').tobytes()
    msg = types.new('sensor_msgs/msg/Image', header=header(types), width=4, height=1,
                    encoding='16UC1', is_bigendian=int(bigendian), step=8, data=data)
    back = conversions.image_to_rgb(round_trip(types, msg))
    np.testing.assert_array_equal(back[0, :, 0], [0, 1, 255, 4])
    np.testing.assert_array_equal(back[..., 0], back[..., 2])


def test_image_data_is_not_aliased(types):
    msg = conversions.rgb_to_image(types, sample_image(), header(types))
    back = conversions.image_to_rgb(msg)
    back[:] = 0
    assert conversions.image_to_rgb(msg).any()


@pytest.mark.parametrize('encoding', ['yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv'])
def test_yuv422_encodings(types, encoding):
    if not hasattr(cv2, 'COLOR_RGB2YUV_UYVY'):
        pytest.skip('this OpenCV cannot encode UYVY')
    rgb = np.full((4, 8, 3), (200, 120, 40), np.uint8)
    uyvy = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_UYVY)  # (4, 8, 2): U Y V Y ...
    data = uyvy.reshape(4, 16)
    if encoding in ('yuv422_yuy2', 'yuyv'):  # Y U Y V: swap the bytes of every pair
        data = data.reshape(4, 8, 2)[:, :, ::-1].reshape(4, 16)
    msg = types.new('sensor_msgs/msg/Image', header=header(types), width=8, height=4,
                    encoding=encoding, step=16, data=np.ascontiguousarray(data).tobytes())
    back = conversions.image_to_rgb(round_trip(types, msg))
    assert np.abs(back.astype(int) - rgb).max() <= 3


@pytest.mark.parametrize('fmt', ['png', 'jpeg'])
def test_compressed_round_trip(types, fmt):
    rgb = np.zeros((32, 48, 3), np.uint8)
    cv2.rectangle(rgb, (8, 8), (30, 24), (250, 30, 10), cv2.FILLED)
    msg = round_trip(types, conversions.rgb_to_compressed(types, rgb, header(types), fmt))
    check_header(msg.header)
    assert fmt in msg.format
    back = conversions.image_to_rgb(msg)
    assert back.shape == rgb.shape
    if fmt == 'png':
        np.testing.assert_array_equal(back, rgb)
    else:
        assert np.abs(back.astype(int) - rgb).mean() < 4
        assert back[16, 20].astype(int).tolist() == pytest.approx([250, 30, 10], abs=20)


def test_compressed_from_cv2_imencode_grayscale(types):
    gray = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (8, 1))
    ok, png = cv2.imencode('.png', gray)
    msg = types.new('sensor_msgs/msg/CompressedImage', header=header(types), format='png',
                    data=png.tobytes())
    back = conversions.image_to_rgb(msg)
    np.testing.assert_array_equal(back[..., 1], gray)


def test_decoding_agrees_with_rosbags_image(types):
    image = pytest.importorskip('rosbags.image', reason='rosbags-image is not installed')
    rgb = sample_image()
    for encoding in ('bgr8', 'rgba8', 'mono8'):
        # No row padding: rosbags-image 0.10 reads rows as if step == width * pixel size.
        msg = round_trip(types, conversions.rgb_to_image(types, rgb, header(types), encoding))
        theirs = image.message_to_cvimage(msg, 'rgb8')
        np.testing.assert_array_equal(conversions.image_to_rgb(msg), theirs)


# --- bad images ------------------------------------------------------------------------------


def raw_msg(types, encoding='rgb8', width=4, height=3, step=None, data=None):
    channels, depth = conversions.RAW_ENCODINGS.get(encoding, (3, 1))
    step = width * channels * depth if step is None else step
    data = bytes(step * height) if data is None else data
    return types.new('sensor_msgs/msg/Image', header=header(types), width=width, height=height,
                     encoding=encoding, step=step, data=data)


def test_unsupported_encoding_is_named_with_the_supported_ones(types):
    with pytest.raises(FrameError, match=r"unsupported image encoding '32FC1'; supported: "
                                         r'rgb8, bgr8.*mono16') as info:
        conversions.image_to_rgb(raw_msg(types, '32FC1'))
    assert info.value.reason == 'encoding'


def test_truncated_data_says_expected_and_got_bytes(types):
    msg = raw_msg(types, 'bgr8', width=4, height=3, data=bytes(20))
    with pytest.raises(FrameError, match='needs 36 bytes; got 20') as info:
        conversions.image_to_rgb(msg)
    assert info.value.reason == 'truncated'
    with pytest.raises(FrameError, match='step 5 is smaller than a bgr8 row of 4 pixels'):
        conversions.image_to_rgb(raw_msg(types, 'bgr8', step=5))


@pytest.mark.parametrize('width, height', [(0, 480), (640, 0), (0, 0)])
def test_empty_image(types, width, height):
    with pytest.raises(FrameError, match=f'empty image: {width}x{height}') as info:
        conversions.image_to_rgb(raw_msg(types, width=width, height=height, data=b''))
    assert info.value.reason == 'empty'


def test_odd_width_yuv422(types):
    with pytest.raises(FrameError, match='width must be even'):
        conversions.image_to_rgb(raw_msg(types, 'yuv422', width=3))


@pytest.mark.parametrize('fmt, data, message, reason', [
    ('jpeg', b'', 'empty compressed image', 'empty'),
    ('jpeg', b'\xff\xd8 this is not a jpeg', 'cannot decode compressed image', 'decode'),
    ('png', bytes(range(256)), r"format 'png', 256 bytes", 'decode'),
    ('16UC1; compressedDepth', b'\x00' * 20, 'depth image', 'encoding'),
])
def test_bad_compressed_images(types, fmt, data, message, reason):
    msg = types.new('sensor_msgs/msg/CompressedImage', header=header(types), format=fmt,
                    data=data)
    with pytest.raises(FrameError, match=message) as info:
        conversions.image_to_rgb(msg)
    assert info.value.reason == reason


def test_writing_bad_images(types):
    with pytest.raises(FrameError, match="cannot write image encoding 'yuv422'"):
        conversions.rgb_to_image(types, sample_image(), header(types), 'yuv422')
    with pytest.raises(FrameError, match="cannot write compressed format 'tiff'"):
        conversions.rgb_to_compressed(types, sample_image(), header(types), 'tiff')
    with pytest.raises(ValueError, match=r'expected an \(H, W, 3\) uint8 RGB image'):
        conversions.rgb_to_image(types, np.zeros((4, 4), np.uint8), header(types))
