"""CameraModel: construction, validation messages, projection, undistortion, letterbox."""

import json

import cv2
from hypothesis import example, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
import yaml

from pose6d_ros.core.errors import CameraError, Pose6dError
from pose6d_ros.core.geometry.camera import CameraModel, Letterbox

K_VALUES = [612.5, 0.0, 331.25, 0.0, 608.75, 236.5, 0.0, 0.0, 1.0]
D_PLUMB_BOB = [-0.12, 0.045, 0.0012, -0.0008, -0.011]
D_RATIONAL = [0.31, -0.12, 0.0009, -0.0011, 0.02, 0.65, -0.09, 0.04]
D_STRONG = [-0.3, 0.1, 0.001, 0.002, -0.02]
P_VALUES = [600.0, 0.0, 330.0, 0.0, 0.0, 600.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
PROPERTY = settings(max_examples=60, deadline=None)


def make_camera(D=None, width=640, height=480, fx=612.5, fy=608.75, cx=331.25, cy=236.5):
    return CameraModel.from_intrinsics(fx, fy, cx, cy, width, height, D=D)


def random_points_in_view(camera, count, rng, depth=(0.3, 2.0)):
    """Camera-frame points whose pinhole projection lies inside the image."""
    pixels = rng.uniform([0.0, 0.0], [camera.width - 1, camera.height - 1], (count, 2))
    z = rng.uniform(*depth, count)
    x = (pixels[:, 0] - camera.cx) / camera.fx * z
    y = (pixels[:, 1] - camera.cy) / camera.fy * z
    return np.stack([x, y, z], axis=1)


def pixel_grid(width, height, step=8):
    u, v = np.meshgrid(np.arange(0, width, step, dtype=np.float64),
                       np.arange(0, height, step, dtype=np.float64))
    corners = [[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]]
    return np.concatenate([np.stack([u.ravel(), v.ravel()], axis=1), corners])


def gaussian_blob(width, height, centre, sigma=3.0):
    x = np.arange(width, dtype=np.float64)
    y = np.arange(height, dtype=np.float64)
    gx = np.exp(-(x - centre[0]) ** 2 / (2 * sigma ** 2))
    gy = np.exp(-(y - centre[1]) ** 2 / (2 * sigma ** 2))
    return (gy[:, None] * gx[None, :]).astype(np.float32)


def centroid(image):
    image = np.asarray(image, dtype=np.float64)
    y, x = np.mgrid[:image.shape[0], :image.shape[1]]
    return np.array([(image * x).sum(), (image * y).sum()]) / image.sum()


# --- construction -----------------------------------------------------------------------------


def test_from_camera_info_plain_values():
    camera = CameraModel.from_camera_info(K_VALUES, D_PLUMB_BOB, 640, 480, 'plumb_bob', P_VALUES)
    assert np.array_equal(camera.K, np.reshape(K_VALUES, (3, 3)))
    assert np.array_equal(camera.D, D_PLUMB_BOB)
    assert camera.size == (640, 480)
    assert (camera.fx, camera.fy, camera.cx, camera.cy) == (612.5, 608.75, 331.25, 236.5)
    assert camera.distortion_model == 'plumb_bob'
    assert camera.has_distortion
    assert np.array_equal(camera.P, np.reshape(P_VALUES, (3, 4)))


def test_from_camera_info_rational_polynomial_and_empty_fields():
    camera = CameraModel.from_camera_info(K_VALUES, D_RATIONAL, 1280, 720,
                                          'rational_polynomial', [0.0] * 12)
    assert camera.distortion_model == 'rational_polynomial'
    assert camera.D.size == 8
    assert camera.P is None  # an all-zero P (unset in CameraInfo) means no P

    plain = CameraModel.from_camera_info(K_VALUES, [0.0] * 5, 640, 480, '')
    assert not plain.has_distortion
    assert plain.D.size == 0 and plain.distortion_model == 'none'


def test_a_projection_matrix_of_the_wrong_length_is_a_camera_error():
    with pytest.raises(CameraError, match='P must have 12 values'):   # found by fuzzing
        CameraModel.from_camera_info(K_VALUES, D_PLUMB_BOB, 640, 480, 'plumb_bob', [1.0] * 14)


def test_camera_arrays_are_read_only():
    camera = make_camera(D_PLUMB_BOB)
    with pytest.raises(ValueError):
        camera.K[0, 0] = 1.0
    with pytest.raises(ValueError):
        camera.D[0] = 1.0


def test_load_ros_calibration_yaml(tmp_path):
    calibration = {
        'image_width': 640,
        'image_height': 480,
        'camera_name': 'rgb',
        'camera_matrix': {'rows': 3, 'cols': 3, 'data': K_VALUES},
        'distortion_model': 'plumb_bob',
        'distortion_coefficients': {'rows': 1, 'cols': 5, 'data': D_PLUMB_BOB},
        'rectification_matrix': {'rows': 3, 'cols': 3, 'data': np.eye(3).ravel().tolist()},
        'projection_matrix': {'rows': 3, 'cols': 4, 'data': P_VALUES},
    }
    path = tmp_path / 'rgb.yaml'
    path.write_text(yaml.safe_dump(calibration))
    camera = CameraModel.load(path)
    assert camera == CameraModel.from_camera_info(K_VALUES, D_PLUMB_BOB, 640, 480)
    assert camera.distortion_model == 'plumb_bob'
    assert np.array_equal(camera.P, np.reshape(P_VALUES, (3, 4)))


def test_load_bop_camera_json(tmp_path):
    path = tmp_path / 'camera.json'
    path.write_text(json.dumps({'cx': 325.2611, 'cy': 242.04899, 'depth_scale': 0.1,
                                'fx': 572.4114, 'fy': 573.57043, 'height': 480, 'width': 640}))
    camera = CameraModel.load(path)
    assert (camera.fx, camera.fy, camera.cx, camera.cy) == (572.4114, 573.57043, 325.2611,
                                                            242.04899)
    assert camera.size == (640, 480)
    assert not camera.has_distortion


@pytest.mark.parametrize('D, model', [(D_PLUMB_BOB, 'plumb_bob'),
                                      (D_RATIONAL, 'rational_polynomial'),
                                      ([], None)])
def test_to_dict_from_dict_round_trip(tmp_path, D, model):
    camera = CameraModel.from_camera_info(K_VALUES, D, 800, 600, model, P_VALUES)
    again = CameraModel.from_dict(camera.to_dict())
    assert again == camera
    assert again.distortion_model == camera.distortion_model
    assert np.array_equal(again.P, camera.P)
    path = tmp_path / 'camera.yaml'
    path.write_text(yaml.safe_dump(camera.to_dict()))
    assert CameraModel.load(path) == camera


# --- validation -------------------------------------------------------------------------------


def k_with(**entries):
    K = np.reshape(K_VALUES, (3, 3)).copy()
    index = {'fx': (0, 0), 'fy': (1, 1), 'cx': (0, 2), 'cy': (1, 2), 'k10': (1, 0),
             'k20': (2, 0), 'k21': (2, 1), 'k22': (2, 2)}
    for name, value in entries.items():
        K[index[name]] = value
    return K.ravel().tolist()


@pytest.mark.parametrize('k, match', [
    ([0.0] * 9, r'camera K is all zeros \(uncalibrated camera\?\)'),
    (k_with(fx=-600.0), r'positive focal lengths; got fx=-600, fy=608\.75'),
    (k_with(fy=0.0), r'positive focal lengths; got fx=612\.5, fy=0'),
    (k_with(fx=0.0, fy=0.0), r'positive focal lengths'),
    # fx, fy > 0 but the last row is zero: K has no inverse
    (k_with(k22=0.0), r'upper-triangular with last row \[0, 0, 1\]'),
    (k_with(k20=0.5), r'upper-triangular with last row \[0, 0, 1\]'),
    (k_with(k10=3.0), r'upper-triangular'),
    # positive but vanishing focal lengths: det(K) = fx * fy ~ 0
    (k_with(fx=1e-7, fy=1e-7), r'camera K is singular'),
    (k_with(cx=float('nan')), r'camera K contains NaN or infinite values'),
    (k_with(fy=float('inf')), r'camera K contains NaN or infinite values'),
    ([600.0, 0.0, 320.0, 0.0, 600.0, 240.0, 0.0, 0.0], r'K must have 9 values .*got 8'),
])
def test_bad_K_is_rejected(k, match):
    with pytest.raises(CameraError, match=match):
        CameraModel.from_camera_info(k, [], 640, 480)


def test_bad_K_shape_in_constructor():
    with pytest.raises(CameraError, match=r'3x3 matrix; got shape \(2, 3\)'):
        CameraModel(np.ones((2, 3)), None, 640, 480)
    with pytest.raises(CameraError, match=r'3x3 matrix of numbers'):
        CameraModel([['a', 'b', 'c']] * 3, None, 640, 480)


@pytest.mark.parametrize('d, model, match', [
    ([-0.1, float('nan'), 0.0, 0.0, 0.0], 'plumb_bob', r'camera D contains NaN'),
    ([0.1, 0.0, 0.0, 0.0, 0.0, 0.01], 'plumb_bob',
     r"'plumb_bob' takes 4 or 5 coefficients; got 6"),
    (D_PLUMB_BOB, 'rational_polynomial', r"'rational_polynomial' takes 8 coefficients; got 5"),
    (D_PLUMB_BOB, 'none', r"'none' takes 0 coefficients; got 5"),
    ([0.1, 0.01, 0.0], None, r'D must have 0, 4, 5, 8, 12 or 14 coefficients; got 3'),
    ([0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], '', r'coefficients; got 7'),
    ([0.1, 0.01, 0.0, 0.0], 'equidistant',
     r"distortion model 'equidistant' is not supported; expected one of plumb_bob, "
     r'rational_polynomial, none'),
    ([0.5, 'x'], 'plumb_bob', r'camera D must be a list of numbers'),
])
def test_bad_D_is_rejected(d, model, match):
    with pytest.raises(CameraError, match=match):
        CameraModel.from_camera_info(K_VALUES, d, 640, 480, model)


@pytest.mark.parametrize('width, height', [
    (0, 480), (640, 0), (-640, 480), (640, -1), (640.5, 480), (640, 479.9), ('wide', 480),
    ('640', 480), (True, 480), (640, None), (None, 480), (float('nan'), 480), (float('inf'), 480),
])
def test_bad_image_size_is_rejected(width, height):
    with pytest.raises(CameraError, match=r'camera image width and height must be positive '
                                          r'integers; got width='):
        CameraModel.from_camera_info(K_VALUES, [], width, height)


def test_integral_float_size_is_accepted():
    assert CameraModel.from_camera_info(K_VALUES, [], 640.0, 480.0).size == (640, 480)


def test_missing_camera_file(tmp_path):
    with pytest.raises(CameraError, match=r'camera file not found: .*nope\.yaml'):
        CameraModel.load(tmp_path / 'nope.yaml')


def test_yaml_without_needed_keys(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump({'fx': 600.0, 'fy': 600.0, 'image_size': [640, 480]}))
    with pytest.raises(CameraError, match=r'bad\.yaml: camera mapping must be a ROS calibration '
                                          r'.* missing cx, cy, width, height$'):
        CameraModel.load(path)


def test_ros_yaml_without_image_size(tmp_path):
    path = tmp_path / 'nosize.yaml'
    path.write_text(yaml.safe_dump({'camera_matrix': {'rows': 3, 'cols': 3, 'data': K_VALUES}}))
    with pytest.raises(CameraError, match=r'nosize\.yaml: camera image width and height must be '
                                          r'positive integers; got width=0, height=0'):
        CameraModel.load(path)


def test_camera_file_that_is_not_a_mapping_or_not_parseable(tmp_path):
    listing = tmp_path / 'list.yaml'
    listing.write_text('- 1\n- 2\n')
    with pytest.raises(CameraError, match=r'must hold a mapping; got list'):
        CameraModel.load(listing)
    broken = tmp_path / 'broken.json'
    broken.write_text('{"fx": 600,')
    with pytest.raises(CameraError, match=r'cannot parse camera file .*broken\.json'):
        CameraModel.load(broken)


def test_camera_error_is_a_pose6d_error():
    assert issubclass(CameraError, Pose6dError)
    assert issubclass(CameraError, ValueError)


# --- projection -------------------------------------------------------------------------------


def test_points_at_or_behind_the_camera_project_to_nan():
    camera = make_camera(D_PLUMB_BOB)
    pixels = camera.project([[0.1, 0.0, -1.0], [0.1, 0.2, 0.0], [0.0, 0.0, 1.0]])
    assert np.isnan(pixels[:2]).all()
    assert np.allclose(pixels[2], [camera.cx, camera.cy], atol=1e-12)


def test_projection_without_distortion_is_pinhole():
    K = np.array([[612.5, 0.75, 331.25], [0.0, 608.75, 236.5], [0.0, 0.0, 1.0]])  # with skew
    camera = CameraModel(K, None, 640, 480)
    points = random_points_in_view(camera, 200, np.random.default_rng(0))
    expected = (points / points[:, 2:]) @ K.T
    assert np.allclose(camera.project(points), expected[:, :2], rtol=0, atol=1e-9)


@pytest.mark.parametrize('D, model', [(D_PLUMB_BOB, 'plumb_bob'),
                                      (D_PLUMB_BOB[:4], 'plumb_bob'),
                                      (D_STRONG, 'plumb_bob'),
                                      (D_RATIONAL, 'rational_polynomial')])
def test_projection_with_distortion_matches_opencv(D, model):
    camera = CameraModel.from_camera_info(K_VALUES, D, 640, 480, model)
    points = random_points_in_view(camera, 300, np.random.default_rng(1))
    expected, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), camera.K,
                                    np.asarray(D, dtype=np.float64))
    assert np.allclose(camera.project(points), expected.reshape(-1, 2), rtol=0, atol=1e-8)
    assert not np.allclose(camera.project(points), make_camera().project(points), atol=0.5)


