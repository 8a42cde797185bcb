"""Fuzzing the per-frame path: any image + camera_info gives a result or a FrameError.

Images (raw and compressed) and camera_infos are drawn with arbitrary encodings, sizes, row
steps, truncated or extended data, big-endian flags, NaN / infinite / zero intrinsics,
distortion vectors of every length under every distortion model name, and sizes that do not
match. `FramePipeline.process` must return a result, whose messages (poses, detections,
markers, TF, the debug overlay) all build, or raise a FrameError; nothing else. The node
keeps running either way (it logs a FrameError as a bad frame). A probing fake estimator
stands behind the pipeline in the long run (it uses the camera as the estimator does); the
bundled model stands there for a few dozen examples.

The suite runs a few hundred examples. For a long run:

    python3 test/test_frame_fuzz.py 100000
"""

import functools
import string
import sys
import types as pytypes

import cv2
from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
import numpy as np

from pose6d_ros.core.geometry.objects import ObjectModel, ObjectSet
from pose6d_ros.core.geometry.poses import box_keypoints
from pose6d_ros.core.geometry.results import ObjectPose
from pose6d_ros.core.inference.bundle import default_model
from pose6d_ros.ros import conversions
from pose6d_ros.ros.conversions import RAW_ENCODINGS, RosbagsTypes
from pose6d_ros.ros.errors import FrameError
from pose6d_ros.ros.pipeline import FramePipeline, load_estimator, PipelineConfig

TYPES = RosbagsTypes.for_distro('jazzy')
if hasattr(cv2, 'setLogLevel'):
    cv2.setLogLevel(0)   # silence OpenCV's own lines about the broken images fed to it
SUITE = settings(max_examples=300, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ENCODINGS = list(RAW_ENCODINGS) + ['bayer_rggb8', '32FC1', 'rgb16', 'RGB8', '', 'bgr8 ']
MODELS = ['plumb_bob', 'rational_polynomial', 'equidistant', 'none', '', 'fisheye', 'PLUMB_BOB']
HUGE = 2 ** 32 - 1


class ProbingEstimator:
    """Checks its inputs, uses the camera the way the estimator does, returns one object."""

    def __init__(self):
        half = np.array([0.03, 0.02, 0.01])
        self.objects = ObjectSet([ObjectModel('box', 1, box_keypoints(-half, half), 0.08)])
        self.device = 'cpu'

    def __call__(self, image_rgb, camera):
        assert image_rgb.dtype == np.uint8 and image_rgb.shape == (camera.height,
                                                                   camera.width, 3)
        corners = np.array([[0, 0], [camera.width - 1, camera.height - 1]], np.float64)
        camera.pixels_to_normalized(corners)          # undistortion, as before PnP
        camera.letterbox(32, 24).input_camera(camera)  # the network input's camera
        t = np.array([0.01, -0.02, 0.4])
        keypoints = camera.project(box_keypoints(-0.01 * np.ones(3), 0.01 * np.ones(3)) + t)
        return [ObjectPose('box', 0, 1, 0.9, keypoints, np.array([1.0, 1.0, 5.0, 5.0]),
                           np.eye(3), t, 0.5, 9, np.array([0.06, 0.04, 0.02]), np.zeros(3))]


def _floats():
    return st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                     st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-300, 1e300]),
                     st.floats(-2.0, 2.0))


# Each frame is a valid one with up to three of these defects drawn on top: a quarter of the
# frames have none (and reach the estimator and the outputs), the rest one to three at once;
# some defects are harmless (padding, a finite P), so about half the frames give results.
IMAGE_DEFECTS = ('encoding', 'size', 'step', 'truncate', 'extend', 'bigendian')
INFO_DEFECTS = ('k_entry', 'k_random', 'd', 'model', 'p', 'info_size', 'wrong_lengths')
COMPRESSED_DEFECTS = ('cut', 'random_bytes', 'format')


