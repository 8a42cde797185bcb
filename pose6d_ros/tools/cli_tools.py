"""Argument parsing of `pose6d eval`, `pose6d calibrate-scores`, `predict` and `export`.

Parsing only.

The work is done in report.py (eval and predict outputs), calibrate_scores.py (score
calibration) and export.py (ONNX); heavy imports happen when a sub-command runs, not when
the parser is built.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.geometry.camera import camera_from_field_of_view, FIELD_OF_VIEW_WARNING
from pose6d_ros.tools.cli_args import fraction as _fraction
from pose6d_ros.tools.cli_args import id_list as _id_list
from pose6d_ros.tools.cli_args import positive_int as _positive_int

VERDICT_CHOICES = ('iou_2d', 'add', 'proj_2d')  # core/inference/evaluate.py VERDICTS

ONNX_HELP = ('run the network from this ONNX file of the bundle with onnxruntime on the CPU '
             '(written by pose6d export, e.g. --format onnx-int8)')


def _field_of_view(text):
    """'60' -> 60.0: a horizontal field of view in degrees, strictly between 0 and 180."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 180.0:
        raise argparse.ArgumentTypeError(f'expected degrees between 0 and 180, e.g. 60; got '
                                         f'{text!r}')
    return value


def register(commands):
    """Add the eval, predict and export sub-commands to the `pose6d` parser."""
    evaluate = commands.add_parser(
        'eval', help='score a model bundle on a BOP-format dataset (metrics, table, curves, '
                     'BOP results CSV)',
        description='Run the model over the dataset and write metrics.json, metrics.md, '
                    'accuracy-vs-threshold plots (*_curve.png) and predictions.csv (BOP '
                    "results format) into DIR. Every estimate is scored (the papers' "
                    "protocol); the figure with the estimator's score and reprojection "
                    "filters is given beside it. Images without the model's objects "
                    '(--negatives, or those of --data) give the false-positive figure: the '
                    'share of them with a detection at each score threshold, and its curve.')
    evaluate.add_argument('--model', required=True, metavar='BUNDLE', help='model bundle folder')
    evaluate.add_argument('--data', metavar='DIR',
                          help='BOP-format dataset folder (or one of its split folders)')
    evaluate.add_argument('--negatives', metavar='DIR',
                          help="folder of images holding none of the model's objects "
                               '(searched recursively), or a BOP split (its images without '
                               'any instance of them): the share of them with a detection at '
                               'each score threshold')
    evaluate.add_argument('--camera', metavar='FILE',
                          help='calibration of the negative images (default: fx = fy = '
                               '0.9 max(W, H), centred)')
    evaluate.add_argument('--split', help='split folder (default: the only one there)')
    evaluate.add_argument('--objects', type=_id_list, metavar='IDS',
                          help='comma-separated object ids to score (default: all)')
    evaluate.add_argument('--out', metavar='DIR',
                          help='output folder (default: BUNDLE/eval/<dataset folder name>)')
    evaluate.add_argument('--device', default='auto',
                          help='auto (CUDA when present), cpu or cuda[:N] (default: auto)')
    evaluate.add_argument('--max-images', type=_positive_int, metavar='N',
                          help='evaluate only the first N images')
    evaluate.add_argument('--onnx', metavar='FILE', help=ONNX_HELP)
    evaluate.add_argument('--force', action='store_true', help='overwrite an existing DIR')
    evaluate.add_argument('--update-card', action='store_true',
                          help="write the false-positive figures into the bundle's card.yaml "
                               '(false_positives:, one entry per set of negative images, '
                               'replacing an earlier entry of the same name)')
    evaluate.set_defaults(run=_run_eval)

    calibrate = commands.add_parser(
        'calibrate-scores', help="calibrate a bundle's scores to precision and set its "
                                 'default min_score',
        description='Runs the bundle over a held-out BOP split with images without its objects '
                    '(pose6d synth with scene.negative_share; and/or --negatives) and fits the '
                    'map raw score -> precision (isotonic regression). Writes it into the '
                    'card (calibration:) with the lowest calibrated score that gives the target '
                    "precision as the model's default min_score, used by the estimator, the "
                    'node and pose6d bag unless a threshold is given. Prints that operating '
                    'point: threshold, precision, recall, false-positive rate.')
    calibrate.add_argument('--model', required=True, metavar='BUNDLE',
                           help='model bundle folder (its card.yaml is updated)')
    calibrate.add_argument('--data', required=True, metavar='DIR',
                           help='held-out BOP-format dataset, with images without the objects')
    calibrate.add_argument('--negatives', metavar='DIR',
                           help="more images without the model's objects: a folder "
                                '(searched recursively) or a BOP split')
    calibrate.add_argument('--camera', metavar='FILE',
                           help='calibration of the --negatives images (default: fx = fy = '
                                '0.9 max(W, H), centred)')
    calibrate.add_argument('--split', help='split folder of --data (default: the only one)')
    calibrate.add_argument('--target-precision', type=_fraction, default=0.99, metavar='P',
                           help='precision the default min_score must give (default: 0.99)')
    calibrate.add_argument('--max-false-positives', type=_fraction, metavar='RATE',
                           help='also at most this share of the images without objects with '
                                'a detection, e.g. 0.01')
    calibrate.add_argument('--verdict', choices=VERDICT_CHOICES, default='iou_2d',
                           help='what makes an estimate right: iou_2d (the object is there: '
                                'projected boxes overlap by IoU >= 0.5; default), add (ADD(-S) '
                                '< 0.1 d), proj_2d (2D projection < 5 px)')
    calibrate.add_argument('--device', default='auto',
                           help='auto (CUDA when present), cpu or cuda[:N] (default: auto)')
    calibrate.add_argument('--max-images', type=_positive_int, metavar='N',
                           help='use only the first N images of --data')
    calibrate.add_argument('--dry-run', action='store_true',
                           help='print the calibration and operating point; change nothing')
    calibrate.add_argument('--force', action='store_true',
                           help='replace the calibration of a bundle calibrated already')
    calibrate.set_defaults(run=_run_calibrate_scores)

    predict = commands.add_parser(
        'predict', help='estimate the poses in one image, or in every frame of a video or '
                        'camera; write an overlay image or video (and JSON)',
        description='Without --camera or --field-of-view, a pinhole camera with fx = fy = 0.9 '
                    'max(W, H) and a centred principal point is assumed (a warning says so). '
                    '--video checks a model on a camera before ROS: `pose6d predict --model '
                    'BUNDLE --video 0 --camera webcam.yaml --out overlay.mp4`, Ctrl-C to stop.')
    predict.add_argument('--model', required=True, metavar='BUNDLE', help='model bundle folder')
    inputs = predict.add_mutually_exclusive_group(required=True)
    inputs.add_argument('--image', metavar='IMG', help='image file (RGB)')
    inputs.add_argument('--video', metavar='FILE|DEVICE',
                        help='a video file, a camera (0, /dev/video0) or an image folder: every '
                             'frame')
    cameras = predict.add_mutually_exclusive_group()
    cameras.add_argument('--camera', metavar='FILE',
                         help='camera calibration: ROS camera YAML (pose6d calibrate) or BOP '
                              'camera.json')
    cameras.add_argument('--field-of-view', type=_field_of_view, metavar='DEG',
                         help='an uncalibrated camera: a rough K from its horizontal field of '
                              'view (degrees); distances will be off')
    predict.add_argument('--out', required=True, metavar='PNG|VIDEO',
                         help='overlay (3D boxes, axes and labels): a PNG for --image, a video '
                              '(.mp4 or .avi) for --video')
    predict.add_argument('--json', metavar='FILE',
                         help='also write the poses (quaternions x, y, z, w; metres)')
    predict.add_argument('--max-frames', type=_positive_int, metavar='N',
                         help='--video: stop after N frames (default: the whole video; a camera '
                              'until Ctrl-C)')
    predict.add_argument('--device', default='auto',
                         help='auto (CUDA when present), cpu or cuda[:N] (default: auto)')
    predict.add_argument('--onnx', metavar='FILE', help=ONNX_HELP)
    predict.add_argument('--force', action='store_true', help='overwrite existing outputs')
    predict.set_defaults(run=_run_predict)

    export = commands.add_parser(
        'export', help="export a bundle's network to ONNX, checked against PyTorch",
        description='Exports the network only (raw output tensors; decoding and PnP stay in '
                    'Python) and checks onnxruntime against PyTorch on a sample input. '
                    'onnx-int8: int8 weights and activations for a fast CPU path, calibrated '
                    "on --calibration images (default: views rendered from the bundle's "
                    'meshes) and checked by the keypoints it finds against fp32. Needs '
                    'pip install -e ".[export]".')
    export.add_argument('--model', required=True, metavar='BUNDLE', help='model bundle folder')
    export.add_argument('--format', required=True, choices=('onnx', 'onnx-int8'),
                        help='export format')
    export.add_argument('--out', metavar='FILE',
                        help='output file (default: BUNDLE/model.onnx or BUNDLE/model_int8.onnx)')
    export.add_argument('--opset', type=_positive_int, default=17,
                        help='ONNX opset version (default: 17)')
    export.add_argument('--dynamic-batch', action='store_true',
                        help='variable batch size (default: batch 1)')
    export.add_argument('--calibration', metavar='DIR',
                        help='onnx-int8: pose6d synth / BOP folder of calibration images '
                             "(default: views rendered from the bundle's meshes)")
    export.add_argument('--calibration-images', type=_positive_int, default=32, metavar='N',
                        help='onnx-int8: frames to calibrate on (default: 32; 8 more check)')
    export.add_argument('--max-keypoint-shift', type=float, default=2.0, metavar='PX',
                        help='onnx-int8: refuse when the keypoints move more than this '
                             '(median, network-input pixels) against fp32 (default: 2)')
    export.add_argument('--skip-check', action='store_true',
                        help='onnx-int8: write the file even when the check against fp32 '
                             'fails (to time an untrained network)')
    export.add_argument('--force', action='store_true', help='overwrite an existing FILE')
    export.set_defaults(run=_run_export)