# --- undistortion -----------------------------------------------------------------------------


@pytest.mark.parametrize('D, model', [(D_STRONG, 'plumb_bob'),
                                      (D_RATIONAL, 'rational_polynomial')])
def test_undistort_then_distort_returns_every_pixel(D, model):
    camera = CameraModel.from_camera_info(K_VALUES, D, 640, 480, model)
    pixels = pixel_grid(640, 480)
    back = camera.normalized_to_pixels(camera.pixels_to_normalized(pixels))
    assert np.abs(back - pixels).max() < 1e-6


def test_pixels_to_normalized_recovers_the_ray():
    camera = make_camera(D_STRONG)
    points = random_points_in_view(camera, 200, np.random.default_rng(2))
    pixels = camera.project(points)
    inside = ((pixels >= 0) & (pixels <= [camera.width - 1, camera.height - 1])).all(axis=1)
    assert inside.sum() > 100
    rays = camera.pixels_to_normalized(pixels[inside])
    assert np.allclose(rays, points[inside, :2] / points[inside, 2:], rtol=0, atol=1e-9)


def test_undistort_points_gives_the_pinhole_pixels():
    camera = make_camera(D_STRONG)
    pinhole = make_camera()
    points = random_points_in_view(camera, 100, np.random.default_rng(3), depth=(0.5, 1.0))
    points[:, :2] *= 0.8  # keep the distorted pixels well inside the image
    ideal = camera.undistort_points(camera.project(points))
    assert np.allclose(ideal, pinhole.project(points), rtol=0, atol=1e-6)


