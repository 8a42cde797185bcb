"""The bag tool end to end without ROS.

Write a small bag (sqlite3 and mcap), run `run_bag` with a fake estimator, read the output bag
back and compare with what the estimator returned.
"""

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pose6d_ros.core.geometry.objects import ObjectModel, ObjectSet
from pose6d_ros.core.geometry.poses import box_keypoints
from pose6d_ros.core.geometry.results import ObjectPose
from pose6d_ros.ros import conversions
from pose6d_ros.ros.bag import output_topics, run_bag
from pose6d_ros.ros.conversions import RosbagsTypes
from pose6d_ros.ros.errors import BagError
from pose6d_ros.ros.pipeline import PipelineConfig, resolve_min_score
from pose6d_ros.tools import cli

WIDTH, HEIGHT = 80, 60
FRAMES = 4
T0_NS = 1_700_000_000_000_000_000
PERIOD_NS = 100_000_000  # 10 Hz
FRAME = 'camera_optical_frame'
IMAGE_TOPIC, INFO_TOPIC = '/camera/image_raw', '/camera/camera_info'
SIZE = np.array([0.06, 0.06, 0.1])


@pytest.fixture(scope='module')
def types():
    return RosbagsTypes.for_distro('jazzy')


def truth(index):
    """What the fake estimator finds in frame `index`: a mug, plus a box in odd frames."""
    rotation = Rotation.from_euler('z', 30 * index, degrees=True).as_matrix()
    poses = [pose('mug', 0, 0.9 - 0.01 * index, rotation, (0.01 * index, 0.0, 0.5))]
    if index % 2:
        poses.append(pose('box', 1, 0.6, np.eye(3), (-0.1, 0.05, 0.7)))
    return poses


def pose(name, class_id, score, R, t):
    return ObjectPose(object_name=name, class_id=class_id, object_id=class_id + 1, score=score,
                      keypoints=np.zeros((9, 2)), box=np.array([0.0, 0.0, 10.0, 10.0]), R=R,
                      t=np.asarray(t, dtype=float), reprojection_error=0.5, inliers=9,
                      box_size=SIZE, box_centre=np.zeros(3))


class FrameIndexEstimator:
    """Reads the frame index the test drew into the image, returns `truth(index)`."""

    def __init__(self):
        half = SIZE / 2
        self.objects = ObjectSet([ObjectModel('mug', 1, box_keypoints(-half, half), 0.13),
                                  ObjectModel('box', 2, box_keypoints(-half, half), 0.13)])
        self.device = 'cpu'
        self.seen = []

    def __call__(self, image_rgb, camera):
        assert camera.size == (WIDTH, HEIGHT)
        index = int(image_rgb[0, 0, 0]) // 10
        self.seen.append(index)
        return truth(index)


def synthetic_image(index):
    """A drawn shape that moves with the frame; pixel (0, 0) encodes the frame index."""
    rgb = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
    cv2.circle(rgb, (20 + 10 * index, 30), 8, (230, 200, 30), cv2.FILLED)
    rgb[0, 0] = (10 * index, 0, 0)
    return rgb


