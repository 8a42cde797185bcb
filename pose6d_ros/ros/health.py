"""What the pose6d node's /diagnostics says, decided without rclpy.

`FrameCounts` holds one diagnostics period: images and camera_infos that arrived, frames the
synchronizer paired, frames processed, dropped and refused, and the times spent. `assess`
turns them into a DiagnosticStatus level, a message and key/values, plus the problem the node
should also log (images without camera_info and the reverse, nothing paired). The node only
counts and publishes (node.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import time


class FrameCounts:
    """Counters of one diagnostics period (the node swaps in a new one every period)."""

    def __init__(self, since=None):
        self.since = time.monotonic() if since is None else since
        self.images = 0       # image messages that arrived
        self.infos = 0        # camera_info messages that arrived
        self.paired = 0       # image + camera_info pairs the synchronizer handed over
        self.frames = 0       # pairs processed to the end
        self.dropped = 0      # pairs replaced by a newer one before the worker took them
        self.bad = 0          # pairs refused (FrameError)
        self.sums = {'processing': 0.0, 'age': 0.0, 'inference': 0.0}
        self.last_problem = ''

    def add(self, processing_s, age_s, inference_s):
        """One processed frame and its times (seconds)."""
        self.frames += 1
        self.sums['processing'] += processing_s
        self.sums['age'] += age_s
        self.sums['inference'] += inference_s

    def mean(self, key):
        """Mean of 'processing', 'age' or 'inference' over the processed frames (0 if none)."""
        return self.sums[key] / self.frames if self.frames else 0.0


@dataclass(frozen=True)
class Assessment:
    """A diagnostics status: level (OK, WARN, ERROR, STALE), message, key/values, a log line."""

    level: str
    message: str
    values: dict = field(default_factory=dict)
    warning: tuple | None = None   # (kind, text) to log as well, throttled per kind


def assess(counts, period_s, active=True, drop_warning=0.1):
    """The status of one period of `counts` (FrameCounts) lasting `period_s` seconds.

    active: False for a configured lifecycle node that is not active (it says so, at level
    OK). drop_warning: the share of paired frames dropped above which the level is WARN.
    """
    period_s = max(float(period_s), 1e-6)
    image_hz, info_hz = counts.images / period_s, counts.infos / period_s
    input_hz, output_hz = counts.paired / period_s, counts.frames / period_s
    dropped_share = counts.dropped / counts.paired if counts.paired else 0.0
    values = {
        'input rate (Hz)': f'{input_hz:.2f}',
        'image rate (Hz)': f'{image_hz:.2f}',
        'camera_info rate (Hz)': f'{info_hz:.2f}',
        'processing (ms)': f'{counts.mean("processing") * 1e3:.1f}',
        'inference (ms)': f'{counts.mean("inference") * 1e3:.1f}',
        'dropped frames': str(counts.dropped),
        'dropped share': f'{dropped_share:.0%}',
        'bad frames': str(counts.bad),
    }
    if not active:
        return Assessment('OK', 'inactive: configured, not processing (activate it to '
                                'subscribe to the camera)', values)
    if counts.images and not counts.infos:
        text = (f'images arrive ({image_hz:.1f} Hz) but no camera_info: nothing is processed '
                'without it; check that the camera publishes camera_info and the remapping '
                'of camera_info (ros2 node info, ros2 topic hz)')
        return Assessment('WARN', text, values, ('no_camera_info', text))
    if counts.infos and not counts.images:
        text = (f'camera_info arrives ({info_hz:.1f} Hz) but no images: check the remapping of '
                'image (and image_transport), and that the camera publishes images')
        return Assessment('WARN', text, values, ('no_images', text))
    if counts.images and counts.infos and not counts.paired:
        text = (f'images ({image_hz:.1f} Hz) and camera_info ({info_hz:.1f} Hz) arrive but '
                'never pair: their stamps differ by more than sync_slop (are they from the same '
                'camera?)')
        return Assessment('WARN', text, values, ('unpaired', text))
    if counts.bad:
        return Assessment('WARN', f'{counts.bad} bad frame(s): {counts.last_problem}', values)
    if not counts.paired:
        return Assessment('STALE', 'no images and no camera_info arrive', values)
    if dropped_share > drop_warning:
        return Assessment(
            'WARN', f'{dropped_share:.0%} of the frames dropped (input {input_hz:.1f} Hz, '
                    f'processed {output_hz:.1f} Hz): the camera is faster than the node; lower '
                    'its rate or make the node faster (docs/ros.md, "Slow on a CPU")', values)
    return Assessment('OK', f'ok: {output_hz:.1f} of {input_hz:.1f} frames/s processed', values)