def _command(args, names):
    """The command line that reproduces this run (its parsed values, quoted)."""
    words = ['pose6d', args.command_name]
    for name in names:
        value = getattr(args, name.replace('-', '_'))
        if value is None or value is False:
            continue
        words.append(f'--{name}')
        if value is not True:
            words.append(','.join(map(str, value)) if isinstance(value, list) else str(value))
    return ' '.join(shlex.quote(w) for w in words)


def _run_eval(args):
    # deferred: torch (fast --help)
    from pose6d_ros.tools.report import evaluate_model

    args.command_name = 'eval'
    command = _command(args, ('model', 'data', 'negatives', 'camera', 'split', 'objects', 'out',
                              'device', 'max-images', 'onnx', 'force', 'update-card'))
    document = evaluate_model(args.model, args.data, split=args.split, object_ids=args.objects,
                              out=args.out, device=args.device, max_images=args.max_images,
                              force=args.force, command=command, onnx=args.onnx,
                              negatives=args.negatives, camera=args.camera,
                              update=args.update_card)
    print(document['markdown'])
    print(f'written to {document["out"]}: {", ".join(document["files"])}')
    if document.get('card_updated'):
        print(f'card: false_positives of {", ".join(document["card_updated"])} written to '
              f'{args.model}/card.yaml')
    return 0


