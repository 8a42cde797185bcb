"""`pose6d calibrate`: the target, intrinsics from rendered views within 1%, the refusals.

The views are pictures of the chessboard as a camera with a known K and lens distortion
takes them: for every pixel of the (distorted) image, the ray through it is undistorted and
met with the board's plane, and the board's raster is sampled there (at twice the
resolution, then averaged down, as a sensor integrates light).
"""

import re

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
import yaml

from pose6d_ros.core.errors import CalibrationError, CameraError
from pose6d_ros.core.geometry import calibration
from pose6d_ros.core.geometry.calibration import (
    calibrate,
    CalibrationLimits,
    Chessboard,
    find_corners,
    ros_calibration_yaml,
    View,
)
from pose6d_ros.core.geometry.camera import camera_from_field_of_view, CameraModel
from pose6d_ros.tools import calibrate as tool
from pose6d_ros.tools import cli

BOARD = Chessboard(9, 6, 0.025)
SIZE = (640, 480)
K_TRUE = np.array([[600.0, 0.0, 322.0], [0.0, 605.0, 238.5], [0.0, 0.0, 1.0]])
D_TRUE = np.array([-0.25, 0.08, 0.001, -0.0015, 0.0])
# Where the board's centre goes (fractions of the half image from the centre) and how it is
# turned (degrees about x and y): every part of the image, a dozen tilts.
PLACES = [(-1, -1, 25, -20), (0, -1, -30, 0), (1, -1, 20, 25), (-1, 0, 0, 30), (0, 0, 0, 0),
          (1, 0, 5, -35), (-1, 1, -25, 20), (0, 1, 30, 5), (1, 1, -20, -25), (-0.5, -0.5, 40, 0),
          (0.5, 0.5, 0, 40), (0.5, -0.5, -35, -15), (-0.5, 0.5, 15, -30), (0, 0, -40, 10)]
# The same places seen squarely: no tilt at all.
SQUARE_ON = [(x, y, 0, 0) for x, y, _, _ in PLACES[:10]]


def _undistorted_rays(K, D, width, height, step=4):
    """Normalised ray (x, y) of every pixel centre: exact on a coarse grid, interpolated."""
    u = np.arange(0, width + step, step, dtype=np.float64)
    v = np.arange(0, height + step, step, dtype=np.float64)
    grid = np.stack(np.meshgrid(u, v), axis=-1).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-12)
    if hasattr(cv2, 'undistortPointsIter'):
        xy = cv2.undistortPointsIter(grid, K, D, None, None, criteria)
    else:
        xy = cv2.undistortPoints(grid, K, D, criteria=criteria)
    xy = xy.reshape(len(v), len(u), 2).astype(np.float32)
    # node (i, j) of the coarse grid is pixel (i step, j step)
    map_u, map_v = np.meshgrid(np.arange(width, dtype=np.float32) / step,
                               np.arange(height, dtype=np.float32) / step)
    return cv2.remap(xy, map_u, map_v, cv2.INTER_LINEAR)


