"""The webcam path without ROS: frame sources, pacing, camera_info_url, the camera's messages.

What pose6d_camera_node and pose6d_static_transform_node do is here, built with the ROS 2
message definitions of rosbags (the nodes themselves are tested in test_node.py where rclpy
is installed): set_camera_info's work included.
"""

import threading
import time

import cv2
import numpy as np
import pytest
import yaml

from pose6d_ros.core.data.capture import FrameSource, Pacer, source_kind
from pose6d_ros.core.errors import CaptureError, Pose6dError
from pose6d_ros.core.geometry.calibration import ros_calibration_yaml
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.ros import conversions
from pose6d_ros.ros.camera import (
    calibration_from_info,
    calibration_path,
    calibration_target,
    CameraSettings,
    CameraStream,
    load_calibration,
    resolve_url,
)
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


@pytest.fixture(autouse=True)
def ros_home(tmp_path, monkeypatch):
    """$ROS_HOME in the test's folder: no test reads or writes the user's ~/.ros."""
    path = tmp_path / 'ros_home'
    monkeypatch.setenv('ROS_HOME', str(path))
    return path


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
    path.parent.mkdir(parents=True, exist_ok=True)
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
    assert load_calibration('') is None   # no ~/.ros/camera_info/camera.yaml
    for url, words in [('file://relative/c.yaml', 'three slashes'),
                       ('http://example.com/c.yaml', 'expected file:///'),
                       ('package://no_such_package_here/c.yaml', 'not installed')]:
        with pytest.raises(CaptureError, match=words):
            load_calibration(url)
    # a file that is not there (yet: set_camera_info writes it): none, and a warning
    warnings = []
    assert load_calibration(f'file://{tmp_path}/none.yaml', warn=warnings.append) is None
    assert len(warnings) == 1 and f'no file {tmp_path}/none.yaml' in warnings[0]
    assert 'COMMIT' in warnings[0]
    bad = tmp_path / 'bad.yaml'
    bad.write_text('camera_matrix: {rows: 3, cols: 3, data: [0, 0, 0, 0, 0, 0, 0, 0, 0]}\n'
                   'image_width: 64\nimage_height: 48\n')
    with pytest.raises(CaptureError, match='all zeros'):
        load_calibration(str(bad))


def test_url_substitutions_as_camera_info_manager_makes_them(tmp_path, monkeypatch, ros_home):
    default = 'file://${ROS_HOME}/camera_info/${NAME}.yaml'
    assert resolve_url(default, 'webcam') == f'file://{ros_home}/camera_info/webcam.yaml'
    monkeypatch.delenv('ROS_HOME')          # then ~/.ros
    monkeypatch.setenv('HOME', str(tmp_path / 'me'))
    assert resolve_url(default, 'cam_2') == f'file://{tmp_path}/me/.ros/camera_info/cam_2.yaml'
    # one pass: a value is not searched again; a '$' without '{' stays
    monkeypatch.setenv('ROS_HOME', '/opt/${NAME}')
    resolved = resolve_url('file://${ROS_HOME}/$x/${NAME}.yaml', 'c')
    assert resolved == 'file:///opt/${NAME}/$x/c.yaml'
    assert resolve_url('/plain/cam.yaml', 'c') == '/plain/cam.yaml'
    for url, words in [('file://${HOME}/c.yaml', r'unknown substitution \$\{HOME\}'),
                       ('file:///${name}.yaml', r'unknown substitution \$\{name\}'),
                       ('file:///a/${NAME.yaml', r'\$\{NAME.yaml has no closing brace')]:
        with pytest.raises(CaptureError, match=words) as refused:
            resolve_url(url, 'c')
        assert '${NAME} (camera_name) or ${ROS_HOME}' in str(refused.value)
        with pytest.raises(CaptureError, match=words):   # the node refuses it at start-up
            CameraSettings(source='0', camera_info_url=url).validated()


