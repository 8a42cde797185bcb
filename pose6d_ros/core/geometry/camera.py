"""Pinhole camera with lens distortion, and the mapping to a letterboxed network input.

Pixel convention (OpenCV, ROS): the origin is the centre of the top-left pixel, x right,
y down. Distortion coefficients follow OpenCV/ROS order (k1, k2, p1, p2[, k3[, k4, k5, k6]]).
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import math
from pathlib import Path

import cv2
import numpy as np

from pose6d_ros.core.config_fields import load_yaml
from pose6d_ros.core.errors import CameraError

# ROS distortion_model names -> accepted numbers of coefficients.
DISTORTION_MODELS = {
    'plumb_bob': (4, 5),
    'rational_polynomial': (8,),
    'none': (0,),
}


class CameraModel:
    """Intrinsics K (3x3), distortion D, and image size of one camera.

    Build it from plain values with `from_camera_info` (the fields of a sensor_msgs/CameraInfo)
    or from a calibration file with `load`. Invalid values raise `CameraError`.
    """

    def __init__(self, K, D=None, width=0, height=0, distortion_model=None, P=None):
        self.K = _checked_K(K)
        self.D = _checked_D(D, distortion_model)
        self.width, self.height = _checked_size(width, height)
        self.distortion_model = _model_name(self.D, distortion_model)
        self.P = None if P is None else np.asarray(P, dtype=np.float64).reshape(3, 4)
        self.K.setflags(write=False)
        self.D.setflags(write=False)
        self._has_distortion = bool(np.any(self.D != 0.0))

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_camera_info(cls, k, d, width, height, distortion_model='plumb_bob', p=None):
        """Build from CameraInfo values: k (9, row-major), d, width, height, model, p (12)."""
        k_values = np.asarray(k, dtype=np.float64).ravel()
        if k_values.size != 9:
            raise CameraError('camera_info K must have 9 values (row-major 3x3); '
                              f'got {k_values.size}')
        p_values = None
        if p is not None and np.any(np.asarray(p, dtype=np.float64)):
            p_values = np.asarray(p, dtype=np.float64).ravel()
            if p_values.size != 12:
                raise CameraError('camera_info P must have 12 values (row-major 3x4); '
                                  f'got {p_values.size}')
            p_values = p_values.reshape(3, 4)
        return cls(k_values.reshape(3, 3), d, width, height, distortion_model or None, p_values)

    @classmethod
    def from_intrinsics(cls, fx, fy, cx, cy, width, height, D=None):
        """Build from focal lengths and principal point in pixels."""
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)
        return cls(K, D, width, height)

    @classmethod
    def load(cls, path):
        """Load a ROS calibration YAML (camera_calibration format) or a BOP camera.json."""
        path = Path(path)
        if not path.is_file():
            raise CameraError(f'camera file not found: {path}')
        if path.suffix == '.json':
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise CameraError(f'cannot parse camera file {path}: {exc}') from None
        else:
            data = load_yaml(path, 'camera file', CameraError)
        if not isinstance(data, dict):
            raise CameraError(f'camera file {path} must hold a mapping; got {type(data).__name__}')
        try:
            return cls.from_dict(data)
        except CameraError as exc:
            raise CameraError(f'{path}: {exc}') from None

    @classmethod
    def from_dict(cls, data):
        """Build from a ROS calibration mapping or a BOP camera mapping (fx, fy, cx, cy, ...)."""
        if 'camera_matrix' in data:  # ROS camera_calibration format
            return cls.from_camera_info(
                _matrix_data(data, 'camera_matrix'),
                _matrix_data(data, 'distortion_coefficients', required=False),
                data.get('image_width', 0), data.get('image_height', 0),
                data.get('distortion_model', 'plumb_bob'),
                _matrix_data(data, 'projection_matrix', required=False) or None)
        if 'cam_K' in data:  # BOP scene_camera.json entry
            return cls(np.reshape(data['cam_K'], (3, 3)), data.get('D'),
                       data.get('width', 0), data.get('height', 0))
        keys = ('fx', 'fy', 'cx', 'cy', 'width', 'height')
        missing = [k for k in keys if k not in data]
        if missing:
            raise CameraError(
                'camera mapping must be a ROS calibration (camera_matrix, '
                'distortion_coefficients, image_width, image_height) or have '
                f'{", ".join(keys)}; missing {", ".join(missing)}')
        return cls.from_intrinsics(*(data[k] for k in keys), D=data.get('D'))

    def to_dict(self):
        """Return the ROS calibration mapping (what `load`/`from_dict` read back)."""
        data = {
            'image_width': self.width,
            'image_height': self.height,
            'camera_matrix': {'rows': 3, 'cols': 3, 'data': self.K.ravel().tolist()},
            'distortion_model': self.distortion_model if self.D.size else 'plumb_bob',
            'distortion_coefficients': {'rows': 1, 'cols': int(self.D.size),
                                        'data': self.D.tolist()},
        }
        if self.P is not None:
            data['projection_matrix'] = {'rows': 3, 'cols': 4, 'data': self.P.ravel().tolist()}
        return data

    # --- properties ---------------------------------------------------------------------------

    @property
    def fx(self):
        return float(self.K[0, 0])

    @property
    def fy(self):
        return float(self.K[1, 1])

    @property
    def cx(self):
        return float(self.K[0, 2])

    @property
    def cy(self):
        return float(self.K[1, 2])

    @property
    def size(self):
        """(width, height) in pixels."""
        return self.width, self.height

    @property
    def has_distortion(self):
        return self._has_distortion

    def __repr__(self):
        return (f'CameraModel(fx={self.fx:.2f}, fy={self.fy:.2f}, cx={self.cx:.2f}, '
                f'cy={self.cy:.2f}, size={self.width}x{self.height}, '
                f'D={np.round(self.D, 5).tolist()})')

    def __eq__(self, other):
        return (isinstance(other, CameraModel) and self.size == other.size
                and np.array_equal(self.K, other.K) and np.array_equal(self.D, other.D))

    def __hash__(self):
        return hash((self.size, self.K.tobytes(), self.D.tobytes()))

    # --- geometry -----------------------------------------------------------------------------

    def project(self, points_cam):
        """Project camera-frame points (N, 3) to distorted pixels (N, 2); NaN where z <= 0."""
        points_cam = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
        z = points_cam[:, 2]
        in_front = z > 1e-9
        xy = np.full((len(points_cam), 2), np.nan)
        xy[in_front] = points_cam[in_front, :2] / z[in_front, None]
        return self.normalized_to_pixels(xy)

    def normalized_to_pixels(self, xy):
        """Map undistorted normalised coordinates (N, 2) (x/z, y/z) to distorted pixels (N, 2)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if self._has_distortion:
            xy = _distort(xy, self.D)
        return xy @ self.K[:2, :2].T + self.K[:2, 2]

    def pixels_to_normalized(self, pixels):
        """Undistort pixels (N, 2) to normalised coordinates (N, 2) (x/z, y/z of the ray)."""
        pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        if not len(pixels):
            return pixels.copy()
        if self.has_distortion:
            return _undistort_points(pixels.reshape(-1, 1, 2), self.K, self.D).reshape(-1, 2)
        y = (pixels[:, 1] - self.cy) / self.fy
        x = (pixels[:, 0] - self.cx - self.K[0, 1] * y) / self.fx
        return np.stack([x, y], axis=1)

    def undistort_points(self, pixels):
        """Map distorted pixels (N, 2) to those of an ideal pinhole camera with the same K."""
        xy = self.pixels_to_normalized(pixels)
        return xy @ self.K[:2, :2].T + self.K[:2, 2]

    def resized(self, width, height):
        """The same camera for its image resized to width x height (no crop, no padding)."""
        sx, sy = width / self.width, height / self.height
        K = _scale_K(self.K, sx, sy, 0.0, 0.0)
        return CameraModel(K, self.D, width, height, self.distortion_model)

    def letterbox(self, input_width, input_height):
        """The mapping from this camera's image to a letterboxed network input of that size."""
        return Letterbox.fit(self.width, self.height, input_width, input_height)


