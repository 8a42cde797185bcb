"""The webcam path without ROS: frame sources, pacing, camera_info_url, the camera's messages.

What pose6d_camera_node and pose6d_static_transform_node do is here, built with the ROS 2
message definitions of rosbags (the nodes themselves are tested in test_node.py where rclpy
is installed).
"""

import cv2
import numpy as np
import pytest

from pose6d_ros.core.data.capture import FrameSource, Pacer, source_kind
from pose6d_ros.core.errors import CaptureError, Pose6dError
from pose6d_ros.core.geometry.calibration import ros_calibration_yaml
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.ros import conversions
from pose6d_ros.ros.camera import calibration_path, CameraSettings, CameraStream, load_calibration
from pose6d_ros.ros.conversions import RosbagsTypes
from pose6d_ros.ros.parameters import (
    CAMERA_PARAMETERS,
    read_only_reason,
    startup_reason,
    STATIC_TRANSFORM_PARAMETERS,
)

WIDTH, HEIGHT = 64, 48


@pytest.fixture(scope='module')
def types():
    return RosbagsTypes.for_distro('jazzy')


def frame_image(k, width=WIDTH, height=HEIGHT):
    """An RGB frame that says which it is: its top-left block has value 20 k."""
    rgb = np.full((height, width, 3), 90, np.uint8)
    rgb[:8, :8] = 20 * k
    return rgb


@pytest.fixture()
def folder(tmp_path):
    path = tmp_path / 'frames'
    path.mkdir()
    for k in range(3):
        cv2.imwrite(str(path / f'{k:03d}.png'), frame_image(k)[:, :, ::-1])
    (path / 'notes.txt').write_text('not an image')
    return path


@pytest.fixture()
def video(tmp_path):
    path = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 12.0, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for k in range(4):
        writer.write(np.ascontiguousarray(frame_image(k)[:, :, ::-1]))
    writer.release()
    return path


def calibration_file(tmp_path, width=WIDTH, height=HEIGHT, name='cam.yaml'):
    camera = CameraModel.from_intrinsics(70.0, 71.0, 31.5, 23.5, width, height,
                                         D=[-0.1, 0.01, 0.0, 0.0, 0.0])
    path = tmp_path / name
    path.write_text(ros_calibration_yaml(camera, 'test'))
    return path, camera


# --- FrameSource and Pacer ------------------------------------------------------------------


def test_sources_are_told_apart(folder, video):
    assert source_kind('0') == source_kind('/dev/video3') == 'device'
    assert source_kind(str(folder)) == 'folder' and source_kind(str(video)) == 'video'
    assert source_kind(str(folder / '001.png')) == 'image'
    with pytest.raises(CaptureError, match='not found; expected a camera index'):
        source_kind(str(folder / 'missing.mp4'))


def test_an_image_folder_plays_in_name_order_once_or_looping(folder):
    with FrameSource(folder) as source:
        frames = [source.read() for _ in range(4)]
    assert [f.name for f in frames[:3]] == ['000.png', '001.png', '002.png']
    assert [int(f.rgb[0, 0, 0]) for f in frames[:3]] == [0, 20, 40]
    assert frames[3] is None                                   # once: the end
    with FrameSource(folder, loop=True) as source:
        names = [source.read().name for _ in range(5)]
    assert names == ['000.png', '001.png', '002.png', '000.png', '001.png']


def test_a_video_plays_once_or_looping_and_frames_are_resized(video):
    with FrameSource(video) as source:
        assert source.nominal_fps == pytest.approx(12.0) and source.is_file
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
    assert len(frames) == 4 and frames[0].rgb.shape == (HEIGHT, WIDTH, 3)
    assert [f.index for f in frames] == [0, 1, 2, 3]
    with FrameSource(video, width=32, height=24, loop=True) as source:
        frames = [source.read() for _ in range(9)]
    assert all(f.rgb.shape == (24, 32, 3) for f in frames)
    assert frames[8].index == 8      # counted over the loops
    # the fifth frame is the first again
    assert abs(int(frames[4].rgb[0, 0, 0]) - int(frames[0].rgb[0, 0, 0])) < 8