def write_bag(path, storage='sqlite3', frames=FRAMES, compressed=False, bad_frames=(),
              extra_topics=True):
    """A bag with images + camera_info (same stamps) and, optionally, a chatter topic."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    types = RosbagsTypes.for_distro('jazzy')
    image_type = 'sensor_msgs/msg/CompressedImage' if compressed else 'sensor_msgs/msg/Image'
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        image_conn = writer.add_connection(IMAGE_TOPIC, image_type, typestore=types.typestore)
        info_conn = writer.add_connection(INFO_TOPIC, 'sensor_msgs/msg/CameraInfo',
                                          typestore=types.typestore)
        chatter = writer.add_connection('/chatter', 'std_msgs/msg/String',
                                        typestore=types.typestore) if extra_topics else None
        for index in range(frames):
            stamp = T0_NS + index * PERIOD_NS
            header = conversions.make_header(types, stamp, FRAME)
            k = [0.0] * 9 if index in bad_frames else [70.0, 0, 40, 0, 70.0, 30, 0, 0, 1]
            info = types.new('sensor_msgs/msg/CameraInfo', header=header, width=WIDTH,
                             height=HEIGHT, distortion_model='plumb_bob', d=[0.0] * 5, k=k)
            if compressed:
                image = conversions.rgb_to_compressed(types, synthetic_image(index), header,
                                                      'png')
            else:
                image = conversions.rgb_to_image(types, synthetic_image(index), header, 'bgr8')
            # Recorded a little after the stamp, camera_info after the image.
            writer.write(image_conn, stamp + 5_000_000, types.serialize(image))
            writer.write(info_conn, stamp + 6_000_000, types.serialize(info))
            if chatter is not None:
                text = types.new('std_msgs/msg/String', data=f'frame {index}')
                writer.write(chatter, stamp + 7_000_000, types.serialize(text))
    return path


def read_bag(path):
    """{topic: (msgtype, [(receive time, message)])}, decoded with the bag's own definitions."""
    from rosbags.highlevel import AnyReader

    out = {}
    with AnyReader([path]) as reader:  # no typestore given: vision_msgs comes from the bag
        for conn in reader.connections:
            out.setdefault(conn.topic, (conn.msgtype, []))
        for conn, timestamp, raw in reader.messages():
            out[conn.topic][1].append((timestamp, reader.deserialize(raw, conn.msgtype)))
    return out


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_bag_round_trip(tmp_path, storage):
    in_bag = write_bag(tmp_path / 'in', storage)
    estimator = FrameIndexEstimator()
    summary = run_bag(estimator, in_bag, tmp_path / 'out', config=PipelineConfig(min_score=0.5))
    assert (summary.frames, summary.processed, summary.skipped) == (FRAMES, FRAMES, 0)
    assert summary.instances == sum(len(truth(i)) for i in range(FRAMES))
    assert summary.storage == storage and estimator.seen == list(range(FRAMES))
    assert (tmp_path / 'out' / 'metadata.yaml').is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['in', 'out']  # no temporary left
    suffix = '.mcap' if storage == 'mcap' else '.db3'
    assert any(p.suffix == suffix for p in (tmp_path / 'out').iterdir())

    bag = read_bag(tmp_path / 'out')
    expected_types = {IMAGE_TOPIC: 'sensor_msgs/msg/Image',
                      INFO_TOPIC: 'sensor_msgs/msg/CameraInfo',
                      '/chatter': 'std_msgs/msg/String'}
    expected_types.update(dict(output_topics('/pose6d').values()))
    assert {topic: msgtype for topic, (msgtype, _) in bag.items()} == expected_types
    for topic in (IMAGE_TOPIC, INFO_TOPIC, '/chatter'):
        assert len(bag[topic][1]) == FRAMES  # input copied

    image_times = [t for t, _ in bag[IMAGE_TOPIC][1]]
    for role in ('poses', 'detections', 'markers', 'debug_image'):
        topic = output_topics('/pose6d')[role][0]
        assert [t for t, _ in bag[topic][1]] == image_times, role  # at the image's time
    for index, (_t, msg) in enumerate(bag['/pose6d/poses'][1]):
        assert msg.header.frame_id == FRAME
        assert conversions.stamp_to_ns(msg.header.stamp) == T0_NS + index * PERIOD_NS
        expected = truth(index)
        assert len(msg.poses) == len(expected)
        for got, want in zip(msg.poses, expected):
            np.testing.assert_allclose([got.position.x, got.position.y, got.position.z],
                                       want.t, atol=1e-12)
            q = got.orientation
            np.testing.assert_allclose([q.x, q.y, q.z, q.w], want.quat_xyzw, atol=1e-12)
    for index, (_t, msg) in enumerate(bag['/pose6d/detections'][1]):
        names = [d.results[0].hypothesis.class_id for d in msg.detections]
        assert names == [p.object_name for p in truth(index)]
        size = msg.detections[0].bbox.size
        np.testing.assert_allclose([size.x, size.y, size.z], SIZE)
    tf = bag['/tf'][1]
    assert len(tf) == FRAMES
    assert [t.child_frame_id for t in tf[1][1].transforms] == ['mug_0', 'box_0']
    assert tf[1][1].transforms[0].header.frame_id == FRAME
    markers = bag['/pose6d/markers'][1][0][1].markers
    assert len(markers[1].points) == 24
    _t, debug = bag['/pose6d/debug_image'][1][2]
    assert (debug.width, debug.height, debug.encoding) == (WIDTH, HEIGHT, 'rgb8')


