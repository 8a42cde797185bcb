"""User-facing errors: one clear message naming what was wrong and what was expected."""


class Pose6dError(ValueError):
    """Bad input from a user (file, config, camera, mesh, argument).

    Entry points (CLI, node, bag tool) catch this type, print its message and carry on
    (node) or exit non-zero (CLI). Programming errors keep their own exception types.
    """


class CameraError(Pose6dError):
    """A camera model that cannot be used (zero or singular K, bad size, NaN, ...)."""


class ObjectModelError(Pose6dError):
    """An object definition or mesh that cannot be used."""


class DatasetError(Pose6dError):
    """A dataset folder or file that cannot be used (missing, malformed or inconsistent)."""


class CalibrationError(Pose6dError):
    """Calibration views that cannot give a good calibration, or a target that cannot be made."""


class CaptureError(Pose6dError):
    """A camera, video file or image folder that cannot be opened or read."""