def test_undistort_points_without_distortion_is_identity():
    camera = CameraModel(np.array([[500.0, 1.5, 300.0], [0.0, 510.0, 250.0], [0, 0, 1]]),
                         None, 640, 480)
    pixels = pixel_grid(640, 480, step=16) + 0.37
    assert np.allclose(camera.undistort_points(pixels), pixels, rtol=0, atol=1e-9)
    assert camera.pixels_to_normalized(np.zeros((0, 2))).shape == (0, 2)


# --- letterbox and resize ---------------------------------------------------------------------


@pytest.mark.parametrize('source, network, resized, pad', [
    ((640, 480), (416, 416), (416, 312), (0, 52)),
    ((480, 640), (320, 256), (192, 256), (64, 0)),
    ((640, 480), (640, 480), (640, 480), (0, 0)),
])
def test_letterbox_fit(source, network, resized, pad):
    letterbox = Letterbox.fit(*source, *network)
    assert (letterbox.resized_width, letterbox.resized_height) == resized
    assert (letterbox.pad_x, letterbox.pad_y) == pad
    assert make_camera(width=source[0], height=source[1]).letterbox(*network) == letterbox


@pytest.mark.parametrize('source, network', [((640, 480), (416, 416)),
                                             ((480, 640), (320, 256))])
