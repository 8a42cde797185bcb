"""The per-frame pipeline without ROS.

Every bad input gives its message and no output, the next good frame works; score /
reprojection / object filters; target frame; lazy debug overlay.
"""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.geometry.objects import ObjectModel, ObjectSet
from pose6d_ros.core.geometry.poses import box_keypoints, Pose
from pose6d_ros.core.geometry.results import ObjectPose
from pose6d_ros.ros import conversions
from pose6d_ros.ros.conversions import RosbagsTypes
from pose6d_ros.ros.errors import FrameError
from pose6d_ros.ros.pipeline import FramePipeline, PipelineConfig

WIDTH, HEIGHT = 64, 48
STAMP_NS = 1_700_000_000_250_000_000
FRAME = 'cam_optical'
BOX_SIZE = {'mug': (0.08, 0.08, 0.1), 'box': (0.2, 0.1, 0.05)}


@pytest.fixture(scope='module')
def types():
    return RosbagsTypes.for_distro('jazzy')


def object_set():
    objects = []
    for object_id, (name, size) in enumerate(BOX_SIZE.items(), start=1):
        half = np.asarray(size) / 2
        objects.append(ObjectModel(name, object_id, box_keypoints(-half, half),
                                   float(np.linalg.norm(size))))
    return ObjectSet(objects)


def instance(name, score, t=(0.0, 0.0, 0.5), reprojection_error=1.0, R=None):
    class_id = list(BOX_SIZE).index(name)
    return ObjectPose(
        object_name=name, class_id=class_id, object_id=class_id + 1, score=score,
        keypoints=np.full((9, 2), 30.0), box=np.array([20.0, 10.0, 40.0, 30.0]),
        R=np.eye(3) if R is None else R, t=np.asarray(t, dtype=float),
        reprojection_error=reprojection_error, inliers=9, box_size=np.asarray(BOX_SIZE[name]),
        box_centre=np.zeros(3))


class FakeEstimator:
    """The Estimator interface: (image_rgb, CameraModel) -> list[ObjectPose]; objects, device."""

    def __init__(self, results):
        self.objects = object_set()
        self.device = 'cpu'
        self.results = results
        self.calls = []

    def __call__(self, image_rgb, camera):
        assert image_rgb.shape == (camera.height, camera.width, 3)
        assert image_rgb.dtype == np.uint8
        self.calls.append(camera)
        return list(self.results)


def image_msg(types, width=WIDTH, height=HEIGHT, encoding='rgb8', data=None, frame_id=FRAME):
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[10:30, 20:40] = (200, 50, 20)
    header = conversions.make_header(types, STAMP_NS, frame_id)
    if encoding == 'rgb8' and data is None:
        return conversions.rgb_to_image(types, rgb, header, 'rgb8')
    data = rgb.tobytes() if data is None else data
    return types.new('sensor_msgs/msg/Image', header=header, width=width, height=height,
                     encoding=encoding, step=3 * width, data=data)


def info_msg(types, width=WIDTH, height=HEIGHT, k=None, d=(0.0, 0.0, 0.0, 0.0, 0.0)):
    k = [60.0, 0, WIDTH / 2, 0, 60.0, HEIGHT / 2, 0, 0, 1] if k is None else k
    return types.new('sensor_msgs/msg/CameraInfo',
                     header=conversions.make_header(types, STAMP_NS, FRAME), width=width,
                     height=height, distortion_model='plumb_bob', d=list(d), k=list(k))


@pytest.fixture()
def estimator():
    return FakeEstimator([instance('mug', 0.9), instance('box', 0.4, t=(0.1, 0, 0.8)),
                          instance('mug', 0.7, reprojection_error=12.0)])