@st.composite
def raw_image_fields(draw, width, height, defects):
    """The fields of a sensor_msgs/Image of `width` x `height`, with `defects`."""
    encoding = draw(st.sampled_from(list(RAW_ENCODINGS)))
    if 'encoding' in defects:
        encoding = draw(st.one_of(st.sampled_from(ENCODINGS), st.text(max_size=8)))
    if 'size' in defects:
        width, height = draw(st.sampled_from([(0, height), (width, 0), (0, 0), (HUGE, 2),
                                              (2, HUGE), (HUGE, HUGE), (width + 1, height)]))
    channels, depth = RAW_ENCODINGS.get(encoding, (3, 1))
    row = width * channels * depth
    step = row + draw(st.sampled_from([0, 0, 1, 3, 8]))
    if 'step' in defects:
        step = draw(st.one_of(st.integers(max(0, row - 4), row + 12), st.integers(0, HUGE)))
    size = step * height if step * height < 200_000 else 64
    if 'truncate' in defects:
        size = draw(st.integers(0, max(0, size - 1)))
    if 'extend' in defects:
        size += draw(st.integers(1, 32))
    pattern = draw(st.binary(min_size=1, max_size=64))
    data = (pattern * (size // len(pattern) + 1))[:size]
    bigendian = draw(st.integers(0, 255)) if 'bigendian' in defects else draw(st.integers(0, 1))
    return {'width': width, 'height': height, 'encoding': encoding, 'step': step,
            'data': data, 'is_bigendian': bigendian}


@st.composite
def compressed_data(draw, width, height, defects):
    """(format, bytes) of a JPEG or PNG of `width` x `height` (colour, grey, 16-bit, alpha)."""
    kind = draw(st.sampled_from(['jpg', 'png', 'png16', 'png_alpha', 'gray']))
    pixels = np.frombuffer(draw(st.binary(min_size=width * height * 4,
                                          max_size=width * height * 4)), np.uint8)
    image = pixels[:width * height * 3].reshape(height, width, 3)
    if kind == 'png16':
        image = image.astype(np.uint16) * 257
    elif kind == 'png_alpha':
        image = pixels.reshape(height, width, 4)
    elif kind == 'gray':
        image = image[:, :, 0]
    data = cv2.imencode('.jpg' if kind == 'jpg' else '.png', image)[1].tobytes()
    fmt = 'rgb8; jpeg compressed bgr8' if kind == 'jpg' else 'png'
    if 'cut' in defects:
        data = data[:draw(st.integers(0, len(data) - 1))]
    if 'random_bytes' in defects:
        data = draw(st.binary(max_size=300))
    if 'format' in defects:
        fmt = draw(st.one_of(st.sampled_from(['16UC1; compressedDepth png', '', 'theora']),
                             st.text(max_size=12)))
    return fmt, data


@st.composite
def camera_info(draw, width, height, defects):
    """A CameraInfo for `width` x `height` (or a hand-made one of the wrong shape)."""
    w, h = width, height
    if 'info_size' in defects:
        w, h = draw(st.sampled_from([0, 1, width + 1, HUGE])), draw(st.integers(0, 80))
    fx, fy = draw(st.floats(0.1, 1e4)), draw(st.floats(0.1, 1e4))
    cx, cy = draw(st.floats(-100, 200)), draw(st.floats(-100, 200))
    k = [fx, draw(st.sampled_from([0.0, 0.5])), cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    if 'k_entry' in defects:
        k[draw(st.integers(0, 8))] = draw(_floats())
    if 'k_random' in defects:
        k = draw(st.lists(_floats(), min_size=9, max_size=9))
    model, length = draw(st.sampled_from([('plumb_bob', 5), ('plumb_bob', 4), ('none', 0),
                                          ('rational_polynomial', 8), ('', 0), ('', 12),
                                          ('', 14), ('plumb_bob', 0)]))
    d = draw(st.lists(st.floats(-0.5, 0.5), min_size=length, max_size=length))
    if 'd' in defects:
        d = draw(st.lists(_floats(), max_size=16))
    if 'model' in defects:
        model = draw(st.one_of(st.sampled_from(MODELS), st.text(string.printable, max_size=12)))
    p = [0.0] * 12
    if 'p' in defects:
        p = draw(st.lists(_floats(), min_size=12, max_size=12))
    header = conversions.make_header(TYPES, draw(st.integers(0, 2 ** 62)), 'cam')
    if 'wrong_lengths' in defects:  # a hand-made message: no ROS 2 message class allows it
        if draw(st.booleans()):
            k = draw(st.lists(_floats(), max_size=12))
        p = draw(st.lists(st.one_of(st.floats(-10, 10), _floats()), max_size=14))
        return pytypes.SimpleNamespace(header=header, width=w, height=h,
                                       distortion_model=model, d=d, k=k, p=p)
    return TYPES.new('sensor_msgs/msg/CameraInfo', header=header, width=w, height=h,
                     distortion_model=model, d=d, k=k, p=p)


@st.composite
def frames(draw):
    """(image, camera_info): a valid frame with 0 to 3 defects drawn on top."""
    compressed = draw(st.integers(0, 3)) == 0
    catalogue = (COMPRESSED_DEFECTS if compressed else IMAGE_DEFECTS) + INFO_DEFECTS
    defects = set(draw(st.lists(st.sampled_from(catalogue), min_size=1, max_size=3))) if draw(
        st.integers(0, 3)) else set()
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 30))
    if not compressed and draw(st.booleans()):
        width += width % 2   # the 2-channel YUV encodings need an even width
    header = conversions.make_header(TYPES, 5, draw(st.sampled_from(['cam', 'cam', ''])))
    if compressed:
        fmt, data = draw(compressed_data(width, height, defects))
        image = TYPES.new('sensor_msgs/msg/CompressedImage', header=header, format=fmt,
                          data=data)
    else:
        image = TYPES.new('sensor_msgs/msg/Image', header=header,
                          **draw(raw_image_fields(width, height, defects)))
    return image, draw(camera_info(width, height, defects))


def check_frame(pipeline, image, info):
    """A FrameResult whose every output message builds, or a FrameError; nothing else."""
    try:
        result = pipeline.process(image, info)
    except FrameError as exc:
        assert str(exc) and exc.reason
        return False
    assert result.image_rgb.shape == (result.camera.height, result.camera.width, 3)
    result.pose_array()
    result.detections()
    result.markers()
    result.tf_message()
    result.debug_image()
    return True


PIPELINE = FramePipeline(ProbingEstimator(), PipelineConfig(), TYPES)
STATS = {'examples': 0, 'results': 0}


def one_frame(frame):
    """The fuzz test's body: one drawn (image, camera_info), counted."""
    STATS['examples'] += 1
    STATS['results'] += check_frame(PIPELINE, *frame)


test_every_frame_gives_a_result_or_a_frame_error = SUITE(given(frames())(one_frame))


@SUITE
@given(st.data())
def test_good_frames_give_results_after_bad_ones(data):
    """No state of the pipeline spoils the next frame: a valid frame always gives a result."""
    width, height = data.draw(st.integers(2, 40)), data.draw(st.integers(1, 30))
    bad_image, bad_info = data.draw(frames())
    check_frame(PIPELINE, bad_image, bad_info)
    rgb = np.zeros((height, width, 3), np.uint8)
    header = conversions.make_header(TYPES, 7, 'cam')
    image = conversions.rgb_to_image(TYPES, rgb, header, data.draw(st.sampled_from(
        ['rgb8', 'bgr8', 'mono16', 'bgra8'])), row_padding=data.draw(st.integers(0, 5)),
        bigendian=data.draw(st.booleans()))
    d = data.draw(st.sampled_from([[], [0.0] * 5, [-0.1, 0.01, 0.001, 0.0, 0.0],
                                   [0.1, -0.02, 0.0, 0.0, 0.0, 0.05, 0.0, 0.0]]))
    info = TYPES.new('sensor_msgs/msg/CameraInfo', header=header, width=width, height=height,
                     distortion_model='rational_polynomial' if len(d) == 8 else 'plumb_bob',
                     d=d, k=[50.0, 0, width / 2, 0, 50.0, height / 2, 0, 0, 1])
    assert check_frame(PIPELINE, image, info)


@settings(SUITE, max_examples=40)
@given(frames())
def test_the_bundled_model_behind_the_pipeline_too(frame):
    """The real estimator (letterbox, network, decoding, PnP with D) on the same frames."""
    check_frame(_bundled_pipeline(), *frame)


@functools.cache
def _bundled_pipeline():
    return FramePipeline(load_estimator(default_model(), 'cpu'), PipelineConfig(min_score=0.0),
                         TYPES)


def main(examples):
    """Run the fuzz test for `examples` examples; print how many gave results."""
    runner = settings(SUITE, max_examples=examples, derandomize=False, database=None)(
        given(frames())(one_frame))
    runner()
    print(f'{STATS["examples"]} examples: {STATS["results"]} results, '
          f'{STATS["examples"] - STATS["results"]} FrameErrors, no other exception')


if __name__ == '__main__':
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