def test_letterbox_round_trip_is_exact(source, network):
    letterbox = Letterbox.fit(*source, *network)
    pixels = np.concatenate([pixel_grid(*source, step=7) + 0.123,
                             [[-0.5, -0.5], [source[0] - 0.5, source[1] - 0.5]]])
    assert np.allclose(letterbox.to_camera(letterbox.to_input(pixels)), pixels,
                       rtol=0, atol=1e-9)
    # The outer edges of the source image land on the edges of the resized region.
    edges = letterbox.to_input([[-0.5, -0.5], [source[0] - 0.5, source[1] - 0.5]])
    assert np.allclose(edges, [[letterbox.pad_x - 0.5, letterbox.pad_y - 0.5],
                               [letterbox.pad_x + letterbox.resized_width - 0.5,
                                letterbox.pad_y + letterbox.resized_height - 0.5]])


@pytest.mark.parametrize('source, network', [((640, 480), (416, 416)),
                                             ((480, 640), (320, 256)),
                                             ((640, 480), (1024, 1024))])
@pytest.mark.parametrize('centre', [(123.37, 201.81), (400.5, 77.25), (301.1, 290.9)])
def test_letterbox_mapping_agrees_with_the_pixels(source, network, centre):
    letterbox = Letterbox.fit(*source, *network)
    image = gaussian_blob(*source, centre)
    network_image = letterbox.apply(image)
    assert network_image.shape == (network[1], network[0])
    assert np.abs(centroid(network_image) - letterbox.to_input(np.array(centre))).max() < 0.05