def test_good_frame(types, estimator):
    pipeline = FramePipeline(estimator, PipelineConfig(min_score=0.5), types)
    result = pipeline.process(image_msg(types), info_msg(types))
    assert [o.object_name for o in result.poses] == ['mug', 'mug']
    assert [o.score for o in result.poses] == [0.9, 0.7]  # highest score first
    assert len(result.all_poses) == 3
    assert result.frame_id == FRAME
    assert conversions.stamp_to_ns(result.header.stamp) == STAMP_NS
    assert result.camera.size == (WIDTH, HEIGHT) and result.camera.fx == 60.0
    assert len(result.pose_array().poses) == 2
    assert [d.id for d in result.detections().detections] == ['mug_0', 'mug_1']
    assert len(result.markers().markers) == 1 + 2 * 2
    assert [t.child_frame_id for t in result.transforms()] == ['mug_0', 'mug_1']
    assert result.inference_s >= 0.0


BAD_FRAMES = {
    'wrong size': ({}, {'width': 80, 'height': 60},
                   'image is 64x48 but camera_info is for 80x60', 'size'),
    'zero K': ({}, {'k': [0.0] * 9}, 'camera K is all zeros', 'camera_info'),
    'NaN in K': ({}, {'k': [np.nan, 0, 32, 0, 60, 24, 0, 0, 1]},
                 'K contains NaN', 'camera_info'),
    'NaN in D': ({}, {'d': (0.1, np.nan, 0, 0, 0)}, 'D contains NaN', 'camera_info'),
    'unknown encoding': ({'encoding': 'bayer_rggb8'}, {},
                         "unsupported image encoding 'bayer_rggb8'", 'encoding'),
    'truncated data': ({'data': bytes(100)}, {}, 'needs 9216 bytes; got 100', 'truncated'),
    'empty image': ({'width': 0, 'height': 0, 'data': b''}, {}, 'empty image: 0x0', 'empty'),
}


@pytest.mark.parametrize('case', list(BAD_FRAMES))
def test_bad_frame_gives_its_message_and_no_output_then_the_next_frame_works(types, estimator,
                                                                             case):
    image_kwargs, info_kwargs, message, reason = BAD_FRAMES[case]
    pipeline = FramePipeline(estimator, PipelineConfig(), types)
    with pytest.raises(FrameError, match=message) as info:
        pipeline.process(image_msg(types, **image_kwargs), info_msg(types, **info_kwargs))
    assert info.value.reason == reason
    assert estimator.calls == []  # nothing reached the estimator, nothing to publish
    result = pipeline.process(image_msg(types), info_msg(types))
    assert len(estimator.calls) == 1 and len(result.poses) == 2


def test_camera_info_is_cached_but_a_new_one_is_read(types, estimator):
    pipeline = FramePipeline(estimator, PipelineConfig(), types)
    pipeline.process(image_msg(types), info_msg(types))
    pipeline.process(image_msg(types), info_msg(types))
    assert estimator.calls[0] is estimator.calls[1]
    k = [70.0, 0, WIDTH / 2, 0, 70.0, HEIGHT / 2, 0, 0, 1]
    pipeline.process(image_msg(types), info_msg(types, k=k))
    assert estimator.calls[2].fx == 70.0


def test_compressed_image_and_frame_id_from_camera_info(types, estimator):
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    msg = conversions.rgb_to_compressed(types, rgb, conversions.make_header(types, STAMP_NS, ''),
                                        'png')
    result = FramePipeline(estimator, PipelineConfig(), types).process(msg, info_msg(types))
    assert result.frame_id == FRAME  # the image had none
    bad = types.new('sensor_msgs/msg/CompressedImage', header=msg.header, format='jpeg',
                    data=b'garbage')
    with pytest.raises(FrameError, match='cannot decode compressed image'):
        FramePipeline(estimator, PipelineConfig(), types).process(bad, info_msg(types))


def test_estimator_user_errors_become_frame_errors(types):
    class Refuses(FakeEstimator):
        def __call__(self, image_rgb, camera):
            raise Pose6dError('camera too small for the network')

    with pytest.raises(FrameError, match='camera too small') as info:
        FramePipeline(Refuses([]), PipelineConfig(), types).process(image_msg(types),
                                                                    info_msg(types))
    assert info.value.reason == 'estimator'


