"""Camera calibration from views of a printed chessboard, and the ROS calibration YAML.

    board = Chessboard(9, 6, 0.025)                      # inner corners, square side (m)
    views = [View(name, corners) ...]                   # corners = find_corners(image, board)
    result = calibrate(views, board, (width, height))   # CalibrationError when not good enough
    text = ros_calibration_yaml(result.camera, 'webcam', result.summary_lines())

A chessboard rather than ChArUco: its detector and `cv2.calibrateCamera` are the same on every
OpenCV from 4.x on, where the ChArUco API changed between 4.6 and 4.7. The checks of
`CalibrationLimits` refuse views that cannot give a good calibration, with one line saying
what to do: too few views, parts of the image the board never reached (distortion is
unknown there), no tilted views (without them the focal length and the distance trade
against each other), a high reprojection error, or a focal length still uncertain.

The YAML is the format camera_info_manager and camera_calibration read and write
(image_width, image_height, camera_name, camera_matrix, distortion_model,
distortion_coefficients, rectification_matrix, projection_matrix); `CameraModel.load` reads it
back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
import re

import cv2
import numpy as np

from pose6d_ros.core.errors import CalibrationError
from pose6d_ros.core.geometry.camera import CameraModel

# camera_info_manager accepts camera names of letters, digits and underscores only.
CAMERA_NAME = re.compile(r'^[A-Za-z0-9_]+$')
PART_NAMES = (('top-left', 'top', 'top-right'), ('left', 'centre', 'right'),
              ('bottom-left', 'bottom', 'bottom-right'))
# k coefficients estimated -> (calibrateCamera flags, distortion model, coefficients kept).
# 2 is camera_calibration's default (k3 fixed at 0: a third radial term over-fits most
# webcam lenses); 6 is the rational model of wide-angle lenses.
K_COEFFICIENTS = {
    2: (cv2.CALIB_FIX_K3, 'plumb_bob', 5),
    3: (0, 'plumb_bob', 5),
    6: (cv2.CALIB_RATIONAL_MODEL, 'rational_polynomial', 8),
}


@dataclass(frozen=True)
class Chessboard:
    """A printed chessboard: inner-corner counts and the side of one square in metres.

    A board of `columns` x `rows` inner corners has (columns + 1) x (rows + 1) squares;
    camera_calibration's `--size 9x6` is the same count. The two counts must differ, so that
    the detector cannot confuse a view with its mirror image.
    """

    columns: int   # inner corners along a row
    rows: int      # inner corners down a column
    square: float  # side of one square, metres

    def __post_init__(self):
        for name in ('columns', 'rows'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 3:
                raise CalibrationError(f'chessboard {name} must be an integer >= 3 inner '
                                       f'corners; got {value!r}')
        if self.columns == self.rows:
            raise CalibrationError(f'a chessboard of {self.columns}x{self.rows} inner corners '
                                   'looks the same turned by 90 degrees; use different counts, '
                                   'e.g. 9x6')
        if not (isinstance(self.square, (int, float)) and math.isfinite(self.square)
                and 0.0 < self.square < 1.0):
            raise CalibrationError(f'chessboard square must be its side in metres, between 0 '
                                   f'and 1 (e.g. 0.025); got {self.square!r}')

    @property
    def pattern_size(self):
        """(columns, rows): OpenCV's patternSize."""
        return int(self.columns), int(self.rows)

    @property
    def squares(self):
        """(squares across, squares down)."""
        return int(self.columns) + 1, int(self.rows) + 1

    def describe(self):
        """'9x6 inner corners (10 x 7 squares of 25.0 mm)'."""
        across, down = self.squares
        return (f'{self.columns}x{self.rows} inner corners ({across} x {down} squares of '
                f'{self.square * 1e3:.1f} mm)')

    def object_points(self):
        """The inner corners (N, 3) in the board frame, metres, in the detector's order.

        Row by row (x along a row, y down the columns, z = 0), as OpenCV returns the corners.
        """
        x, y = np.meshgrid(np.arange(self.columns), np.arange(self.rows))
        points = np.zeros((self.columns * self.rows, 3), np.float64)
        points[:, 0] = x.ravel() * self.square
        points[:, 1] = y.ravel() * self.square
        return points

    def raster(self, px_per_square=40, margin_squares=1):
        """The board as a grey image (uint8): black and white squares in a white margin.

        The top-left square is black. The first inner corner is at pixel
        ((1 + margin_squares) * px_per_square - 0.5) in x and y (pixel-centre convention).
        """
        across, down = self.squares
        size = (down + 2 * margin_squares, across + 2 * margin_squares)
        cells = np.full(size, 255, np.uint8)
        y, x = np.mgrid[:down, :across]
        cells[margin_squares:margin_squares + down, margin_squares:margin_squares + across] = \
            np.where((x + y) % 2 == 0, 0, 255)
        return np.kron(cells, np.ones((px_per_square, px_per_square), np.uint8))


