"""The camera node's work without rclpy: its settings, the calibration, the messages.

`CameraStream` reads frames from a `FrameSource` (core/data/capture.py) and turns each into a
sensor_msgs/Image and a sensor_msgs/CameraInfo that share one header: the stamp taken as the
frame arrived, and the optical frame id. The calibration comes from `camera_info_url` as
camera_info_manager reads it (file://, package://, or a plain path; ${NAME} and ${ROS_HOME}
substituted; '' = its default file ~/.ros/camera_info/<camera_name>.yaml when that exists)
and must be for the frames' size; without one, a rough K from a field of view stands in,
with a warning that distances will be off. `CameraStream.set_camera_info` is the work of the
set_camera_info service: check a new calibration, write it where camera_info_url says, and
publish it from the next frame on. camera_node.py is the rclpy glue.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
import os
from pathlib import Path
import re
import threading
import time
from urllib.parse import unquote, urlparse

import numpy as np

from pose6d_ros.core.config_fields import load_yaml
from pose6d_ros.core.data.capture import FrameSource, Pacer
from pose6d_ros.core.errors import CameraError, CaptureError, Pose6dError
from pose6d_ros.core.files import write_atomic
from pose6d_ros.core.geometry.calibration import ros_calibration_yaml
from pose6d_ros.core.geometry.camera import (
    camera_from_field_of_view,
    CameraModel,
    FIELD_OF_VIEW_WARNING,
)
from pose6d_ros.ros import conversions
from pose6d_ros.ros.parameters import CAMERA_PARAMETERS, validate

# Where camera_info_manager reads and writes a calibration when camera_info_url is ''.
DEFAULT_CAMERA_INFO_URL = 'file://${ROS_HOME}/camera_info/${NAME}.yaml'
SUBSTITUTIONS = {'NAME': 'camera_name', 'ROS_HOME': '$ROS_HOME, else ~/.ros'}
_VARIABLE = re.compile(r'\$\{([^}]*)(\}?)')   # ${...}; an empty group 2: no closing brace


@dataclass(frozen=True)
class CameraSettings:
    """The camera node's parameters (CAMERA_PARAMETERS in parameters.py has their meaning)."""

    source: str = CAMERA_PARAMETERS['source'].default
    camera_info_url: str = CAMERA_PARAMETERS['camera_info_url'].default
    camera_name: str = CAMERA_PARAMETERS['camera_name'].default
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
        resolve_url(self.camera_info_url, self.camera_name)   # an unknown ${...} fails here
        return self


# --- camera_info_url -------------------------------------------------------------------------


def ros_home():
    """$ROS_HOME, else ~/.ros: the folder camera_info_manager's ${ROS_HOME} stands for.

    A leading ~ is expanded and a relative $ROS_HOME taken from the working folder, so that
    the file:// URLs it goes into stay absolute.
    """
    home = os.environ.get('ROS_HOME') or str(Path.home() / '.ros')
    return os.path.abspath(os.path.expanduser(home))


def resolve_url(url, camera_name):
    """camera_info_url with ${NAME} (camera_name) and ${ROS_HOME} substituted.

    In one pass, as camera_info_manager does: a substituted value is not searched again, and
    a '$' not followed by '{' stays as it is. Any other ${...} is a CaptureError naming it
    (camera_info_manager only logs it and keeps it in the URL).
    """
    url = str(url).strip()

    def value(match):
        name, closed = match[1], match[2]
        if not closed:
            raise CaptureError(f'camera_info_url {url!r}: ${{{name} has no closing brace; '
                               f'expected {_supported()}')
        if name == 'NAME':
            return camera_name
        if name == 'ROS_HOME':
            return ros_home()
        raise CaptureError(f'camera_info_url {url!r}: unknown substitution ${{{name}}}; '
                           f'expected {_supported()}')

    return _VARIABLE.sub(value, url)


def _supported():
    return ' or '.join(f'${{{name}}} ({meaning})' for name, meaning in SUBSTITUTIONS.items())


def calibration_path(url, camera_name=CAMERA_PARAMETERS['camera_name'].default):
    """The file a camera_info_url names: file:///abs/path.yaml, package://pkg/path, or a path.

    As camera_info_manager reads them, after `resolve_url`; package:// needs the package in
    the ament index.
    """
    given = str(url).strip()
    url = resolve_url(given, camera_name)
    shown = repr(given) if url == given else f'{given!r} (= {url!r})'
    if url.startswith('file://'):
        path = Path(unquote(urlparse(url).path))
        if not path.is_absolute() or urlparse(url).netloc:
            raise CaptureError(f'camera_info_url {shown}: a file:// URL needs an absolute path '
                               'after it, three slashes in all (file:///home/me/camera.yaml)')
        return path
    if url.startswith('package://'):
        package, _, relative = url[len('package://'):].partition('/')
        try:
            # deferred: only a ROS install has the ament index
            from ament_index_python.packages import get_package_share_directory

            return Path(get_package_share_directory(package)) / relative
        except (ImportError, LookupError):
            raise CaptureError(f'camera_info_url {shown}: package {package!r} is not installed '
                               '(or ROS 2 is not sourced)') from None
    if '://' in url:
        raise CaptureError(f'camera_info_url {shown}: expected file:///path.yaml, '
                           'package://<package>/<path> or a plain path')
    return Path(url).expanduser()