def test_a_calibration_is_found_through_name_and_ros_home(types, tmp_path, folder, ros_home):
    path, camera = calibration_file(ros_home / 'camera_info', name='left_cam.yaml')
    assert calibration_path('file://${ROS_HOME}/camera_info/${NAME}.yaml', 'left_cam') == path
    warnings = []
    stream = CameraStream(CameraSettings(source=str(folder), camera_name='left_cam',
                                         camera_info_url='file://${ROS_HOME}/camera_info/'
                                                         '${NAME}.yaml'),
                          types, warn=warnings.append)
    assert stream.calibration == camera and str(path) in stream.describe()
    # the file names camera 'test', not 'left_cam': used, with camera_info_manager's warning
    assert len(warnings) == 1 and "camera_name 'test', not 'left_cam'" in warnings[0]


def test_without_camera_info_url_the_default_file_is_used_when_there(types, folder, ros_home):
    settings = CameraSettings(source=str(folder), camera_name='test')
    stream = CameraStream(settings, types)
    assert stream.calibration is None
    default = ros_home / 'camera_info' / 'test.yaml'
    assert f'no calibration (no file {default})' in stream.describe()
    path, camera = calibration_file(ros_home / 'camera_info', name='test.yaml')
    warnings = []
    stream = CameraStream(settings, types, warn=warnings.append)
    assert stream.calibration == camera and not warnings   # its camera_name is 'test'
    assert conversions.camera_from_info(stream.next()[1]) == camera


def camera_info_of(types, camera):
    """The CameraInfo camera_calibration's COMMIT would send for `camera`."""
    return conversions.camera_info(types, camera, conversions.make_header(types, 0, ''))


def new_camera(width=WIDTH, height=HEIGHT):
    return CameraModel.from_intrinsics(58.0, 59.0, 32.5, 22.5, width, height,
                                       D=[0.05, -0.02, 0.001, 0.0, 0.0])


def test_set_camera_info_writes_the_file_and_the_next_frame_carries_it(types, folder, ros_home):
    settings = CameraSettings(source=str(folder), camera_name='webcam', loop=True, fps=500.0)
    stream = CameraStream(settings, types, warn=lambda message: None)
    rough = conversions.camera_from_info(stream.next()[1])
    camera = new_camera()
    message = stream.set_camera_info(camera_info_of(types, camera))
    path = ros_home / 'camera_info' / 'webcam.yaml'   # camera_info_manager's default file
    assert f'to {path}' in message and '64x48' in message
    assert CameraModel.load(path) == camera != rough
    text = path.read_text()
    assert yaml.safe_load(text)['camera_name'] == 'webcam'
    assert text.startswith('# set_camera_info of pose6d_camera_node')
    assert sorted(p.name for p in path.parent.iterdir()) == ['webcam.yaml']   # no temp file
    assert conversions.camera_from_info(stream.next()[1]) == camera
    assert str(path) in stream.describe()
    # the next start reads it back with camera_info_url ''
    assert CameraStream(settings, types).calibration == camera


def test_set_camera_info_writes_where_camera_info_url_says(types, tmp_path, folder, ros_home):
    old_path, old = calibration_file(tmp_path / 'cams', name='front.yaml')
    settings = CameraSettings(source=str(folder), camera_name='front', width=WIDTH,
                              height=HEIGHT, camera_info_url=f'file://{tmp_path}/cams/'
                                                             '${NAME}.yaml')
    stream = CameraStream(settings, types, warn=lambda message: None)
    assert stream.calibration == old
    camera = new_camera()
    # the size is known from width and height before any frame
    assert str(old_path) in stream.set_camera_info(camera_info_of(types, camera))
    assert CameraModel.load(old_path) == camera
    assert conversions.camera_from_info(stream.next()[1]) == camera
    # a folder that is not there yet is made
    deep = CameraSettings(source=str(folder), camera_info_url=str(tmp_path / 'a' / 'b.yaml'))
    stream = CameraStream(deep, types, warn=lambda message: None)
    stream.next()
    stream.set_camera_info(camera_info_of(types, camera))
    assert CameraModel.load(tmp_path / 'a' / 'b.yaml') == camera


