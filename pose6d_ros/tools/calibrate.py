"""`pose6d calibrate`: a printable chessboard, and a camera's intrinsics from pictures of it.

    pose6d calibrate --target board.pdf                        # print it at 100%
    pose6d calibrate --images shots/ --out webcam.yaml         # a folder of pictures
    pose6d calibrate --video 0 --out webcam.yaml               # a camera (or a video file)

The YAML is the ROS calibration file (camera_info_manager's format) with the RMS
reprojection error and the other figures of the fit in its '#' header; the camera node's
`camera_info_url`, `pose6d predict --camera` and `pose6d synth --camera` read it. The work is
in pose6d_ros.core.geometry.calibration; this module reads the pictures, draws the target and
writes the files.
"""

from __future__ import annotations

from datetime import datetime
import io
from pathlib import Path

import cv2
import numpy as np

from pose6d_ros.core.data.capture import FrameSource, IMAGE_SUFFIXES
from pose6d_ros.core.errors import CalibrationError, Pose6dError
from pose6d_ros.core.files import write_atomic
from pose6d_ros.core.geometry.calibration import (
    calibrate,
    CalibrationLimits,
    check_camera_name,
    find_corners,
    ros_calibration_yaml,
    View,
)

A4_MM = (297.0, 210.0)      # landscape; the target is turned to portrait when it fits better
LETTER_MM = (279.4, 215.9)
SIDE_MARGIN_MM = 12.0       # white around the board, at least, on a sheet
TEXT_MARGIN_MM = 14.0       # above and below the board, for the text
STREAM_VIEWS_PER_SECOND = 5.0  # frames of a video looked at per second of video


# --- the target -------------------------------------------------------------------------------


def target_page(board):
    """(page width, page height) in mm: A4, landscape unless the board fits only portrait.

    CalibrationError when the board does not fit an A4 sheet either way.
    """
    across, down = board.squares
    width, height = across * board.square * 1e3, down * board.square * 1e3
    for page in (A4_MM, A4_MM[::-1]):
        if (width + 2 * SIDE_MARGIN_MM <= page[0]
                and height + 2 * max(SIDE_MARGIN_MM, TEXT_MARGIN_MM) <= page[1]):
            return page
    raise CalibrationError(
        f'a board of {board.describe()} is {width:.0f} x {height:.0f} mm: it does not fit an '
        f'A4 sheet ({A4_MM[0]:.0f} x {A4_MM[1]:.0f} mm with margins); give a smaller --square '
        'or fewer corners')


def target_figure(board):
    """A matplotlib Figure of the printable target, axes in mm from the page's lower left.

    The squares are vector rectangles of exactly `board.square`, so the PDF prints them at
    that size at 100%; the text says the size and what to do.
    """
    # deferred: matplotlib is heavy to import and only the target needs it
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    page_w, page_h = target_page(board)
    figure = Figure(figsize=(page_w / 25.4, page_h / 25.4))
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    axes.set_xlim(0.0, page_w)
    axes.set_ylim(0.0, page_h)
    axes.set_axis_off()
    side = board.square * 1e3
    across, down = board.squares
    left, bottom = (page_w - across * side) / 2.0, (page_h - down * side) / 2.0
    for row in range(down):        # row 0 at the top: its first square is black
        for column in range(across):
            if (row + column) % 2 == 0:
                axes.add_patch(Rectangle((left + column * side, bottom + (down - 1 - row) * side),
                                         side, side, facecolor='black', edgecolor='none',
                                         antialiased=False))
    square_mm = f'{side:.1f} mm'
    top = bottom + down * side
    axes.text(left, top + 6.0,
              f'pose6d calibration target: chessboard of {board.columns} x {board.rows} inner '
              f'corners ({across} x {down} squares), squares {square_mm}',
              fontsize=10, fontweight='bold', va='bottom')
    axes.text(left, bottom - 5.0,
              f'Print at 100% ("actual size", not "fit to page"), then measure a square: it '
              f'must be {square_mm} (if not, give the size you measure to --square). Glue it '
              'flat on stiff card.', fontsize=7.5, va='top')
    axes.text(left, bottom - 9.0,
              f'pose6d calibrate --images DIR --board {board.columns}x{board.rows} --square '
              f'{board.square:g} --out camera.yaml', fontsize=7.5, va='top', family='monospace')
    return figure


def target_pdf(board):
    """The target's one-page PDF (bytes); the same board gives the same bytes."""
    buffer = io.BytesIO()
    # No creation date: the same call gives the same file.
    target_figure(board).savefig(buffer, format='pdf', metadata={'CreationDate': None})
    return buffer.getvalue()