@pytest.mark.parametrize('config, kept', [
    (PipelineConfig(min_score=0.0), [('mug', 0.9), ('mug', 0.7), ('box', 0.4)]),
    (PipelineConfig(min_score=0.8), [('mug', 0.9)]),
    (PipelineConfig(min_score=0.0, max_reprojection_error=5.0), [('mug', 0.9), ('box', 0.4)]),
    (PipelineConfig(min_score=0.0, objects=('box',)), [('box', 0.4)]),
    (PipelineConfig(min_score=0.5, objects=('box',)), []),
])
def test_filters(types, estimator, config, kept):
    result = FramePipeline(estimator, config, types).process(image_msg(types), info_msg(types))
    assert [(o.object_name, o.score) for o in result.poses] == kept
    assert len(result.all_poses) == 3


def test_runtime_update_and_bad_settings(types, estimator):
    pipeline = FramePipeline(estimator, PipelineConfig(min_score=0.0), types)
    pipeline.update(objects=['mug'], frame_prefix='robot1/')
    result = pipeline.process(image_msg(types), info_msg(types))
    assert [t.child_frame_id for t in result.transforms()] == ['robot1/mug_0', 'robot1/mug_1']
    bad = {
        'min_score': (1.5, r"min_score must be a number in \[0, 1\], or -1 for the model's "
                           'default; got 1.5'),
        'max_reprojection_error': (-1.0, 'max_reprojection_error must be >= 0'),
        'objects': (['mug', 'teapot'], "unknown object name.*'teapot'.*knows mug, box"),
        'frame_prefix': ('/abs', "frame_prefix '/abs' is not a valid tf2 frame id"),
        'marker_lifetime': (-2.0, 'marker_lifetime must be >= 0'),
    }
    for name, (value, message) in bad.items():
        with pytest.raises(Pose6dError, match=message):
            pipeline.update(**{name: value})
    with pytest.raises(Pose6dError, match='unknown pipeline setting'):
        pipeline.update(min_scor=0.2)
    assert pipeline.config.objects == ('mug',) and pipeline.config.min_score == 0.0
    with pytest.raises(Pose6dError, match="unknown object name.*'cup'"):
        FramePipeline(estimator, PipelineConfig(objects=('cup',)), types)


def test_target_frame_moves_poses_but_not_tf(types):
    R = Rotation.from_euler('x', -90, degrees=True).as_matrix()
    estimator = FakeEstimator([instance('mug', 0.9, t=(0.0, 0.0, 0.5))])
    result = FramePipeline(estimator, PipelineConfig(), types).process(image_msg(types),
                                                                       info_msg(types))
    T_base_cam = Pose(R, [1.0, 0.0, 0.3])
    moved = result.transformed(T_base_cam, 'base_link')
    assert moved.frame_id == 'base_link'
    assert conversions.stamp_to_ns(moved.header.stamp) == STAMP_NS
    position = moved.pose_array().poses[0].position
    np.testing.assert_allclose([position.x, position.y, position.z],
                               R @ [0, 0, 0.5] + [1.0, 0.0, 0.3], atol=1e-12)
    assert moved.detections().detections[0].header.frame_id == 'base_link'
    assert moved.markers().markers[1].header.frame_id == 'base_link'
    tf = moved.transforms()[0]
    assert tf.header.frame_id == FRAME and tf.transform.translation.z == pytest.approx(0.5)
    assert moved.debug_image().header.frame_id == FRAME