def load_calibration(url, camera_name=CAMERA_PARAMETERS['camera_name'].default, warn=None):
    """The CameraModel of a camera_info_url, or None; CaptureError naming what is wrong.

    '' is camera_info_manager's default file (DEFAULT_CAMERA_INFO_URL). A file that does not
    exist (yet: set_camera_info writes it) gives None, as in camera_info_manager, and
    warn(message) says so when camera_info_url named it. warn is also told when the file
    names another camera (camera_info_manager's warning too).
    """
    path = calibration_path(url or DEFAULT_CAMERA_INFO_URL, camera_name)
    if not path.is_file():
        if url and warn is not None:
            warn(f'camera_info_url {url!r}: no file {path} (yet); make it with pose6d calibrate '
                 "--out, or with camera_calibration's COMMIT (set_camera_info writes it); "
                 'until then a rough K from field_of_view stands in')
        return None
    shown = url or DEFAULT_CAMERA_INFO_URL
    try:
        camera = CameraModel.load(path)
    except Pose6dError as exc:
        raise CaptureError(f'camera_info_url {shown!r}: {exc}') from None
    named = _camera_name_in(path)
    if warn is not None and named is not None and named != camera_name:
        warn(f'the calibration {path} is of camera_name {named!r}, not {camera_name!r} (the '
             'camera_name parameter); it is used all the same, as camera_info_manager does')
    return camera


def _camera_name_in(path):
    """The camera_name a ROS calibration YAML holds (None for a file without one)."""
    if path.suffix == '.json':
        return None
    data = load_yaml(path, 'camera file', CaptureError)
    name = data.get('camera_name') if isinstance(data, dict) else None
    return None if name is None else str(name)


# --- set_camera_info -------------------------------------------------------------------------


def calibration_target(url, camera_name):
    """The file set_camera_info writes: the one camera_info_url names, for '' the default.

    A package:// URL is refused: it names a file in an installed package's share folder,
    which the next build replaces (and which is often not writable).
    """
    target = url or DEFAULT_CAMERA_INFO_URL
    if resolve_url(target, camera_name).startswith('package://'):
        raise CaptureError(f'camera_info_url {url!r} names a file in an installed package, '
                           'which set_camera_info does not write (a rebuild would replace '
                           "it); set camera_info_url to file:///path/camera.yaml, or '' for "
                           f'{calibration_path(DEFAULT_CAMERA_INFO_URL, camera_name)}')
    return calibration_path(target, camera_name)


def calibration_from_info(info, frame_size=None):
    """The CameraModel of a set_camera_info request's CameraInfo; CameraError says what is wrong.

    Its size must be frame_size (width, height) when given. R must be the identity (or all
    zeros: not given): this node publishes one unrectified camera, and a calibration file of
    ours keeps R = I, so a stereo rectification would be lost.
    """
    camera = conversions.camera_from_info(info)
    R = np.asarray(info.r, dtype=np.float64)
    if R.size != 9 or (R.any() and not np.allclose(R.reshape(3, 3), np.eye(3), atol=1e-9)):
        raise CameraError('camera_info R must be the identity (a monocular camera); got '
                          f'{np.round(R, 6).tolist()}, a stereo rectification, which this '
                          'camera node does not publish')
    if frame_size is not None and camera.size != tuple(frame_size):
        raise CameraError(f'camera_info is for {camera.width}x{camera.height} images, but this '
                          f'camera publishes {frame_size[0]}x{frame_size[1]}; calibrate at the '
                          'size the camera publishes')
    return camera


def write_calibration(camera, path, camera_name, comments=()):
    """Write `camera` as a ROS calibration YAML to `path` (made atomically, folders too).

    CaptureError names the file and why it could not be written.
    """
    text = ros_calibration_yaml(camera, camera_name, comments)
    try:
        write_atomic(path, text.encode(), sync=True)
    except OSError as exc:
        raise CaptureError(f'cannot write the calibration to {path}: '
                           f'{exc.strerror or exc}') from None
    return Path(path)