def test_storage_option_and_compressed_input(tmp_path):
    in_bag = write_bag(tmp_path / 'in', 'sqlite3', compressed=True, extra_topics=False)
    summary = run_bag(FrameIndexEstimator(), in_bag, tmp_path / 'out', storage='mcap',
                      ns='/vision', debug_image=False)
    assert summary.processed == FRAMES and summary.storage == 'mcap'
    bag = read_bag(tmp_path / 'out')
    assert '/vision/poses' in bag and '/vision/debug_image' not in bag
    assert bag[IMAGE_TOPIC][0] == 'sensor_msgs/msg/CompressedImage'
    assert any(p.suffix == '.mcap' for p in (tmp_path / 'out').iterdir())


def test_bad_frames_are_skipped_and_counted(tmp_path):
    in_bag = write_bag(tmp_path / 'in', bad_frames=(1,))
    estimator = FrameIndexEstimator()
    summary = run_bag(estimator, in_bag, tmp_path / 'out')
    assert (summary.frames, summary.processed, summary.skipped) == (FRAMES, FRAMES - 1, 1)
    assert summary.errors == {'camera_info': 1}
    assert 'camera K is all zeros' in summary.format()
    assert estimator.seen == [0, 2, 3]
    assert len(read_bag(tmp_path / 'out')['/pose6d/poses'][1]) == FRAMES - 1


def test_a_bag_of_only_bad_frames_is_an_error_and_writes_nothing(tmp_path):
    in_bag = write_bag(tmp_path / 'in', frames=2, bad_frames=(0, 1))
    with pytest.raises(BagError, match=r'none of the 2 frames.*\(2x: camera_info: camera K is '
                                       'all zeros'):
        run_bag(FrameIndexEstimator(), in_bag, tmp_path / 'out')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['in']


def test_missing_topics_are_listed_with_their_types(tmp_path):
    in_bag = write_bag(tmp_path / 'in', frames=1)
    with pytest.raises(BagError) as info:
        run_bag(FrameIndexEstimator(), in_bag, tmp_path / 'out', image_topic='/cam/image')
    message = str(info.value)
    assert "has no topic '/cam/image'" in message and '--image-topic' in message
    assert '/camera/image_raw (sensor_msgs/msg/Image)' in message
    assert '/camera/camera_info (sensor_msgs/msg/CameraInfo)' in message
    assert '/chatter (std_msgs/msg/String)' in message
    with pytest.raises(BagError, match="topic '/chatter'.*carries std_msgs/msg/String; expected "
                                       'sensor_msgs/msg/CameraInfo'):
        run_bag(FrameIndexEstimator(), in_bag, tmp_path / 'out', info_topic='/chatter')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['in']


def test_paths_force_and_atomic_replace(tmp_path):
    in_bag = write_bag(tmp_path / 'in', frames=2)
    with pytest.raises(BagError, match='input bag not found'):
        run_bag(FrameIndexEstimator(), tmp_path / 'nope', tmp_path / 'out')
    with pytest.raises(BagError, match='is the input bag'):
        run_bag(FrameIndexEstimator(), in_bag, in_bag)
    (tmp_path / 'not_a_bag').mkdir()
    with pytest.raises(BagError, match='cannot read bag .*expected a ROS 2 bag'):
        run_bag(FrameIndexEstimator(), tmp_path / 'not_a_bag', tmp_path / 'out')
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'keep.txt').write_text('old')
    with pytest.raises(BagError, match='exists; pass --force to overwrite'):
        run_bag(FrameIndexEstimator(), in_bag, out)
    assert (out / 'keep.txt').is_file()
    run_bag(FrameIndexEstimator(), in_bag, out, force=True)
    assert not (out / 'keep.txt').exists() and (out / 'metadata.yaml').is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['in', 'not_a_bag', 'out']