def test_debug_overlay_only_when_asked(types, monkeypatch):
    import pose6d_ros.core.geometry.draw as draw

    calls = []
    real = draw.draw_poses
    monkeypatch.setattr(draw, 'draw_poses', lambda *a, **k: calls.append(1) or real(*a, **k))
    estimator = FakeEstimator([instance('mug', 0.9, t=(0.0, 0.0, 0.5))])
    result = FramePipeline(estimator, PipelineConfig(), types).process(image_msg(types),
                                                                       info_msg(types))
    result.pose_array(), result.markers(), result.detections(), result.transforms()
    assert calls == []
    msg = result.debug_image()
    assert calls == [1]
    assert (msg.width, msg.height, msg.encoding) == (WIDTH, HEIGHT, 'rgb8')
    overlay = conversions.image_to_rgb(msg)
    assert (overlay != result.image_rgb).any()  # something was drawn
    assert result.image_rgb[0, 0].tolist() == [0, 0, 0]  # the input is untouched


def test_draw_poses_survives_objects_behind_the_camera(types):
    from pose6d_ros.core.geometry.camera import CameraModel
    from pose6d_ros.core.geometry.draw import draw_poses

    camera = CameraModel.from_intrinsics(60, 60, 32, 24, WIDTH, HEIGHT)
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    behind = instance('box', 0.5, t=(0.0, 0.0, -1.0))
    straddling = instance('box', 0.5, t=(0.0, 0.0, 0.02))
    out = draw_poses(image, [behind, straddling], camera)
    assert out.shape == image.shape and not image.any()


# --- tracking ---------------------------------------------------------------------------------


class ScriptedEstimator(FakeEstimator):
    """Returns script[i] on its i-th call (the last one after that)."""

    def __init__(self, script):
        super().__init__([])
        self.script = script

    def __call__(self, image_rgb, camera):
        super().__call__(image_rgb, camera)
        return list(self.script[min(len(self.calls) - 1, len(self.script) - 1)])


def stamped(types, message, index, period_ns=100_000_000):
    """The message with its header stamp moved to frame `index` of a 10 Hz stream."""
    message.header = conversions.make_header(types, STAMP_NS + index * period_ns,
                                             message.header.frame_id)
    return message


def tracking_config(**values):
    return PipelineConfig(tracking=True, tracking_confirm_hits=1, tracking_confirm_window=1,
                          **values)


def test_tracking_keeps_names_with_objects_not_ranks(types):
    """Two mugs whose scores swap: by rank their names would swap too."""
    left, right = (-0.1, 0.0, 0.5), (0.1, 0.0, 0.5)
    script = [[instance('mug', 0.9, t=left), instance('mug', 0.6, t=right)],
              [instance('mug', 0.6, t=left), instance('mug', 0.9, t=right)]] * 3
    pipeline = FramePipeline(ScriptedEstimator(script),
                             tracking_config(tracking_network_every=1, frame_prefix='cam1/'),
                             types)
    for index in range(len(script)):
        result = pipeline.process(stamped(types, image_msg(types), index),
                                  stamped(types, info_msg(types), index))
        frames = {round(float(t.transform.translation.x), 3): t.child_frame_id
                  for t in result.transforms()}
        assert frames == {-0.1: 'cam1/mug_0', 0.1: 'cam1/mug_1'}, index
        assert [d.id for d in result.detections().detections] == ['mug_0', 'mug_1']
        assert result.network_ran
    # Without tracking the names follow the ranks of each frame.
    plain = FramePipeline(ScriptedEstimator(script[1:2]), PipelineConfig(), types)
    result = plain.process(image_msg(types), info_msg(types))
    assert {round(float(t.transform.translation.x), 3): t.child_frame_id
            for t in result.transforms()} == {0.1: 'mug_0', -0.1: 'mug_1'}