class CameraStream:
    """Frames of the configured source as (Image, CameraInfo) message pairs with one header.

    types: the message factory (RclpyTypes in the node, RosbagsTypes in tests); clock_ns:
    the time stamp source, called as each frame arrives; warn(message): warnings (the rough
    calibration, skipped images). A bad calibration file fails here, before the camera opens.
    `next` (the capture thread) and `set_camera_info` (a service callback) may run at once:
    the calibration and the frame size they share are read and changed under one lock.
    """

    def __init__(self, settings, types, clock_ns=time.time_ns, warn=None, source=None,
                 pacer=None):
        self.settings = settings.validated()
        self.types = types
        self.clock_ns = clock_ns
        self.warn = warn
        self._lock = threading.Lock()
        self.calibration = load_calibration(settings.camera_info_url, settings.camera_name, warn)
        self.calibration_file = calibration_path(
            settings.camera_info_url or DEFAULT_CAMERA_INFO_URL, settings.camera_name)
        if (self.calibration is not None and settings.width
                and self.calibration.size != (settings.width, settings.height)):
            raise CaptureError(self._size_message(settings.width, settings.height))
        self.source = source if source is not None else FrameSource(
            settings.source, settings.width, settings.height, settings.fps, settings.loop, warn)
        self.pacer = pacer
        if self.pacer is None and self.source.is_file:   # a camera paces itself
            self.pacer = Pacer(settings.fps or self.source.nominal_fps or 30.0)
        self.frames = 0
        self.frame_size = None   # (width, height) of the last frame published
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
        with self._lock:   # one consistent look: set_camera_info may swap it meanwhile
            self.frame_size = (width, height)
            calibration = self.calibration
        if calibration is not None:
            if calibration.size != (width, height):
                raise CaptureError(f'{name} of {self.settings.source} is {width}x{height}: '
                                   + self._size_message(width, height, calibration))
            return calibration
        if (width, height) not in self._guesses:
            camera = camera_from_field_of_view(width, height, self.settings.field_of_view)
            self._guesses[(width, height)] = camera
            if self.warn is not None:
                self.warn(FIELD_OF_VIEW_WARNING.format(fov=self.settings.field_of_view,
                                                       focal=camera.fx))
        return self._guesses[(width, height)]

    def set_camera_info(self, info, now=None):
        """Check, write and publish a new calibration: the work of the set_camera_info service.

        info: the request's sensor_msgs/CameraInfo. It must be a valid camera
        (`calibration_from_info`) of the size the camera publishes; it is written as a ROS
        calibration YAML, named camera_name, to the file camera_info_url names ('': the
        default, ~/.ros/camera_info/<camera_name>.yaml), and the frames from the next on
        carry it. Returns the status message; a Pose6dError says what was wrong, and then
        nothing has changed (neither the file nor the calibration published).
        """
        settings = self.settings
        path = calibration_target(settings.camera_info_url, settings.camera_name)
        when = (now or datetime.now().astimezone()).isoformat(timespec='seconds')
        comments = [f'set_camera_info of pose6d_camera_node, {when}']
        # Under the lock, so that the size checked is the size of the frames that follow.
        with self._lock:
            size = self.frame_size or ((settings.width, settings.height) if settings.width
                                       else None)
            if size is None:
                raise CaptureError('no frame has been published yet, so the calibration '
                                   'cannot be checked against its size; call set_camera_info '
                                   'again once image_raw comes')
            camera = calibration_from_info(info, size)
            write_calibration(camera, path, settings.camera_name, comments)
            self.calibration, self.calibration_file = camera, path
        return (f'wrote the {camera.width}x{camera.height} calibration (fx {camera.fx:.1f}, '
                f'fy {camera.fy:.1f} px) of camera_name {settings.camera_name} to {path}; '
                'camera_info carries it from the next frame on')

    def _size_message(self, width, height, calibration=None):
        cal = calibration or self.calibration
        return (f'the calibration {self.calibration_file} is for {cal.width}x'
                f'{cal.height}, not {width}x{height}; calibrate at this size (pose6d calibrate) '
                f'or set width and height to {cal.width} and {cal.height}')

    def describe(self):
        """One line for the log: the source, its size and rate, the calibration."""
        if self.calibration is not None:
            calibration = f'calibration {self.calibration_file}'
        else:
            calibration = (f'no calibration (no file {self.calibration_file}): a rough K from a '
                           f'field of view of {self.settings.field_of_view:g} degrees')
        rate = f'{1.0 / self.pacer.period:g} fps' if self.pacer else 'its own rate'
        return (f'{self.source.kind} {self.settings.source} at {rate}, frame '
                f'{self.settings.frame_id}, {calibration}')

    def close(self):
        """Release the camera or file."""
        self.source.close()
