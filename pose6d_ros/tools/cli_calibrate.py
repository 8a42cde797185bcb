"""`pose6d calibrate`: argument parsing only (the work is in calibrate.py)."""

from __future__ import annotations

import argparse
from dataclasses import replace
import math
from pathlib import Path
import shlex
import sys

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.geometry.calibration import CalibrationLimits, K_COEFFICIENTS, parse_board
from pose6d_ros.tools.cli_args import positive_float as _positive_float
from pose6d_ros.tools.cli_args import positive_int as _positive_int

DEFAULT_BOARD = '9x6'
DEFAULT_SQUARE = 0.025


def _board(text):
    try:
        return parse_board(text)
    except Pose6dError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _square(text):
    value = _positive_float(text)
    if not value < 1.0:
        raise argparse.ArgumentTypeError(f'expected the side of a square in metres (e.g. 0.025); '
                                         f'got {text!r}')
    return value


def register(commands):
    """Add the calibrate sub-command to the `pose6d` parser."""
    limits = CalibrationLimits()
    calibrate = commands.add_parser(
        'calibrate', help='a printable chessboard (PDF), and camera intrinsics from pictures of '
                          'it: the ROS calibration YAML',
        description='First --target board.pdf: print it at 100% and glue it on stiff card. '
                    'Then take 15-30 pictures of it with the camera, at the resolution you will '
                    'use: the whole board in view, sharp, near every edge and corner of the '
                    'image, some tilted by 20-45 degrees, at several distances. --images DIR '
                    'calibrates from them (or --video: frames where the board is still) and '
                    'writes the ROS calibration YAML (camera_info_url:=file:///...), or refuses '
                    'with one line saying what to add.')
    source = calibrate.add_mutually_exclusive_group(required=True)
    source.add_argument('--target', metavar='PDF',
                        help='write the printable chessboard (A4, exact size) and stop')
    source.add_argument('--images', metavar='DIR', help='folder of pictures of the board')
    source.add_argument('--video', metavar='FILE|DEVICE',
                        help='a camera (0, /dev/video0) or a video file: keeps views where the '
                             'board is still, until --views are kept (Ctrl-C: calibrate now)')
    calibrate.add_argument('--board', type=_board, default=parse_board(DEFAULT_BOARD),
                           metavar='COLSxROWS',
                           help=f"inner corners of the chessboard, as camera_calibration's "
                                f'--size (default: {DEFAULT_BOARD}, a board of 10 x 7 squares)')
    calibrate.add_argument('--square', type=_square, default=DEFAULT_SQUARE, metavar='M',
                           help=f'side of one square in metres, as printed (default: '
                                f'{DEFAULT_SQUARE})')
    calibrate.add_argument('--out', metavar='YAML',
                           help='the calibration file to write (with --images or --video)')
    calibrate.add_argument('--camera-name', default='camera',
                           help='camera_name in the file (letters, digits, _; default: camera)')
    calibrate.add_argument('--k-coefficients', type=int, choices=sorted(K_COEFFICIENTS),
                           default=2,
                           help='radial distortion terms: 2 (plumb_bob with k3 = 0, as '
                                'camera_calibration), 3, or 6 (rational_polynomial, wide-angle '
                                'lenses) (default: 2)')
    calibrate.add_argument('--min-views', type=_positive_int, default=limits.min_views,
                           help=f'refuse fewer views of the whole board (default: '
                                f'{limits.min_views})')
    calibrate.add_argument('--max-error', type=_positive_float, default=limits.max_rms_px,
                           metavar='PX', help=f'refuse an RMS reprojection error above this '
                                              f'(default: {limits.max_rms_px:g} px)')
    calibrate.add_argument('--views', type=_positive_int, default=20,
                           help='with --video: views to keep before calibrating (default: 20)')
    calibrate.add_argument('--force', action='store_true', help='overwrite an existing output')
    calibrate.set_defaults(run=_run_calibrate)


def _run_calibrate(args):
    # deferred: matplotlib (the target) and OpenCV's capture, only when the command runs
    from pose6d_ros.core.geometry.calibration import Chessboard
    from pose6d_ros.tools import calibrate as tool

    board = Chessboard(args.board[0], args.board[1], args.square)
    if args.target:
        path, page = tool.write_target(args.target, board, args.force)
        print(f'wrote {path}: {board.describe()} on an A4 page ({page[0]:.0f} x {page[1]:.0f} '
              'mm); print it at 100% and check that a square measures '
              f'{board.square * 1e3:.1f} mm')
        return 0
    if not args.out:
        raise Pose6dError('--out YAML is needed with --images or --video: the calibration file '
                          'to write')
    if args.images:
        views, without, size = tool.views_from_images(args.images, board)
        _log(f'board found in {len(views)} of {len(views) + len(without)} images')
    else:
        with tool.open_stream(args.video) as source:
            views, size = tool.views_from_stream(source, board, args.views, _log)
        without = []
    limits = replace(CalibrationLimits(), min_views=args.min_views, max_rms_px=args.max_error)
    command = ' '.join(shlex.quote(w) for w in ['pose6d', 'calibrate', *sys.argv[2:]]) \
        if len(sys.argv) > 1 and sys.argv[1] == 'calibrate' else None
    result = tool.calibrate_and_write(views, board, size, args.out, args.camera_name, without,
                                      limits, args.k_coefficients, args.force, command)
    for line in result.summary_lines():
        print(line)
    fov = 2 * math.degrees(math.atan(result.camera.width / (2 * result.camera.fx)))
    print(f'wrote {args.out} (horizontal field of view {fov:.1f} degrees); use it with '
          f'camera_info_url:=file://{Path(args.out).resolve()}')
    return 0


def _log(line):
    """Progress on stderr (stdout holds the result)."""
    print(line, file=sys.stderr, flush=True)