def test_reads_a_bag_file_directly_and_humble_definitions(tmp_path):
    write_bag(tmp_path / 'in', 'mcap', frames=2)
    mcap_file = next((tmp_path / 'in').glob('*.mcap'))
    summary = run_bag(FrameIndexEstimator(), mcap_file, tmp_path / 'out', distro='humble')
    assert summary.processed == 2 and summary.storage == 'mcap'
    assert len(read_bag(tmp_path / 'out')['/pose6d/detections'][1]) == 2


# --- the `pose6d bag` command ----------------------------------------------------------------


def test_cli_bag_with_an_injected_estimator(tmp_path, monkeypatch, capsys):
    import pose6d_ros.ros.pipeline as pipeline

    loaded = []

    def fake_load(bundle, device='auto', onnx=''):
        loaded.append((bundle, device, onnx))
        return FrameIndexEstimator()

    monkeypatch.setattr(pipeline, 'load_estimator', fake_load)
    in_bag = write_bag(tmp_path / 'in', frames=2)
    argv = ['bag', '--model', 'bundle_dir', '--in', str(in_bag), '--out', str(tmp_path / 'out'),
            '--device', 'cpu', '--objects', 'mug']
    assert cli.main(argv) == 0
    assert loaded == [('bundle_dir', 'cpu', '')]
    assert '2 frames, 2 processed, 0 skipped, 2 object instances' in capsys.readouterr().out
    assert cli.main(argv) == 1
    assert 'pose6d: error: output bag' in capsys.readouterr().err
    argv[argv.index('--objects') + 1] = 'teapot'
    assert cli.main(argv + ['--force']) == 1
    assert "unknown object name(s) 'teapot'" in capsys.readouterr().err
    assert cli.main(['bag', '--model', 'b', '--in', str(in_bag), '--out', str(tmp_path / 'o2'),
                     '--image-topic', '/nope']) == 1
    assert "has no topic '/nope'" in capsys.readouterr().err
    assert cli.main(['bag', '--model', 'b', '--in', str(in_bag), '--out', str(tmp_path / 'o3'),
                     '--onnx', 'b/model_int8.onnx']) == 0
    assert loaded[-1] == ('b', 'auto', 'b/model_int8.onnx')


def test_cli_bag_without_an_estimator_module_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, 'pose6d_ros.core.inference.estimator', None)  # import fails
    in_bag = write_bag(tmp_path / 'in', frames=1)
    assert cli.main(['bag', '--model', 'b', '--in', str(in_bag), '--out',
                     str(tmp_path / 'out')]) == 1
    assert 'pose6d: error: cannot load the estimator' in capsys.readouterr().err


