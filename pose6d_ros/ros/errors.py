"""Errors of the ROS side: one clear message naming the bad thing and what was expected."""

from pose6d_ros.core.errors import Pose6dError


class FrameError(Pose6dError):
    """One input frame (image + camera_info) that cannot be used; the next one may be fine.

    `reason` is a short key for the kind of problem ('encoding', 'truncated', 'empty',
    'decode', 'camera_info', 'size'), so callers can throttle warnings per kind.
    """

    def __init__(self, message, reason='frame'):
        super().__init__(message)
        self.reason = reason


class BagError(Pose6dError):
    """A bag that cannot be read or written as asked (missing topics, existing output, ...)."""