def test_unreadable_sources_are_refused_with_what_was_expected(tmp_path, folder):
    broken = tmp_path / 'broken.mp4'
    broken.write_bytes(b'not a video at all')
    with pytest.raises(CaptureError, match='broken.mp4'):
        with FrameSource(broken) as source:
            source.read()
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(CaptureError, match='no images'):
        FrameSource(empty)
    with pytest.raises(CaptureError, match='both width and height'):
        FrameSource(folder, width=640)
    (folder / '003.png').write_bytes(b'\x89PNG broken')
    warnings = []
    with FrameSource(folder, warn=warnings.append) as source:
        names = [source.read().name for _ in range(3)]
        assert source.read() is None
    assert names == ['000.png', '001.png', '002.png'] and '003.png' in warnings[0]


def test_a_missing_camera_is_refused():
    with pytest.raises(CaptureError, match='cannot open camera /dev/video99'):
        FrameSource('/dev/video99')


def test_pacer_keeps_a_fixed_schedule_and_restarts_after_a_stall():
    now = [100.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(10.0, clock=lambda: now[0], sleep=sleep)
    pacer.wait()                       # the first tick is now
    now[0] += 0.03                     # 30 ms of work
    pacer.wait()
    assert slept == [pytest.approx(0.07)]
    now[0] += 0.5                      # a stall of five periods: no burst to catch up
    assert pacer.wait() == 0.0
    now[0] += 0.01
    assert pacer.wait() == pytest.approx(0.09)
    with pytest.raises(CaptureError, match='frame rate'):
        Pacer(0.0)


# --- calibration from camera_info_url --------------------------------------------------------


def test_camera_info_urls_as_camera_info_manager_reads_them(tmp_path):
    path, camera = calibration_file(tmp_path)
    assert calibration_path(f'file://{path}') == path
    assert calibration_path(str(path)) == path
    assert calibration_path('file:///with%20space/c.yaml').as_posix() == '/with space/c.yaml'
    assert load_calibration(f'file://{path}') == camera
    assert load_calibration('') is None
    for url, words in [('file://relative/c.yaml', 'three slashes'),
                       ('http://example.com/c.yaml', 'expected file:///'),
                       (f'file://{tmp_path}/none.yaml', 'no file'),
                       ('package://no_such_package_here/c.yaml', 'not installed')]:
        with pytest.raises(CaptureError, match=words):
            load_calibration(url)
    bad = tmp_path / 'bad.yaml'
    bad.write_text('camera_matrix: {rows: 3, cols: 3, data: [0, 0, 0, 0, 0, 0, 0, 0, 0]}\n'
                   'image_width: 64\nimage_height: 48\n')
    with pytest.raises(CaptureError, match='all zeros'):
        load_calibration(str(bad))


# --- the camera node's messages -----------------------------------------------------------


def test_each_frame_becomes_an_image_and_a_camera_info_with_one_header(
        types, tmp_path, folder):
    path, camera = calibration_file(tmp_path)
    stamps = iter([1_000_000_123, 2_000_000_456, 3_000_000_789])
    settings = CameraSettings(source=str(folder), camera_info_url=f'file://{path}',
                              frame_id='cam_optical', loop=False, fps=500.0)
    stream = CameraStream(settings, types, clock_ns=lambda: next(stamps))
    pairs = [stream.next() for _ in range(3)]
    assert stream.next() is None and stream.frames == 3
    for k, (image, info) in enumerate(pairs):
        assert image.header == info.header
        assert image.header.frame_id == 'cam_optical'
        assert conversions.stamp_to_ns(image.header.stamp) == [1_000_000_123, 2_000_000_456,
                                                               3_000_000_789][k]
        np.testing.assert_array_equal(conversions.image_to_rgb(image), frame_image(k))
        assert (info.width, info.height) == (WIDTH, HEIGHT)
        assert conversions.camera_from_info(info) == camera
        assert info.distortion_model == 'plumb_bob'
    # the messages serialise as the ROS 2 definitions say
    types.serialize(pairs[0][0])
    types.serialize(pairs[0][1])
    assert 'calibration file://' in stream.describe() and '500 fps' in stream.describe()


def test_without_a_calibration_a_rough_camera_and_a_warning(types, folder):
    warnings = []
    stream = CameraStream(CameraSettings(source=str(folder), field_of_view=90.0), types,
                          warn=warnings.append)
    _image, info = stream.next()
    stream.next()
    assert len(warnings) == 1 and 'distances will be off' in warnings[0]
    camera = conversions.camera_from_info(info)
    assert camera.fx == pytest.approx(WIDTH / 2) and camera.cx == (WIDTH - 1) / 2
    assert stream.pacer.period == pytest.approx(0.1)      # a folder: 10 frames per second


def test_a_calibration_for_another_size_is_refused(types, tmp_path, folder, video):
    path, _ = calibration_file(tmp_path, 640, 480)
    with pytest.raises(CaptureError, match='is for 640x480, not 320x240; calibrate at this size'):
        CameraStream(CameraSettings(source=str(folder), camera_info_url=str(path), width=320,
                                    height=240), types)
    stream = CameraStream(CameraSettings(source=str(video), camera_info_url=str(path)), types)
    with pytest.raises(CaptureError, match='frame 0 of .* is 64x48: the calibration'):
        stream.next()


@pytest.mark.parametrize('changes, words', [
    ({'width': 640}, ['width and height go together']),
    ({'frame_id': ''}, ['frame_id must not be empty']),
    ({'frame_id': '/camera'}, ['frame_id', 'leading slash']),
    ({'field_of_view': 200.0}, ['field_of_view must be in [1.0, 179.0]']),
    ({'fps': 30}, ['fps must be of type double', 'write 30.0']),
    ({'source': ''}, ['source must not be empty']),
])
def test_bad_camera_settings_are_refused(changes, words):
    with pytest.raises(Pose6dError) as refused:
        CameraSettings(**changes).validated()
    for word in words:
        assert word in str(refused.value)


def test_parameter_messages_say_what_to_do():
    message = startup_reason('min_score', -0.5)  # -1 means the model's own threshold
    assert message == ('parameter min_score must be in [0.0, 1.0], or -1.0; got -0.5; it was '
                       'given at start-up (--ros-args -p min_score:=..., a launch argument or '
                       'a parameters file): correct it there')
    assert "got 'abc' (string)" in startup_reason('fps', 'abc', CAMERA_PARAMETERS)
    assert 'must be in [1.0, 179.0]' in startup_reason('field_of_view', 0.0, CAMERA_PARAMETERS)
    reason = read_only_reason('model')
    assert 'model is fixed at start-up' in reason and '-p model:=' in reason
    assert 'restart' in reason
    assert CAMERA_PARAMETERS['frame_id'].constraints().startswith('a tf2 frame id')


# --- the static transform ---------------------------------------------------------------------


def test_the_static_transform_of_the_default_camera_pose(types):
    half_pi = np.pi / 2
    header = conversions.make_header(types, 5, 'base_link')
    msg = conversions.static_transform(types, header, 'camera_optical_frame', (0.1, 0.0, 0.45),
                                       (-half_pi, 0.0, -half_pi))
    types.serialize(msg)
    assert msg.header.frame_id == 'base_link' and msg.child_frame_id == 'camera_optical_frame'
    q, t = msg.transform.rotation, msg.transform.translation
    assert (t.x, t.y, t.z) == (0.1, 0.0, 0.45)
    from scipy.spatial.transform import Rotation

    R = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()   # parent <- child
    np.testing.assert_allclose(R @ [0, 0, 1], [1, 0, 0], atol=1e-12)   # optical z: forward
    np.testing.assert_allclose(R @ [0, 1, 0], [0, 0, -1], atol=1e-12)  # optical y: down
    assert set(STATIC_TRANSFORM_PARAMETERS) == {'parent_frame', 'child_frame', 'x', 'y', 'z',
                                                'roll', 'pitch', 'yaw'}