def render_view(R, t, K=K_TRUE, D=D_TRUE, size=SIZE, supersample=2, px_per_square=60):
    """The grey image of the board at pose (R, t) (board -> camera) through K and D."""
    width, height = size
    s = supersample
    K_s = K.copy()
    K_s[:2] *= s
    K_s[:2, 2] += 0.5 * s - 0.5   # pixel-centre convention
    rays = _undistorted_rays(K_s, D, width * s, height * s)
    H_inv = np.linalg.inv(np.column_stack([R[:, 0], R[:, 1], t]))
    board = (np.concatenate([rays, np.ones(rays.shape[:2] + (1,), np.float32)], axis=-1)
             @ H_inv.T.astype(np.float32))
    X, Y, w = board[..., 0] / board[..., 2], board[..., 1] / board[..., 2], board[..., 2]
    margin = 1
    first = (1 + margin) * px_per_square - 0.5
    map_x = (X / BOARD.square * px_per_square + first).astype(np.float32)
    map_y = (Y / BOARD.square * px_per_square + first).astype(np.float32)
    map_x[w <= 0] = -1e6
    raster = BOARD.raster(px_per_square, margin)
    image = cv2.remap(raster, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                      borderValue=150)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def board_pose(place, distance=0.42, K=K_TRUE, D=D_TRUE, size=SIZE):
    """(R, t) putting the board's centre at `place` and turning it, whole board in view."""
    x, y, tilt_x, tilt_y = place
    R = Rotation.from_euler('xyz', [tilt_x, tilt_y, 8.0 * x * y], degrees=True).as_matrix()
    camera = CameraModel(K, D, *size)
    across, down = BOARD.squares
    outline = np.array([[-1, -1, 0], [across - 1, -1, 0], [-1, down - 1, 0],
                        [across - 1, down - 1, 0]], np.float64) * BOARD.square
    centre = np.array([(BOARD.columns - 1) / 2, (BOARD.rows - 1) / 2, 0.0]) * BOARD.square
    for shrink in np.linspace(1.0, 0.0, 41):
        pixel = np.array([size[0] / 2 * (1 + 0.72 * shrink * x),
                          size[1] / 2 * (1 + 0.72 * shrink * y)])
        ray = camera.pixels_to_normalized(pixel[None])[0]
        t = np.array([ray[0], ray[1], 1.0]) * distance - R @ centre
        corners = camera.project(outline @ R.T + t)
        if (np.isfinite(corners).all() and corners.min() > 4
                and (corners[:, 0] < size[0] - 5).all() and (corners[:, 1] < size[1] - 5).all()):
            return R, t
    raise AssertionError(f'no pose puts the whole board in view for {place}')


def rendered(places, **kwargs):
    return [render_view(*board_pose(place, **kwargs)) for place in places]


@pytest.fixture(scope='module')
def views():
    """14 rendered pictures of the board from every part of the image, tilted."""
    return rendered(PLACES)


def write_images(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f'view_{i:02d}.png'), image)
    return folder


def assert_within_one_percent(camera):
    for name, truth in (('fx', K_TRUE[0, 0]), ('fy', K_TRUE[1, 1]), ('cx', K_TRUE[0, 2]),
                        ('cy', K_TRUE[1, 2])):
        assert getattr(camera, name) == pytest.approx(truth, rel=0.01), name


# --- the whole command ----------------------------------------------------------------------


def test_calibrate_recovers_the_intrinsics_within_one_percent(views, tmp_path, capsys):
    folder = write_images(tmp_path / 'shots', views)
    out = tmp_path / 'webcam.yaml'
    assert cli.main(['calibrate', '--images', str(folder), '--out', str(out),
                     '--camera-name', 'webcam']) == 0
    printed = capsys.readouterr().out
    assert 'RMS reprojection error' in printed and f'file://{out.resolve()}' in printed
    camera = CameraModel.load(out)
    assert camera.size == SIZE
    assert_within_one_percent(camera)
    assert camera.D[0] == pytest.approx(D_TRUE[0], abs=0.02)    # k1
    assert camera.D[1] == pytest.approx(D_TRUE[1], abs=0.05)    # k2
    assert camera.distortion_model == 'plumb_bob' and camera.D[4] == 0.0   # k3 fixed
    text = out.read_text()
    rms = float(re.search(r'^# RMS reprojection error ([0-9.]+) px over 14 views', text,
                          re.M)[1])
    assert 0.0 < rms < 0.5
    data = yaml.safe_load(text)
    assert data['camera_name'] == 'webcam'
    assert set(data) == {'image_width', 'image_height', 'camera_name', 'camera_matrix',
                         'distortion_model', 'distortion_coefficients',
                         'rectification_matrix', 'projection_matrix'}
    # The undistorted image's camera (P) has the K of the same lens, within a few percent.
    assert camera.P[0, 0] == pytest.approx(K_TRUE[0, 0], rel=0.1)
    assert cli.main(['calibrate', '--images', str(folder), '--out', str(out)]) == 1
    assert '--force' in capsys.readouterr().err


