"""Frames from a camera, a video file or a folder of images, as RGB arrays (OpenCV, no ROS).

    with FrameSource('0', width=640, height=480) as source:     # a camera by index
        frame = source.read()          # Frame(rgb, index, name), or None at the end of a file

A source is named as on the command line: a camera device index ('0') or path
('/dev/video0'), a video file (whatever OpenCV's FFmpeg reads: .mp4, .avi, .mkv, ...), an image
folder (its .png/.jpg/... files in name order) or one image file. `width`/`height` ask a
camera for that size, and frames of another size (from a camera that cannot, or from a
file) are resized to it; 0 keeps the source's size. A file or folder ends (read() -> None)
unless `loop`, when it starts again. `Pacer` spaces the reads of a file at a frame rate;
a camera paces itself.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path
import re
import time

import cv2
import numpy as np

from pose6d_ros.core.errors import CaptureError

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
FOLDER_FPS = 10.0      # default pace of an image folder, Hz
CAMERA_RETRIES = 20    # failed reads in a row before a camera counts as gone (about 1 s)


@dataclass
class Frame:
    """One frame: RGB pixels, its number since the source opened, and a name for messages."""

    rgb: np.ndarray   # (H, W, 3) uint8
    index: int        # 0, 1, 2, ... over the whole run (loops included)
    name: str         # the image file, or 'frame <k>' of a camera or video


def source_kind(spec):
    """'device', 'video', 'folder' or 'image' for a source as named on the command line."""
    text = str(spec).strip()
    if re.fullmatch(r'\d+', text) or text.startswith('/dev/'):
        return 'device'
    path = Path(text).expanduser()
    if path.is_dir():
        return 'folder'
    if path.is_file():
        return 'image' if path.suffix.lower() in IMAGE_SUFFIXES else 'video'
    raise CaptureError(f'source {text!r} not found; expected a camera index (0), a device '
                       '(/dev/video0), a video file, an image folder or an image file')


class FrameSource:
    """Frames of a camera, video, image folder or image; see the module docstring."""

    def __init__(self, spec, width=0, height=0, fps=0.0, loop=False, warn=None):
        self.spec = str(spec).strip()
        self.kind = source_kind(self.spec)
        self.size = (int(width), int(height)) if width and height else None
        if (width or height) and not self.size:
            raise CaptureError(f'give both width and height, or neither; got {width}x{height}')
        self.loop = bool(loop)
        self.warn = warn
        self.frames_read = 0
        self._capture = None
        self._files = []
        self._next_file = 0
        self._pass_frames = 0
        if self.kind == 'device':
            self._open_device(fps)
        elif self.kind == 'video':
            self._open_video()
        else:
            self._files = _image_files(self.spec) if self.kind == 'folder' else [
                Path(self.spec).expanduser()]

    # --- opening ------------------------------------------------------------------------------

    def _open_device(self, fps):
        device = int(self.spec) if self.spec.isdigit() else self.spec
        capture = cv2.VideoCapture(device)
        if not capture.isOpened():
            capture.release()
            raise CaptureError(f'cannot open camera {self.spec}: not present, or in use by '
                               'another program? (ls /dev/video*; v4l2-ctl --list-devices)')
        if self.size:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        if fps:
            capture.set(cv2.CAP_PROP_FPS, float(fps))
        self._capture = capture

    def _open_video(self):
        capture = cv2.VideoCapture(str(Path(self.spec).expanduser()))
        if not capture.isOpened():
            capture.release()
            raise CaptureError(f'cannot open video file {self.spec}: not a video this OpenCV '
                               'reads (its FFmpeg reads .mp4, .avi, .mkv, ...)')
        self._capture = capture

    @property
    def nominal_fps(self):
        """The source's own frame rate (Hz): the camera's or the video's, FOLDER_FPS for images.

        None when a camera or video does not say.
        """
        if self._capture is None:
            return FOLDER_FPS
        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        return fps if math.isfinite(fps) and 0.0 < fps < 1000.0 else None

    @property
    def is_file(self):
        """True for a video, folder or image (paced by the reader, may end), not a camera."""
        return self.kind != 'device'

    # --- reading ------------------------------------------------------------------------------

    def read(self):
        """The next Frame, or None at the end of a file or folder (not looping).

        CaptureError when a camera stops delivering or a video cannot be read at all.
        Unreadable images of a folder are skipped (with `warn(message)` when given).
        """
        if self.kind == 'device':
            bgr = self._read_device()
        elif self.kind == 'video':
            bgr = self._read_video()
        else:
            bgr = self._read_image()
        if bgr is None:
            return None
        self.frames_read += 1
        self._pass_frames += 1
        rgb = _to_rgb(bgr)
        if self.size and (rgb.shape[1], rgb.shape[0]) != self.size:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
        name = (self._files[(self._next_file - 1) % len(self._files)].name if self._files
                else f'frame {self.frames_read - 1}')
        return Frame(rgb, self.frames_read - 1, name)

    def _read_device(self):
        for _ in range(CAMERA_RETRIES):
            ok, bgr = self._capture.read()
            if ok and bgr is not None and bgr.size:
                return bgr
            time.sleep(0.05)
        raise CaptureError(f'camera {self.spec} stopped giving frames (unplugged, or taken by '
                           'another program?)')

    def _read_video(self):
        ok, bgr = self._capture.read()
        if ok and bgr is not None and bgr.size:
            return bgr
        if not self._pass_frames:
            raise CaptureError(f'no frame could be read from video file {self.spec}')
        if not self.loop:
            return None
        # Back to the start: reopening works with every backend, seeking not always.
        self._capture.release()
        self._open_video()
        self._pass_frames = 0
        return self._read_video()

    def _read_image(self):
        for _ in range(len(self._files)):
            if self._next_file >= len(self._files):
                if not self.loop or not self._pass_frames:
                    return None
                self._next_file, self._pass_frames = 0, 0
            path = self._files[self._next_file]
            self._next_file += 1
            data = np.fromfile(path, dtype=np.uint8) if path.is_file() else np.zeros(0, np.uint8)
            bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
            if bgr is not None:
                return bgr
            if self.warn is not None:
                self.warn(f'skipped {path}: not a readable image')
        if not self._pass_frames:
            raise CaptureError(f'no readable image in {self.spec}')
        return None

    # --- closing ------------------------------------------------------------------------------

    def close(self):
        """Release the camera or video file (a second call does nothing)."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _image_files(folder):
    folder = Path(folder).expanduser()
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise CaptureError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in folder {folder}')
    return files


def _to_rgb(bgr):
    if bgr.ndim == 2:  # a grey camera mode
        return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class Pacer:
    """Spaces calls at `fps` per second: `wait()` sleeps until the next tick.

    Ticks are kept on a fixed schedule (no drift); after a stall of more than a period the
    schedule restarts from now instead of hurrying to catch up. clock/sleep are
    time.monotonic/time.sleep unless given (tests).
    """

    def __init__(self, fps, clock=time.monotonic, sleep=time.sleep):
        if not (math.isfinite(fps) and fps > 0):
            raise CaptureError(f'frame rate must be a positive number of frames per second; '
                               f'got {fps!r}')
        self.period = 1.0 / float(fps)
        self._clock, self._sleep = clock, sleep
        self._next = None

    def wait(self):
        """Sleep until the next tick; returns the seconds slept."""
        now = self._clock()
        if self._next is None or now - self._next > self.period:
            self._next = now
        delay = max(0.0, self._next - now)
        if delay:
            self._sleep(delay)
        self._next += self.period
        return delay