@dataclass(frozen=True)
class Letterbox:
    """Aspect-preserving resize of a source image into a padded network input, and back.

    The image is resized to (resized_width, resized_height) and placed at (pad_x, pad_y)
    inside an input of (input_width, input_height). Mapping follows the pixel-centre convention
    of `cv2.resize`, so `to_input` / `to_camera` are exact inverses and agree with the pixels.
    """

    source_width: int
    source_height: int
    input_width: int
    input_height: int
    resized_width: int
    resized_height: int
    pad_x: int
    pad_y: int

    @classmethod
    def fit(cls, source_width, source_height, input_width, input_height):
        """Largest resize of the source that fits the input, centred (padding split evenly)."""
        _checked_size(source_width, source_height, what='source image')
        _checked_size(input_width, input_height, what='network input')
        scale = min(input_width / source_width, input_height / source_height)
        resized_w = min(input_width, max(1, round(source_width * scale)))
        resized_h = min(input_height, max(1, round(source_height * scale)))
        return cls(int(source_width), int(source_height), int(input_width), int(input_height),
                   int(resized_w), int(resized_h),
                   (input_width - resized_w) // 2, (input_height - resized_h) // 2)

    @property
    def scale_x(self):
        return self.resized_width / self.source_width

    @property
    def scale_y(self):
        return self.resized_height / self.source_height

    def to_input(self, pixels):
        """Camera pixels (N, 2) -> network-input pixels (N, 2)."""
        pixels = np.asarray(pixels, dtype=np.float64)
        scale = np.array([self.scale_x, self.scale_y])
        return (pixels + 0.5) * scale - 0.5 + [self.pad_x, self.pad_y]

    def to_camera(self, pixels):
        """Network-input pixels (N, 2) -> camera pixels (N, 2)."""
        pixels = np.asarray(pixels, dtype=np.float64)
        scale = np.array([self.scale_x, self.scale_y])
        return (pixels - [self.pad_x, self.pad_y] + 0.5) / scale - 0.5

    def apply(self, image, pad_value=0, interpolation=cv2.INTER_LINEAR):
        """Resize and pad an image (H, W[, C]) of the source size into the network input."""
        if image.shape[:2] != (self.source_height, self.source_width):
            raise ValueError(f'image is {image.shape[1]}x{image.shape[0]}, letterbox expects '
                             f'{self.source_width}x{self.source_height}')
        resized = image
        if (self.resized_width, self.resized_height) != (self.source_width, self.source_height):
            resized = cv2.resize(image, (self.resized_width, self.resized_height),
                                 interpolation=interpolation)
        out = np.full((self.input_height, self.input_width) + image.shape[2:], pad_value,
                      dtype=image.dtype)
        out[self.pad_y:self.pad_y + self.resized_height,
            self.pad_x:self.pad_x + self.resized_width] = resized.reshape(
                (self.resized_height, self.resized_width) + image.shape[2:])
        return out

    def input_camera(self, camera):
        """The camera model of the letterboxed network input (same distortion, scaled K)."""
        K = _scale_K(camera.K, self.scale_x, self.scale_y, self.pad_x, self.pad_y)
        return CameraModel(K, camera.D, self.input_width, self.input_height,
                           camera.distortion_model)


# OpenCV's default 5 iterations leave ~1e-3 px near the corners of a strongly distorted image;
# the fixed-point iteration converges slowly there (k1 = -0.2: 20 iterations leave 7e-6 px,
# 40 leave 2e-12). It stops as soon as it has converged, so typical points cost no more.
_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-12)