def test_calibrate_from_a_video_keeps_the_views_where_the_board_is_still(
        views, tmp_path, capsys):
    path = tmp_path / 'board.avi'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 10.0, SIZE)
    assert writer.isOpened(), 'this OpenCV cannot write MJPG AVI files'
    for image in views:
        for _ in range(4):   # held still for 0.4 s
            writer.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    writer.release()
    out = tmp_path / 'from_video.yaml'
    assert cli.main(['calibrate', '--video', str(path), '--out', str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count('view ') == len(views)     # each still view kept once
    assert_within_one_percent(CameraModel.load(out))


# --- refusals -------------------------------------------------------------------------------


def _refused(capsys, args):
    assert cli.main(['calibrate', *args]) == 1
    err = capsys.readouterr().err.splitlines()   # progress lines, then the one error line
    assert err[-1].startswith('pose6d: error: ') and 'error' not in ' '.join(err[:-1]), err
    return err[-1]


def test_too_few_views_are_refused_with_what_to_do(views, tmp_path, capsys):
    folder = write_images(tmp_path / 'few', views[:5])
    cv2.imwrite(str(folder / 'blank.png'), np.full(SIZE[::-1], 200, np.uint8))
    out = tmp_path / 'cam.yaml'
    err = _refused(capsys, ['--images', str(folder), '--out', str(out)])
    assert 'only 5 view(s)' in err and 'blank.png' in err and 'at least 10' in err
    assert 'take more pictures' in err
    assert not out.exists()
    # the limit is the user's to lower (these five views reach every part of the image)
    assert cli.main(['calibrate', '--images', str(folder), '--out', str(out),
                     '--min-views', '5']) == 0
    assert CameraModel.load(out).size == SIZE


def test_views_that_miss_parts_of_the_image_are_refused(tmp_path, capsys):
    centred = rendered([(0.2 * x, 0.2 * y, a, b) for x, y, a, b in PLACES[:11]], distance=1.2)
    err = _refused(capsys, ['--images', str(write_images(tmp_path / 'c', centred)),
                            '--out', str(tmp_path / 'cam.yaml')])
    assert 'never the top-left' in err and 'bottom-right' in err
    assert 'near the edges and in the corners' in err


def test_views_without_tilt_are_refused(tmp_path, capsys):
    err = _refused(capsys, ['--images', str(write_images(tmp_path / 's', rendered(SQUARE_ON))),
                            '--out', str(tmp_path / 'cam.yaml')])
    assert 'tilted by 20 degrees' in err and 'tilt the board' in err


def test_a_high_reprojection_error_is_refused_naming_the_worst_views(views):
    rng = np.random.default_rng(1)
    found = [View(f'view_{i:02d}.png', find_corners(image, BOARD))
             for i, image in enumerate(views)]
    noisy = [View(v.name, v.corners + (rng.normal(0, 3.0, v.corners.shape) if i == 3 else 0))
             for i, v in enumerate(found)]
    with pytest.raises(CalibrationError) as refused:
        calibrate(noisy, BOARD, SIZE, CalibrationLimits(max_rms_px=0.5))
    message = str(refused.value)
    assert 'RMS reprojection error' in message and 'view_03.png' in message
    assert '\n' not in message
    result = calibrate(found, BOARD, SIZE)   # the clean views pass
    assert result.rms_px < 0.5 and len(result.view_names) == len(views)
    assert max(result.tilts_deg) > 30


def test_a_bad_board_or_option_is_refused():
    with pytest.raises(CalibrationError, match='different counts'):
        Chessboard(7, 7, 0.03)
    with pytest.raises(CalibrationError, match='metres'):
        Chessboard(9, 6, 25.0)
    with pytest.raises(CalibrationError, match='integer >= 3'):
        Chessboard(2, 6, 0.02)
    with pytest.raises(CalibrationError, match='k_coefficients'):
        calibrate([], BOARD, SIZE, k_coefficients=4)
    with pytest.raises(CalibrationError, match='letters, digits'):
        calibration.check_camera_name('my camera')


# --- the file ---------------------------------------------------------------------------------


@pytest.mark.parametrize('D, model', [
    ([-0.25, 0.08, 0.001, -0.0015, 0.01], 'plumb_bob'),
    ([0.31, -0.12, 0.0009, -0.0011, 0.02, 0.65, -0.09, 0.04], 'rational_polynomial'),
    ([], None),
])
def test_the_ros_calibration_yaml_round_trips(tmp_path, D, model):
    P = np.array([[590.5, 0, 320.25, 0], [0, 598.125, 240.0, 0], [0, 0, 1, 0]])
    camera = CameraModel(K_TRUE / 3 * 3, D, 640, 480, model, P)
    path = tmp_path / 'cam.yaml'
    path.write_text(ros_calibration_yaml(camera, 'cam_1', ['RMS 0.1 px', 'two\nlines']))
    back = CameraModel.load(path)
    assert back == camera and back.distortion_model == camera.distortion_model
    np.testing.assert_array_equal(back.P, P)
    data = yaml.safe_load(path.read_text())
    assert data['rectification_matrix'] == {'rows': 3, 'cols': 3,
                                            'data': np.eye(3).ravel().tolist()}
    assert data['distortion_coefficients']['cols'] == len(D or [0] * 5)
    assert path.read_text().startswith('# RMS 0.1 px\n# two\n# lines\n')


# --- the target -------------------------------------------------------------------------------


def test_the_target_prints_its_squares_at_their_size(tmp_path, capsys):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = tmp_path / 'board.pdf'
    assert cli.main(['calibrate', '--target', str(path)]) == 0
    assert '25.0 mm' in capsys.readouterr().out
    data = path.read_bytes()
    assert data.startswith(b'%PDF')
    boxes = re.findall(rb'/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]', data)
    assert len(boxes) == 1
    np.testing.assert_allclose([float(v) for v in boxes[0]],
                               [297 / 25.4 * 72, 210 / 25.4 * 72], atol=0.05)   # A4 landscape
    assert tool.target_pdf(BOARD) == tool.target_pdf(BOARD)    # the same file every time

    figure = tool.target_figure(BOARD)
    assert any('squares 25.0 mm' in t.get_text() for t in figure.axes[0].texts)
    dpi = 100
    figure.set_dpi(dpi)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    page = np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
    corners = find_corners(page, BOARD)
    assert corners is not None
    grid = corners.reshape(BOARD.rows, BOARD.columns, 2)
    px_per_mm = dpi / 25.4
    along = np.linalg.norm(np.diff(grid, axis=1), axis=-1).mean() / px_per_mm
    down = np.linalg.norm(np.diff(grid, axis=0), axis=-1).mean() / px_per_mm
    assert along == pytest.approx(25.0, abs=0.15) and down == pytest.approx(25.0, abs=0.15)
    assert cli.main(['calibrate', '--target', str(path)]) == 1   # exists: needs --force


def test_a_target_too_big_for_a4_is_refused(tmp_path, capsys):
    assert tool.target_page(Chessboard(6, 9, 0.025)) == (210.0, 297.0)   # portrait fits
    err = _refused(capsys, ['--target', str(tmp_path / 'big.pdf'), '--square', '0.05'])
    assert 'does not fit an A4 sheet' in err and '--square' in err


# --- an uncalibrated camera -------------------------------------------------------------------


def test_a_field_of_view_gives_a_rough_camera():
    camera = camera_from_field_of_view(640, 480, 90.0)
    assert camera.fx == pytest.approx(320.0) and camera.fy == pytest.approx(320.0)
    assert (camera.cx, camera.cy) == (319.5, 239.5) and not camera.has_distortion
    assert camera_from_field_of_view(640, 480, 60.0).fx == pytest.approx(320 / np.tan(np.pi / 6))
    for bad in (0.0, 180.0, float('nan'), -5.0):
        with pytest.raises(CameraError, match='field of view'):
            camera_from_field_of_view(640, 480, bad)
