"""The camera node's work without rclpy: its settings, the calibration, the messages.

`CameraStream` reads frames from a `FrameSource` (core/data/capture.py) and turns each into a
sensor_msgs/Image and a sensor_msgs/CameraInfo that share one header: the stamp taken as the
frame arrived, and the optical frame id. The calibration comes from `camera_info_url` as
camera_info_manager reads it (file://, package://, or a plain path) and must be for the
frames' size; without one, a rough K from a field of view stands in, with a warning that
distances will be off. camera_node.py is the rclpy glue.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
import time
from urllib.parse import unquote, urlparse

from pose6d_ros.core.data.capture import FrameSource, Pacer
from pose6d_ros.core.errors import CaptureError, Pose6dError
from pose6d_ros.core.geometry.camera import (
    camera_from_field_of_view,
    CameraModel,
    FIELD_OF_VIEW_WARNING,
)
from pose6d_ros.ros import conversions
from pose6d_ros.ros.parameters import CAMERA_PARAMETERS, validate


@dataclass(frozen=True)
class CameraSettings:
    """The camera node's parameters (CAMERA_PARAMETERS in parameters.py has their meaning)."""

    source: str = CAMERA_PARAMETERS['source'].default
    camera_info_url: str = CAMERA_PARAMETERS['camera_info_url'].default
    field_of_view: float = CAMERA_PARAMETERS['field_of_view'].default   # degrees
    frame_id: str = CAMERA_PARAMETERS['frame_id'].default
    width: int = CAMERA_PARAMETERS['width'].default                      # 0: the source's
    height: int = CAMERA_PARAMETERS['height'].default
    fps: float = CAMERA_PARAMETERS['fps'].default                        # 0: the source's
    loop: bool = CAMERA_PARAMETERS['loop'].default

    def validated(self):
        """These settings, or a Pose6dError naming the first bad one and what is expected."""
        for item in fields(self):
            reason = validate(item.name, getattr(self, item.name), CAMERA_PARAMETERS)
            if reason:
                raise Pose6dError(f'parameter {reason}')
        if bool(self.width) != bool(self.height):
            raise Pose6dError(f'parameters width and height go together (both 0 for the '
                              f"source's size); got {self.width}x{self.height}")
        return self


def calibration_path(url):
    """The file a camera_info_url names: file:///abs/path.yaml, package://pkg/path, or a path.

    As camera_info_manager reads them; package:// needs the package in the ament index.
    """
    url = str(url).strip()
    if url.startswith('file://'):
        path = Path(unquote(urlparse(url).path))
        if not path.is_absolute() or urlparse(url).netloc:
            raise CaptureError(f'camera_info_url {url!r}: a file:// URL needs an absolute path '
                               'after it, three slashes in all (file:///home/me/camera.yaml)')
        return path
    if url.startswith('package://'):
        package, _, relative = url[len('package://'):].partition('/')
        try:
            # deferred: only a ROS install has the ament index
            from ament_index_python.packages import get_package_share_directory

            return Path(get_package_share_directory(package)) / relative
        except (ImportError, LookupError):
            raise CaptureError(f'camera_info_url {url!r}: package {package!r} is not installed '
                               '(or ROS 2 is not sourced)') from None
    if '://' in url:
        raise CaptureError(f'camera_info_url {url!r}: expected file:///path.yaml, '
                           'package://<package>/<path> or a plain path')
    return Path(url).expanduser()


def load_calibration(url):
    """The CameraModel of a camera_info_url ('' -> None); CaptureError naming what is wrong."""
    if not url:
        return None
    path = calibration_path(url)
    if not path.is_file():
        raise CaptureError(f'camera_info_url {url!r}: no file {path}; calibrate with pose6d '
                           "calibrate, or leave camera_info_url '' for a rough K from "
                           'field_of_view')
    try:
        return CameraModel.load(path)
    except Pose6dError as exc:
        raise CaptureError(f'camera_info_url {url!r}: {exc}') from None


class CameraStream:
    """Frames of the configured source as (Image, CameraInfo) message pairs with one header.

    types: the message factory (RclpyTypes in the node, RosbagsTypes in tests); clock_ns:
    the time stamp source, called as each frame arrives; warn(message): warnings (the rough
    calibration, skipped images). A bad calibration file fails here, before the camera opens.
    """

    def __init__(self, settings, types, clock_ns=time.time_ns, warn=None, source=None,
                 pacer=None):
        self.settings = settings.validated()
        self.types = types
        self.clock_ns = clock_ns
        self.warn = warn
        self.calibration = load_calibration(settings.camera_info_url)
        if (self.calibration is not None and settings.width
                and self.calibration.size != (settings.width, settings.height)):
            raise CaptureError(self._size_message(settings.width, settings.height))
        self.source = source if source is not None else FrameSource(
            settings.source, settings.width, settings.height, settings.fps, settings.loop, warn)
        self.pacer = pacer
        if self.pacer is None and self.source.is_file:   # a camera paces itself
            self.pacer = Pacer(settings.fps or self.source.nominal_fps or 30.0)
        self.frames = 0
        self._guesses = {}

    def next(self):  # noqa: A003
        """The following frame as (Image, CameraInfo), or None at the end of a file played once."""
        if self.pacer is not None:
            self.pacer.wait()
        frame = self.source.read()
        if frame is None:
            return None
        stamp_ns = self.clock_ns()   # as the frame arrived
        height, width = frame.rgb.shape[:2]
        camera = self.camera_for(width, height, frame.name)
        header = conversions.make_header(self.types, stamp_ns, self.settings.frame_id)
        self.frames += 1
        return (conversions.rgb_to_image(self.types, frame.rgb, header, 'rgb8'),
                conversions.camera_info(self.types, camera, header))

    def camera_for(self, width, height, name='a frame'):
        """The calibration for frames of this size (CaptureError if it is for another size)."""
        if self.calibration is not None:
            if self.calibration.size != (width, height):
                raise CaptureError(f'{name} of {self.settings.source} is {width}x{height}: '
                                   + self._size_message(width, height))
            return self.calibration
        if (width, height) not in self._guesses:
            camera = camera_from_field_of_view(width, height, self.settings.field_of_view)
            self._guesses[(width, height)] = camera
            if self.warn is not None:
                self.warn(FIELD_OF_VIEW_WARNING.format(fov=self.settings.field_of_view,
                                                       focal=camera.fx))
        return self._guesses[(width, height)]

    def _size_message(self, width, height):
        cal = self.calibration
        return (f'the calibration {self.settings.camera_info_url} is for {cal.width}x'
                f'{cal.height}, not {width}x{height}; calibrate at this size (pose6d calibrate) '
                f'or set width and height to {cal.width} and {cal.height}')

    def describe(self):
        """One line for the log: the source, its size and rate, the calibration."""
        calibration = (f'calibration {self.settings.camera_info_url}' if self.calibration
                       else f'no calibration (a rough K from a field of view of '
                            f'{self.settings.field_of_view:g} degrees)')
        rate = f'{1.0 / self.pacer.period:g} fps' if self.pacer else 'its own rate'
        return (f'{self.source.kind} {self.settings.source} at {rate}, frame '
                f'{self.settings.frame_id}, {calibration}')

    def close(self):
        """Release the camera or file."""
        self.source.close()