def parse_board(text):
    """'9x6' -> (9, 6): inner corners across and down."""
    try:
        columns, rows = (int(v) for v in str(text).lower().split('x'))
    except ValueError:
        raise CalibrationError(f'board must be COLUMNSxROWS inner corners, e.g. 9x6; got '
                               f'{text!r}') from None
    return columns, rows


def find_corners(image, board):
    """The board's inner corners (N, 2) in pixels, in `object_points` order, or None.

    image: (H, W) grey or (H, W, 3) RGB uint8. Uses the sector-based detector (sub-pixel
    accurate, robust to blur and lighting) where OpenCV has it, else the classic one with
    sub-pixel refinement.
    """
    gray = np.asarray(image)
    if gray.ndim == 3:
        gray = cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_RGB2GRAY)
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    if hasattr(cv2, 'findChessboardCornersSB'):
        found, corners = cv2.findChessboardCornersSB(
            gray, board.pattern_size, flags=cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_ACCURACY)
    else:
        found, corners = cv2.findChessboardCorners(
            gray, board.pattern_size,
            flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
        if found:
            corners = cv2.cornerSubPix(
                gray, corners, (5, 5), (-1, -1),
                (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-3))
    if not found or corners is None:
        return None
    return np.asarray(corners, dtype=np.float64).reshape(-1, 2)


@dataclass(frozen=True)
class View:
    """One image in which the whole board was found: its name and corners (N, 2) in pixels."""

    name: str
    corners: np.ndarray


@dataclass(frozen=True)
class CalibrationLimits:
    """What a set of views must reach for `calibrate` to accept it."""

    min_views: int = 10                # views with the whole board
    grid: tuple = (3, 3)               # the image cut into columns x rows parts ...
    min_parts: int = 9                 # ... of which the board's corners must reach this many
    min_tilt_deg: float = 20.0         # a view is tilted when the board's normal is this far
    min_tilted_views: int = 2          # from the optical axis; this many tilted views needed
    max_rms_px: float = 1.0            # RMS reprojection error over all corners
    max_focal_uncertainty: float = 0.02  # one standard deviation of fx and fy, relative


@dataclass
class Calibration:
    """The result of `calibrate`: the camera and how well the views fit it."""

    camera: CameraModel             # K, D, size, P (the rectified camera of camera_calibration)
    board: Chessboard
    rms_px: float                   # RMS reprojection error over every corner of every view
    view_names: list
    view_rms_px: list               # RMS reprojection error of each view, px
    tilts_deg: list                 # angle between each view's board normal and the optical axis
    focal_std_px: tuple             # one standard deviation of fx and fy, px
    centre_std_px: tuple            # one standard deviation of cx and cy, px
    parts: int                      # parts of the image the corners reached
    without_board: list = field(default_factory=list)  # image names where no board was found

    def summary_lines(self):
        """What the command prints and the YAML's comment says, one fact a line."""
        fx_std, fy_std = self.focal_std_px
        cx_std, cy_std = self.centre_std_px
        camera = self.camera
        return [
            f'RMS reprojection error {self.rms_px:.3f} px over {len(self.view_names)} views '
            f'(worst view {max(self.view_rms_px):.3f} px)',
            f'fx {camera.fx:.2f} +- {fx_std:.2f} px, fy {camera.fy:.2f} +- {fy_std:.2f} px, '
            f'cx {camera.cx:.2f} +- {cx_std:.2f} px, cy {camera.cy:.2f} +- {cy_std:.2f} px '
            f'(one standard deviation)',
            f'distortion {camera.distortion_model} '
            f'[{", ".join(f"{v:.5f}" for v in camera.D)}]',
            f'board {self.board.describe()}, image {camera.width}x{camera.height}, '
            f'largest tilt {max(self.tilts_deg):.0f} degrees',
        ]


def calibrate(views, board, image_size, limits=None, k_coefficients=2, without_board=()):
    """Intrinsics from views of the board; CalibrationError (one line) when not good enough.

    views: list of View; image_size: (width, height) of every view; k_coefficients: 2 (k1,
    k2 and the tangential p1, p2: plumb_bob, camera_calibration's default), 3 (adds k3) or 6
    (rational_polynomial); without_board: names of images where no board was found (named in
    the messages).
    """
    limits = limits or CalibrationLimits()
    if k_coefficients not in K_COEFFICIENTS:
        raise CalibrationError(f'k_coefficients must be one of '
                               f'{", ".join(map(str, K_COEFFICIENTS))}; got {k_coefficients!r}')
    width, height = (int(v) for v in image_size)
    views = list(views)
    without_board = list(without_board)
    _check_view_count(views, board, limits, without_board)
    expected = board.columns * board.rows
    for view in views:
        if np.shape(view.corners) != (expected, 2) or not np.isfinite(view.corners).all():
            raise CalibrationError(f'view {view.name}: expected {expected} finite corners of a '
                                   f'{board.columns}x{board.rows} board; got an array of shape '
                                   f'{np.shape(view.corners)}')
    parts, missing = coverage([view.corners for view in views], (width, height), limits.grid)
    if parts < limits.min_parts:
        raise CalibrationError(
            f'the board reached only {parts} of the {limits.grid[0] * limits.grid[1]} parts of '
            f'the image (never the {", ".join(missing)}); expected at least {limits.min_parts}: '
            'add views with the board near the edges and in the corners of the image, where '
            'the lens distorts most')

    flags, model, count = K_COEFFICIENTS[k_coefficients]
    objects = [board.object_points().astype(np.float32)] * len(views)
    images = [np.asarray(view.corners, np.float32).reshape(-1, 1, 2) for view in views]
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    try:
        rms, K, D, rvecs, _tvecs, std_intrinsics, _std_extrinsics, per_view = \
            cv2.calibrateCameraExtended(objects, images, (width, height), None, None,
                                        flags=flags, criteria=criteria)
    except cv2.error as exc:
        raise CalibrationError(f'OpenCV could not calibrate from these views '
                               f'({_first_line(exc)}); take views with the board at several '
                               'angles and distances') from None
    tilts = [_tilt_deg(rvec) for rvec in rvecs]
    tilted = sum(tilt >= limits.min_tilt_deg for tilt in tilts)
    if tilted < limits.min_tilted_views:
        raise CalibrationError(
            f'only {tilted} view(s) with the board tilted by {limits.min_tilt_deg:g} degrees or '
            f'more (largest tilt {max(tilts):.0f}); expected at least '
            f'{limits.min_tilted_views}: tilt the board towards and away from the camera in '
            'some views (left, right, up, down), or the focal length cannot be told from the '
            'distance')
    view_rms = [float(v) for v in np.ravel(per_view)]
    names = [view.name for view in views]
    if not rms <= limits.max_rms_px:
        worst = sorted(zip(view_rms, names), reverse=True)[:3]
        raise CalibrationError(
            f'RMS reprojection error {rms:.2f} px is above {limits.max_rms_px:g} px (worst '
            f'views: {", ".join(f"{n} {e:.1f} px" for e, n in worst)}); remove blurred views '
            'and views of a bent board, and check --board and --square')
    std = np.ravel(std_intrinsics)
    fx, fy = K[0, 0], K[1, 1]
    uncertainty = max(std[0] / fx, std[1] / fy)
    if not uncertainty <= limits.max_focal_uncertainty:
        raise CalibrationError(
            f'the focal length is known only to +-{100 * uncertainty:.1f}% (fx {fx:.1f} +- '
            f'{std[0]:.1f} px); expected +-{100 * limits.max_focal_uncertainty:g}% or better: '
            'add views with the board tilted and at several distances')
    D = np.ravel(D)[:count]
    new_K, _roi = cv2.getOptimalNewCameraMatrix(K, D, (width, height), 0.0)
    P = np.zeros((3, 4))
    P[:, :3] = new_K
    camera = CameraModel(K, D, width, height, model, P)
    return Calibration(camera=camera, board=board, rms_px=float(rms), view_names=names,
                       view_rms_px=view_rms, tilts_deg=tilts,
                       focal_std_px=(float(std[0]), float(std[1])),
                       centre_std_px=(float(std[2]), float(std[3])), parts=parts,
                       without_board=without_board)


def _check_view_count(views, board, limits, without_board):
    if len(views) >= limits.min_views:
        return
    seen = len(views) + len(without_board)
    missed = ''
    if without_board:
        examples = ', '.join(without_board[:3]) + (', ...' if len(without_board) > 3 else '')
        missed = f'; no whole board in {len(without_board)} of {seen} images ({examples})'
    raise CalibrationError(
        f'only {len(views)} view(s) of the whole {board.columns}x{board.rows} board{missed}; '
        f'expected at least {limits.min_views}: take more pictures, each with the whole board '
        'in view, sharp and evenly lit (and check --board: inner corners, not squares)')


def coverage(corner_sets, image_size, grid=(3, 3)):
    """How many parts of the image (a columns x rows grid) any corner reached, and the others.

    Returns (count, names of the parts never reached, e.g. ['top-left']).
    """
    width, height = image_size
    columns, rows = grid
    reached = np.zeros((rows, columns), bool)
    for corners in corner_sets:
        corners = np.asarray(corners, np.float64).reshape(-1, 2)
        inside = ((corners[:, 0] >= -0.5) & (corners[:, 0] < width - 0.5)
                  & (corners[:, 1] >= -0.5) & (corners[:, 1] < height - 0.5))
        col = np.clip(((corners[inside, 0] + 0.5) * columns / width).astype(int), 0, columns - 1)
        row = np.clip(((corners[inside, 1] + 0.5) * rows / height).astype(int), 0, rows - 1)
        reached[row, col] = True
    missing = [_part_name(r, c, grid) for r in range(rows) for c in range(columns)
               if not reached[r, c]]
    return int(reached.sum()), missing


def _part_name(row, column, grid):
    if tuple(grid) == (3, 3):
        return PART_NAMES[row][column]
    return f'part at row {row + 1}, column {column + 1}'


def _tilt_deg(rvec):
    """Angle (degrees) between the board's normal and the camera's optical axis."""
    R, _ = cv2.Rodrigues(np.asarray(rvec, np.float64))
    return float(np.degrees(np.arccos(np.clip(abs(R[2, 2]), 0.0, 1.0))))


def _first_line(exc):
    return (str(exc).strip().splitlines() or [type(exc).__name__])[-1].strip()


# --- the ROS calibration YAML -----------------------------------------------------------------


def check_camera_name(name):
    """A camera name camera_info_manager accepts (letters, digits, _), or CalibrationError."""
    if not CAMERA_NAME.fullmatch(str(name)):
        raise CalibrationError(f'camera name {name!r} must be letters, digits and _ only (as '
                               'camera_info_manager requires), e.g. webcam')
    return str(name)


def ros_calibration_yaml(camera, camera_name='camera', comments=()):
    """The ROS calibration YAML of a CameraModel, as camera_calibration writes it.

    Every number is written in full (round-trip) precision, so `CameraModel.load` gives back
    the same K, D and P. `comments` become '# ' lines at the top (e.g. the RMS error). A
    camera without distortion is written as plumb_bob with five zeros and without P as
    [K | 0], both as camera_calibration does.
    """
    check_camera_name(camera_name)
    D = np.asarray(camera.D, np.float64)
    model = camera.distortion_model
    if not D.size or model == 'none':
        D, model = np.zeros(5), 'plumb_bob'
    P = camera.P if camera.P is not None else np.hstack([camera.K, np.zeros((3, 1))])
    lines = [f'# {line}' for text in comments for line in str(text).splitlines()]
    lines += [f'image_width: {int(camera.width)}', f'image_height: {int(camera.height)}',
              f'camera_name: {camera_name}']
    lines += _matrix('camera_matrix', camera.K)
    lines += [f'distortion_model: {model}']
    lines += _matrix('distortion_coefficients', D.reshape(1, -1))
    lines += _matrix('rectification_matrix', np.eye(3))
    lines += _matrix('projection_matrix', P)
    return '\n'.join(lines) + '\n'


def _matrix(name, values):
    values = np.asarray(values, np.float64)
    return [f'{name}:', f'  rows: {values.shape[0]}', f'  cols: {values.shape[1]}',
            f'  data: [{", ".join(repr(float(v)) for v in values.ravel())}]']