def _undistort_points(pixels, K, D):
    """cv2 undistortion to normalised coordinates, on OpenCV 4.x (Iter variant) and 5.x."""
    if hasattr(cv2, 'undistortPointsIter'):  # OpenCV 4.x
        return cv2.undistortPointsIter(pixels, K, D, None, None, _UNDISTORT_CRITERIA)
    return cv2.undistortPoints(pixels, K, D, criteria=_UNDISTORT_CRITERIA)


def _distort(xy, D):
    """Apply OpenCV's distortion model to normalised coordinates (N, 2)."""
    if D.size > 8:  # thin-prism / tilted models: let OpenCV do it
        points = np.concatenate([xy, np.ones((len(xy), 1))], axis=1)
        finite = np.isfinite(xy).all(axis=1)
        out = np.full_like(xy, np.nan)
        if finite.any():
            out[finite] = cv2.projectPoints(points[finite], np.zeros(3), np.zeros(3), np.eye(3),
                                            D)[0].reshape(-1, 2)
        return out
    k = np.zeros(8)
    k[:D.size] = D
    k1, k2, p1, p2, k3, k4, k5, k6 = k
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd, yd], axis=1)


# --- validation -------------------------------------------------------------------------------


def _scale_K(K, sx, sy, pad_x, pad_y):
    K = K.copy()
    K[0, :] *= sx
    K[1, :] *= sy
    K[0, 2] += 0.5 * sx - 0.5 + pad_x
    K[1, 2] += 0.5 * sy - 0.5 + pad_y
    K[2] = [0.0, 0.0, 1.0]
    return K