def test_tracking_runs_the_network_every_n_frames_and_stamps_drive_it(types):
    estimator = ScriptedEstimator([[instance('mug', 0.9)]])
    pipeline = FramePipeline(estimator, tracking_config(tracking_network_every=3), types)
    ran = []
    for index in range(7):
        result = pipeline.process(stamped(types, image_msg(types), index),
                                  stamped(types, info_msg(types), index))
        ran.append(result.network_ran)
        assert [p.instance_name for p in result.poses] == ['mug_0']
        assert (len(result.all_poses) > 0) == result.network_ran
        assert (result.inference_s > 0) == result.network_ran
    assert ran == [True, False, False, True, False, False, True]
    assert len(estimator.calls) == 3
    assert pipeline.tracker.frames == 7
    assert pipeline.tracker.tracks[0].filter.stamp == pytest.approx((STAMP_NS + 6e8) / 1e9)


def test_tracking_settings_change_at_run_time(types):
    estimator = ScriptedEstimator([[instance('mug', 0.9)]])
    pipeline = FramePipeline(estimator, tracking_config(tracking_network_every=1), types)
    pipeline.process(image_msg(types), info_msg(types))
    tracker = pipeline.tracker
    with pytest.raises(Pose6dError, match='confirm_hits must be an integer from 1 to '
                                          r'confirm_window \(1\)'):
        pipeline.update(tracking_confirm_hits=2)
    with pytest.raises(Pose6dError, match="tracking_filter is 'kalman'; expected one of "
                                          'constant_velocity, none'):
        pipeline.update(tracking_filter='kalman')
    with pytest.raises(Pose6dError, match='timeout_s must be a number > 0'):
        pipeline.update(tracking_timeout=0.0)
    # The node replaces the config in one store; the tracker keeps its tracks.
    pipeline.config = pipeline.config.with_values(tracking_timeout=5.0, tracking_confirm_window=4)
    result = pipeline.process(stamped(types, image_msg(types), 1),
                              stamped(types, info_msg(types), 1))
    assert pipeline.tracker is tracker and tracker.config.timeout_s == 5.0
    assert [p.track_id for p in result.poses] == [0]
    pipeline.config = pipeline.config.with_values(tracking=False)
    result = pipeline.process(stamped(types, image_msg(types), 2),
                              stamped(types, info_msg(types), 2))
    assert pipeline.tracker is None and result.poses[0].track_id is None


def test_a_failing_estimator_leaves_the_tracker_as_it_was(types):
    class Failing(FakeEstimator):
        def __call__(self, image_rgb, camera):
            if len(self.calls) == 1:
                self.calls.append(camera)
                raise Pose6dError('the network is tired')
            return super().__call__(image_rgb, camera)

    pipeline = FramePipeline(Failing([instance('mug', 0.9)]),
                             tracking_config(tracking_network_every=1), types)
    pipeline.process(image_msg(types), info_msg(types))
    before = (pipeline.tracker.frames, pipeline.tracker.tracks[0].filter.stamp)
    with pytest.raises(FrameError, match='the network is tired'):
        pipeline.process(stamped(types, image_msg(types), 1), stamped(types, info_msg(types), 1))
    assert (pipeline.tracker.frames, pipeline.tracker.tracks[0].filter.stamp) == before
    result = pipeline.process(stamped(types, image_msg(types), 2),
                              stamped(types, info_msg(types), 2))
    assert [p.instance_name for p in result.poses] == ['mug_0']


def test_tracked_covariance_turns_with_the_target_frame(types):
    pipeline = FramePipeline(ScriptedEstimator([[instance('mug', 0.9)]]),
                             tracking_config(tracking_network_every=1), types)
    result = pipeline.process(image_msg(types), info_msg(types))
    R = Rotation.from_euler('x', -90, degrees=True).as_matrix()
    moved = result.transformed(Pose(R, [1.0, 0.0, 0.3]), 'base_link')
    turn = np.kron(np.eye(2), R)
    np.testing.assert_allclose(moved.poses[0].covariance,
                               turn @ result.poses[0].covariance @ turn.T)
    message = moved.detections().detections[0].results[0].pose.covariance
    np.testing.assert_allclose(np.asarray(message).reshape(6, 6), moved.poses[0].covariance)
    assert moved.poses[0].covariance[2, 2] != pytest.approx(result.poses[0].covariance[2, 2])