def write_target(path, board, force=False):
    """Write the target PDF to `path` (atomically); returns (path, page size in mm)."""
    path = Path(path)
    _check_output(path, force)
    data = target_pdf(board)
    write_atomic(path, data)
    return path, target_page(board)


# --- views ------------------------------------------------------------------------------------


def views_from_images(folder, board, log=None):
    """Views of every image in `folder`: (views, names without a board, image size).

    CalibrationError when the folder holds no images or images of different sizes.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f'images folder not found: {folder}')
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                   and p.is_file())
    if not paths:
        raise CalibrationError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in {folder}')
    views, without, size = [], [], None
    for path in paths:
        image = _read_image(path)
        this_size = (image.shape[1], image.shape[0])
        if size is None:
            size = this_size
        elif this_size != size:
            raise CalibrationError(f'{path.name} is {this_size[0]}x{this_size[1]} but '
                                   f'{paths[0].name} is {size[0]}x{size[1]}; every picture must '
                                   'come from the same camera at the same resolution')
        corners = find_corners(image, board)
        if corners is None:
            without.append(path.name)
        else:
            views.append(View(path.name, corners))
        if log is not None:
            log(f'{path.name}: {"board found" if corners is not None else "no whole board"}')
    return views, without, size


def _read_image(path):
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if image is None:
        raise CalibrationError(f'cannot read image {path}: not a readable image file')
    return image


def views_from_stream(source, board, max_views=20, log=None):
    """Distinct, still views of the board from a camera or video (a FrameSource).

    A frame is kept when the board is found, has hardly moved since the frame looked at
    before it (so it is not blurred by motion: corners 1% of the image diagonal away on
    average) and some corner is 3% of the diagonal away from where it was in every view kept
    so far (a tilt moves the far corners most). Ends after `max_views`, at the end of a video,
    or on Ctrl-C. Returns (views, size).
    """
    stride = 1
    if source.kind == 'video':
        stride = max(1, round((source.nominal_fps or 30.0) / STREAM_VIEWS_PER_SECOND))
    views, previous, size = [], None, None
    try:
        while len(views) < max_views:
            frame = source.read()
            if frame is None:
                break
            if frame.index % stride:
                continue
            height, width = frame.rgb.shape[:2]
            size = (width, height)
            corners = find_corners(frame.rgb, board)
            diagonal = float(np.hypot(width, height))
            still = (previous is not None and corners is not None
                     and _distance(corners, previous, np.mean) < 0.01 * diagonal)
            previous = corners
            if not still:
                continue
            if all(_distance(corners, v.corners, np.max) >= 0.03 * diagonal for v in views):
                views.append(View(frame.name, corners))
                if log is not None:
                    log(f'view {len(views)} of {max_views}: {frame.name}')
    except KeyboardInterrupt:
        if log is not None:
            log(f'stopped: calibrating from the {len(views)} view(s) kept')
    return views, size


def _distance(a, b, reduce):
    """`reduce` (mean or max) of the corner displacements between two views (pixels).

    The corner order may come reversed from one view to the next (a board turned by 180
    degrees looks the same): the nearer of the two orders counts.
    """
    return float(min(reduce(np.linalg.norm(a - b, axis=1)),
                     reduce(np.linalg.norm(a - b[::-1], axis=1))))


# --- calibrating ------------------------------------------------------------------------------


def calibrate_and_write(views, board, size, out, camera_name='camera', without_board=(),
                        limits=None, k_coefficients=2, force=False, command=None):
    """Calibrate (CalibrationError when not good enough) and write the ROS YAML to `out`.

    Returns the Calibration.
    """
    out = Path(out)
    _check_output(out, force)
    check_camera_name(camera_name)
    if size is None:
        raise CalibrationError('no frame was read, so there is nothing to calibrate')
    result = calibrate(views, board, size, limits or CalibrationLimits(),
                       k_coefficients=k_coefficients, without_board=without_board)
    header = [f'pose6d calibrate, {datetime.now().astimezone().isoformat(timespec="seconds")}'
              + (f': {command}' if command else '')] + result.summary_lines()
    write_atomic(out, ros_calibration_yaml(result.camera, camera_name, header).encode())
    return result


def open_stream(spec):
    """A FrameSource for --video: a camera index or device, or a video file (not looping)."""
    source = FrameSource(spec)
    if source.kind not in ('device', 'video'):
        source.close()
        raise CalibrationError(f'--video {spec}: expected a camera (0, /dev/video0) or a video '
                               'file; give a folder of pictures with --images')
    return source


def _check_output(path, force):
    path = Path(path)
    if path.is_dir():
        raise Pose6dError(f'{path} is a folder; expected a file name')
    if path.exists() and not force:
        raise Pose6dError(f'{path} already exists; pass --force to overwrite it')