def _checked_K(K):
    try:
        K = np.array(K, dtype=np.float64)
    except (TypeError, ValueError):
        raise CameraError(f'camera K must be a 3x3 matrix of numbers; got {K!r}') from None
    if K.size == 9:
        K = K.reshape(3, 3)
    if K.shape != (3, 3):
        raise CameraError(f'camera K must be a 3x3 matrix; got shape {K.shape}')
    if not np.isfinite(K).all():
        raise CameraError('camera K contains NaN or infinite values; expected finite numbers')
    if not np.any(K):
        raise CameraError('camera K is all zeros (uncalibrated camera?); expected '
                          '[[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0')
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CameraError(f'camera K must have positive focal lengths; got fx={K[0, 0]:g}, '
                          f'fy={K[1, 1]:g}')
    if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0.0:
        raise CameraError('camera K must be upper-triangular with last row [0, 0, 1]; '
                          f'got {K.tolist()}')
    if abs(np.linalg.det(K)) < 1e-12:
        raise CameraError(f'camera K is singular; got {K.tolist()}')
    return K


def _checked_D(D, distortion_model):
    if D is None:
        D = []
    try:
        D = np.array(D, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise CameraError(f'camera D must be a list of numbers; got {D!r}') from None
    if not np.isfinite(D).all():
        raise CameraError('camera D contains NaN or infinite values; expected finite numbers')
    if distortion_model and distortion_model not in DISTORTION_MODELS:
        raise CameraError(f'distortion model {distortion_model!r} is not supported; expected '
                          f'one of {", ".join(DISTORTION_MODELS)}')
    if D.size and not np.any(D):
        return np.zeros(0)
    if distortion_model and D.size and D.size not in DISTORTION_MODELS[distortion_model]:
        raise CameraError(f'distortion model {distortion_model!r} takes '
                          f'{" or ".join(map(str, DISTORTION_MODELS[distortion_model]))} '
                          f'coefficients; got {D.size}')
    if D.size not in (0, 4, 5, 8, 12, 14):
        raise CameraError(f'camera D must have 0, 4, 5, 8, 12 or 14 coefficients; got {D.size}')
    return D


def _model_name(D, distortion_model):
    if not D.size:
        return 'none'
    if distortion_model:
        return distortion_model
    return 'plumb_bob' if D.size <= 5 else 'rational_polynomial'


def _checked_size(width, height, what='camera image'):
    def is_positive_int(value):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            return False
        return bool(np.isfinite(value) and value == int(value) and value > 0)

    if not (is_positive_int(width) and is_positive_int(height)):
        raise CameraError(f'{what} width and height must be positive integers; '
                          f'got width={width!r}, height={height!r}')
    return int(width), int(height)


def _matrix_data(data, key, required=True):
    entry = data.get(key)
    if entry is None:
        if required:
            raise CameraError(f'camera file has no {key!r}')
        return []
    if isinstance(entry, dict):
        entry = entry.get('data', [])
    return list(entry)


def default_camera(width, height):
    """The guess used without a calibration: fx = fy = 0.9 max(W, H), principal point centred."""
    focal = 0.9 * max(width, height)
    return CameraModel.from_intrinsics(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0,
                                       width, height)


# Said wherever a camera from `camera_from_field_of_view` stands in for a calibration.
FIELD_OF_VIEW_WARNING = (
    'no calibration: a rough K from a horizontal field of view of {fov:g} degrees (fx = fy = '
    '{focal:.1f} px, principal point at the centre, no distortion). Directions are about right '
    'but distances will be off by as much as the focal length is (a guess 10% too long puts '
    'every object 10% too far): calibrate the camera (pose6d calibrate) for metric poses')


def camera_from_field_of_view(width, height, field_of_view_deg):
    """A rough camera from its horizontal field of view (degrees), for an uncalibrated camera.

    fx = fy = (width / 2) / tan(fov / 2) (square pixels), the principal point at the image
    centre, no distortion. Poses made with it have the right directions but distances off by
    the focal length's error: say so where it is used (FIELD_OF_VIEW_WARNING).
    """
    fov = float(field_of_view_deg)
    if not (math.isfinite(fov) and 0.0 < fov < 180.0):
        raise CameraError(f'field of view must be between 0 and 180 degrees; got '
                          f'{field_of_view_deg!r}')
    _checked_size(width, height)
    focal = (width / 2.0) / math.tan(math.radians(fov) / 2.0)
    return CameraModel.from_intrinsics(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0,
                                       width, height)