def _run_calibrate_scores(args):
    # deferred: torch (fast --help)
    from pose6d_ros.tools.calibrate_scores import calibrate_scores, format_report

    args.command_name = 'calibrate-scores'
    command = _command(args, ('model', 'data', 'negatives', 'camera', 'split',
                              'target-precision', 'max-false-positives', 'verdict', 'device',
                              'max-images', 'dry-run', 'force'))
    report = calibrate_scores(args.model, args.data, negatives=args.negatives, split=args.split,
                              camera=args.camera, target_precision=args.target_precision,
                              max_false_positive_rate=args.max_false_positives,
                              verdict=args.verdict, device=args.device,
                              max_images=args.max_images, force=args.force,
                              dry_run=args.dry_run, command=command)
    print(format_report(report))
    return 0


def _run_predict(args):
    # deferred: torch (fast --help)
    from pose6d_ros.core.inference.estimator import Estimator, EstimatorConfig
    from pose6d_ros.tools.report import bundle_info, predict_image, predict_video  # as above

    def warn(text):
        print(f'pose6d predict: warning: {text}', file=sys.stderr)

    estimator = Estimator.from_bundle(args.model, device=args.device,
                                      config=EstimatorConfig(onnx=args.onnx))
    if args.video is not None:
        summary = predict_video(estimator, args.video, args.out, camera=args.camera,
                                field_of_view=args.field_of_view, json_path=args.json,
                                max_frames=args.max_frames, force=args.force, warn=warn,
                                log=lambda text: print(f'pose6d predict: {text}',
                                                       file=sys.stderr))
        print(f'{summary["frames"]} frames, {summary["frames_with_objects"]} with an object '
              f'({1.0 / max(summary["estimator_seconds_median"], 1e-9):.1f} fps for the '
              f'estimator); video: {args.out}' + (f'; poses: {args.json}' if args.json else ''))
        return 0
    if args.max_frames is not None:
        raise Pose6dError('--max-frames goes with --video, not --image')
    camera = args.camera
    if args.field_of_view is not None:
        from pose6d_ros.tools.report import load_image_rgb  # deferred: as above

        height, width = load_image_rgb(args.image).shape[:2]
        camera = camera_from_field_of_view(width, height, args.field_of_view)
        warn(FIELD_OF_VIEW_WARNING.format(fov=args.field_of_view, focal=camera.fx))
    poses = predict_image(estimator, args.image, args.out, camera=camera,
                          json_path=args.json, force=args.force, bundle=bundle_info(args.model),
                          warn=warn)
    for pose in poses:
        x, y, z = pose.t
        print(f'{pose.object_name}: score {pose.score:.2f}, t = ({x:.3f}, {y:.3f}, {z:.3f}) m, '
              f'quat_xyzw = ({", ".join(f"{v:.4f}" for v in pose.quat_xyzw)})')
    print(f'{len(poses)} object(s); overlay: {args.out}' + (f'; poses: {args.json}'
                                                            if args.json else ''))
    return 0


def _run_export(args):
    # deferred: torch (fast --help)
    from pose6d_ros.core.inference.export import export_model, format_result

    int8_options = {}
    if args.format == 'onnx-int8':
        if args.dynamic_batch:
            print('pose6d export: note: onnx-int8 is written for batch 1; the estimator runs '
                  'a batch one image at a time', file=sys.stderr)
        int8_options = {'calibration': args.calibration, 'images': args.calibration_images,
                        'max_keypoint_shift': args.max_keypoint_shift,
                        'skip_check': args.skip_check}
    result = export_model(args.model, args.format, out=args.out, opset=args.opset,
                          dynamic_batch=args.dynamic_batch, force=args.force, log=print,
                          **int8_options)
    print(format_result(result))
    return 0