def test_pose6d_bag_cli_with_a_tiny_trained_model(learned_bundle, tiny_dataset, tmp_path):
    """Rendered frames with known poses -> `pose6d bag` with a trained model.

    The output poses are the estimator's for those frames, and near the truth.
    """
    from rosbags.rosbag2 import Writer

    from pose6d_ros.core.data.bop import BopDataset
    from pose6d_ros.core.geometry.metrics import projection_2d
    from pose6d_ros.core.geometry.poses import Pose
    from pose6d_ros.core.inference.estimator import Estimator

    bundle, _losses = learned_bundle
    samples = [BopDataset(tiny_dataset)[i] for i in range(6)]
    types = RosbagsTypes.for_distro('jazzy')
    in_bag = tmp_path / 'rendered'
    with Writer(in_bag, version=9) as writer:
        image_conn = writer.add_connection(IMAGE_TOPIC, 'sensor_msgs/msg/Image',
                                           typestore=types.typestore)
        info_conn = writer.add_connection(INFO_TOPIC, 'sensor_msgs/msg/CameraInfo',
                                          typestore=types.typestore)
        for index, sample in enumerate(samples):
            stamp = T0_NS + index * PERIOD_NS
            header = conversions.make_header(types, stamp, FRAME)
            camera = sample.camera
            info = types.new('sensor_msgs/msg/CameraInfo', header=header, width=camera.width,
                             height=camera.height, distortion_model='plumb_bob',
                             d=[0.0] * 5, k=camera.K.ravel().tolist())
            image = conversions.rgb_to_image(types, sample.load_image(), header, 'rgb8')
            writer.write(image_conn, stamp, types.serialize(image))
            writer.write(info_conn, stamp + 1000, types.serialize(info))
    out_bag = tmp_path / 'out'
    assert cli.main(['bag', '--model', str(bundle), '--in', str(in_bag), '--out', str(out_bag),
                     '--device', 'cpu']) == 0

    topics = read_bag(out_bag)
    for topic, msgtype in output_topics('/pose6d').values():
        assert topics[topic][0] == msgtype, topic
    estimator = Estimator.from_bundle(bundle, device='cpu')
    pose_arrays = [message for _stamp, message in topics['/pose6d/poses'][1]]
    assert len(pose_arrays) == len(samples)
    near_truth = 0
    for sample, message in zip(samples, pose_arrays):
        expected = [p for p in estimator(sample.load_image(), sample.camera)
                    if p.score >= resolve_min_score(PipelineConfig().min_score, estimator)]
        assert len(message.poses) == len(expected)
        for published, found in zip(message.poses, expected):
            position = [published.position.x, published.position.y, published.position.z]
            quat = [published.orientation.x, published.orientation.y, published.orientation.z,
                    published.orientation.w]
            assert np.allclose(position, found.t, atol=1e-6)
            assert np.allclose(np.abs(np.dot(quat, found.quat_xyzw)), 1.0, atol=1e-6)
        if expected and sample.annotations:
            truth_pose = Pose(sample.annotations[0].R, sample.annotations[0].t)
            near_truth += projection_2d(expected[0].pose, truth_pose,
                                        estimator.objects[0].keypoints, sample.camera) < 5.0
    assert near_truth >= len(samples) // 2


def test_bag_with_tracking_runs_the_network_on_some_frames_and_names_tracks(
        tmp_path, capsys, monkeypatch):
    import pose6d_ros.ros.pipeline as pipeline

    estimator = FrameIndexEstimator()
    monkeypatch.setattr(pipeline, 'load_estimator', lambda *a, **k: estimator)
    in_bag = write_bag(tmp_path / 'in', frames=6)
    argv = ['bag', '--model', 'b', '--in', str(in_bag), '--out', str(tmp_path / 'out'),
            '--tracking', '--network-every', '3', '--confirm', '1/1', '--no-debug-image']
    assert cli.main(argv) == 0
    assert estimator.seen == [0, 3]  # the box of odd frames: seen once, at frame 3
    report = capsys.readouterr().out
    assert 'tracking: the network ran on 2 of 6 frames' in report
    bag = read_bag(tmp_path / 'out')
    children = [[t.child_frame_id for t in message.transforms] for _t, message in bag['/tf'][1]]
    assert children[:3] == [['mug_0']] * 3
    assert children[3] == ['mug_0', 'box_1'] and children[5] == ['mug_0', 'box_1']
    detections = [message for _t, message in bag['/pose6d/detections'][1]]
    assert [d.id for d in detections[4].detections] == ['mug_0', 'box_1']
    stamps = [conversions.stamp_to_ns(m.header.stamp) for m in detections]
    assert stamps == [T0_NS + i * PERIOD_NS for i in range(6)]  # the images' stamps


@pytest.mark.parametrize('option, value, message', [
    ('--confirm', '4/3', 'expected 1 <= N <= M'),
    ('--confirm', 'two', 'expected N/M'),
    ('--gate', '0.03', 'expected METRES/DEGREES'),
    ('--gate', '0.03/200', 'expected METRES > 0 and 0 < DEGREES <= 180'),
    ('--network-every', '0', 'expected a positive integer'),
])
def test_bag_tracking_options_refuse_bad_values(tmp_path, capsys, option, value, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(['bag', '--model', 'b', '--in', 'x', '--out', str(tmp_path / 'o'),
                  '--tracking', option, value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