def test_letterbox_apply_pads_and_keeps_channels():
    letterbox = Letterbox.fit(640, 480, 416, 416)
    image = np.full((480, 640, 3), 200, dtype=np.uint8)
    out = letterbox.apply(image, pad_value=114)
    assert out.shape == (416, 416, 3) and out.dtype == np.uint8
    assert (out[:52] == 114).all() and (out[52 + 312:] == 114).all()
    assert (out[52:52 + 312] == 200).all()


def test_letterbox_apply_rejects_wrong_image_size():
    letterbox = Letterbox.fit(640, 480, 416, 416)
    with pytest.raises(ValueError, match=r'image is 480x640, letterbox expects 640x480'):
        letterbox.apply(np.zeros((640, 480), dtype=np.uint8))


def test_letterbox_rejects_bad_sizes():
    with pytest.raises(CameraError, match=r'network input width and height must be positive'):
        Letterbox.fit(640, 480, 0, 416)
    with pytest.raises(CameraError, match=r'source image width and height must be positive'):
        Letterbox.fit(640, -480, 416, 416)


@pytest.mark.parametrize('network', [(416, 416), (320, 256), (1024, 600)])
def test_input_camera_projects_like_the_letterbox(network):
    camera = make_camera(D_PLUMB_BOB, cx=351.7, cy=221.3)  # principal point off-centre
    letterbox = camera.letterbox(*network)
    input_camera = letterbox.input_camera(camera)
    assert input_camera.size == network
    assert np.array_equal(input_camera.D, camera.D)
    points = random_points_in_view(camera, 200, np.random.default_rng(4))
    assert np.allclose(input_camera.project(points), letterbox.to_input(camera.project(points)),
                       rtol=0, atol=1e-9)