def test_bad_set_camera_info_requests_change_nothing(types, tmp_path, folder, ros_home):
    path, old = calibration_file(ros_home / 'camera_info', name='camera.yaml')
    before = path.read_bytes()
    stream = CameraStream(CameraSettings(source=str(folder), loop=True, fps=500.0), types,
                          warn=lambda message: None)
    good = camera_info_of(types, new_camera())
    with pytest.raises(CaptureError, match='no frame has been published yet'):
        stream.set_camera_info(good)
    stream.next()
    stereo = camera_info_of(types, new_camera())
    stereo.r[:] = [0.9998, 0.02, 0.0, -0.02, 0.9998, 0.0, 0.0, 0.0, 1.0]
    zero_k = camera_info_of(types, new_camera())
    zero_k.k[:] = 0.0
    nan_d = camera_info_of(types, new_camera())
    nan_d.d[1] = np.nan
    no_size = camera_info_of(types, new_camera())
    no_size.width = 0
    for info, words in [
            (camera_info_of(types, new_camera(320, 240)),
             'is for 320x240 images, but this camera publishes 64x48'),
            (stereo, 'R must be the identity'),
            (zero_k, r'camera_info: camera K is all zeros \(uncalibrated camera\?\)'),
            (types.new('sensor_msgs/msg/CameraInfo'), 'camera_info: camera K is all zeros'),
            (nan_d, 'camera_info: camera D contains NaN'),
            (no_size, 'camera_info: .*width and height must be positive')]:
        with pytest.raises(Pose6dError, match=words):
            stream.set_camera_info(info)
    assert path.read_bytes() == before and stream.calibration == old
    assert conversions.camera_from_info(stream.next()[1]) == old
    # R all zeros is R not given (a hand-made request): taken as the identity
    unset = camera_info_of(types, new_camera())
    unset.r[:] = 0.0
    assert calibration_from_info(unset, (WIDTH, HEIGHT)) == new_camera()


def test_set_camera_info_refuses_a_package_url_and_an_unwritable_file(types, tmp_path, folder):
    with pytest.raises(CaptureError, match='names a file in an installed package') as refused:
        calibration_target('package://pose6d_ros/config/${NAME}.yaml', 'camera')
    assert 'camera_info/camera.yaml' in str(refused.value)   # where '' would write
    (tmp_path / 'not_a_folder').write_text('a file')
    settings = CameraSettings(source=str(folder),
                              camera_info_url=f'file://{tmp_path}/not_a_folder/c.yaml')
    stream = CameraStream(settings, types, warn=lambda message: None)
    stream.next()
    with pytest.raises(CaptureError, match=f'cannot write the calibration to {tmp_path}'):
        stream.set_camera_info(camera_info_of(types, new_camera()))
    assert stream.calibration is None


def test_the_calibration_changes_between_frames_of_a_running_capture(types, folder):
    """Frames carry the old calibration until the call, the new one from the next frame on."""
    settings = CameraSettings(source=str(folder), loop=True, fps=1000.0)
    stream = CameraStream(settings, types, warn=lambda message: None)
    infos, stop = [], threading.Event()

    def capture():
        while not stop.is_set():
            infos.append(stream.next()[1])

    def wait_for(count):
        deadline = time.monotonic() + 10.0
        while len(infos) < count:
            assert thread.is_alive() and time.monotonic() < deadline, len(infos)
            time.sleep(0.001)

    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    try:
        wait_for(5)
        stream.set_camera_info(camera_info_of(types, new_camera()))
        done_at = len(infos)
        wait_for(done_at + 5)
    finally:
        stop.set()
        thread.join(timeout=5)
    cameras = [conversions.camera_from_info(info) for info in infos]
    switch = next(k for k, camera in enumerate(cameras) if camera == new_camera())
    assert switch >= 5 and switch <= done_at + 1   # a frame begun before the call may be old
    assert all(camera != new_camera() for camera in cameras[:switch])
    assert all(camera == new_camera() for camera in cameras[switch:])


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
    assert f'calibration {path}' in stream.describe() and '500 fps' in stream.describe()


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
    ({'camera_name': 'my-cam'}, ["camera_name 'my-cam' is not a camera name; expected letters, "
                                 'digits and _ (as camera_info_manager requires)']),
    ({'camera_name': ''}, ["camera_name '' is not a camera name"]),
    ({'camera_name': 'cam\n'}, ['is not a camera name']),
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