@pytest.mark.parametrize('size', [(320, 240), (416, 312), (1280, 960), (500, 200)])
def test_resized_camera_projects_like_cv2_resize(size):
    camera = make_camera(D_PLUMB_BOB, cx=351.7, cy=221.3)
    resized = camera.resized(*size)
    assert resized.size == size
    points = random_points_in_view(camera, 100, np.random.default_rng(5))
    scale = np.array(size) / camera.size
    expected = (camera.project(points) + 0.5) * scale - 0.5
    assert np.allclose(resized.project(points), expected, rtol=0, atol=1e-9)
    # and the pixels agree: a blob drawn at a projection lands at the resized projection
    point = np.array([[0.031, -0.047, 0.8]])
    image = gaussian_blob(640, 480, camera.project(point)[0])
    blob = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    assert np.abs(centroid(blob) - resized.project(point)[0]).max() < 0.05


# --- properties -------------------------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=4000)
fractions = st.floats(min_value=-0.1, max_value=1.1, allow_nan=False)


@PROPERTY
@given(sizes, sizes, st.integers(1, 2000), st.integers(1, 2000),
       st.lists(st.tuples(fractions, fractions), min_size=1, max_size=20))
def test_letterbox_round_trip_property(source_w, source_h, input_w, input_h, fractions_xy):
    letterbox = Letterbox.fit(source_w, source_h, input_w, input_h)
    assert 1 <= letterbox.resized_width <= input_w and 1 <= letterbox.resized_height <= input_h
    assert letterbox.pad_x >= 0 and letterbox.pad_y >= 0
    assert (letterbox.resized_width == input_w) or (letterbox.resized_height == input_h)
    pixels = np.array(fractions_xy) * [source_w, source_h] - 0.5
    back = letterbox.to_camera(letterbox.to_input(pixels))
    assert np.allclose(back, pixels, rtol=1e-9, atol=1e-6)
    # pixels inside the source image land inside the network input
    inside = letterbox.to_input(np.clip(pixels, -0.5, [source_w - 0.5, source_h - 0.5]))
    assert (inside >= -0.5 - 1e-9).all()
    assert (inside <= np.array([input_w, input_h]) - 0.5 + 1e-9).all()


@PROPERTY
@given(k1=st.floats(-0.2, 0.2), k2=st.floats(-0.05, 0.05), p1=st.floats(-2e-3, 2e-3),
       p2=st.floats(-2e-3, 2e-3), k3=st.floats(-0.01, 0.01),
       cx=st.floats(280.0, 360.0), cy=st.floats(200.0, 280.0),
       fractions_xy=st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
                             min_size=1, max_size=30))
@example(k1=-0.19921875, k2=-0.046875, p1=0.0, p2=0.0, k3=0.0, cx=340.0, cy=256.0,
         fractions_xy=[(0.0, 0.0)])  # slow convergence at a corner of strong barrel distortion
def test_normalized_pixels_round_trip_property(k1, k2, p1, p2, k3, cx, cy, fractions_xy):
    camera = make_camera([k1, k2, p1, p2, k3], cx=cx, cy=cy)
    pixels = np.array(fractions_xy) * [camera.width - 1, camera.height - 1]
    back = camera.normalized_to_pixels(camera.pixels_to_normalized(pixels))
    assert np.abs(back - pixels).max() < 1e-6
