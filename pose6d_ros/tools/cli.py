"""The `pose6d` command: one entry point for the offline tools.

The parser is built from light modules (cli_*.py: argument parsing only); each sub-command
imports its heavy modules (torch, OpenGL, rosbags) when it runs, so `pose6d --help` stays
instant.
Bad input ends with one line `pose6d: error: ...` on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from pose6d_ros import __version__
from pose6d_ros.core.data import synth
from pose6d_ros.core.data.synth import bench_synth
from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.tracking.tracker import TrackerConfig
from pose6d_ros.tools import cli_calibrate, cli_demo, cli_tools, cli_train, selfcheck
from pose6d_ros.tools.cli_args import gate as _gate
from pose6d_ros.tools.cli_args import hits_of_window as _hits_of_window
from pose6d_ros.tools.cli_args import id_list as _id_list
from pose6d_ros.tools.cli_args import non_negative_int as _non_negative_int
from pose6d_ros.tools.cli_args import positive_float as _positive_float
from pose6d_ros.tools.cli_args import positive_int as _positive_int
from pose6d_ros.tools.cli_args import size as _size
from pose6d_ros.tools.show import format_summary, show_dataset


def build_parser():
    parser = argparse.ArgumentParser(
        prog='pose6d',
        description='6D object pose from one RGB camera: tools for models and data.')
    parser.add_argument('--version', action='version', version=f'pose6d {__version__}')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')
    commands.required = True

    selfcheck = commands.add_parser(
        'selfcheck', help='check the geometry core end to end on built-in data')
    selfcheck.add_argument('--trials', type=_positive_int, default=500,
                           help='random poses to try (default: 500)')
    selfcheck.add_argument('--seed', type=int, default=0)
    selfcheck.add_argument('--json', action='store_true', help='print the report as JSON')
    selfcheck.set_defaults(run=_run_selfcheck)

    bench = commands.add_parser(
        'bench', help='speed of a model (or of PnP / synthetic data), JSON out',
        description='`pose6d bench --model BUNDLE`: per-stage latency of the estimator with '
                    'two references measured in the same run; `pose6d bench pnp|synth`.')
    bench.add_argument('--model', metavar='BUNDLE', help='model bundle to benchmark')
    bench.add_argument('--device', default='auto', help='auto, cpu or cuda (default: auto)')
    bench.add_argument('--size', type=_size, default=(640, 480), metavar='WxH',
                       help='camera image size (default: 640x480)')
    bench.add_argument('--frames', type=_positive_int, default=200,
                       help='timed frames after warm-up, at most (default: 200)')
    bench.add_argument('--seconds', type=_positive_float, default=4.0,
                       help='time budget of each timed path: it stops after this many seconds '
                            '(at least 3 frames) if --frames are not done (default: 4)')
    bench.add_argument('--warmup', type=_non_negative_int, default=5,
                       help='untimed frames first, at most (default: 5)')
    bench.add_argument('--compile', action='store_true',
                       help='torch.compile the network (with --onnx: our PyTorch reference)')
    bench.add_argument('--onnx', metavar='FILE',
                       help='time the network from this ONNX file of the bundle (onnxruntime, '
                            'CPU; e.g. from pose6d export --format onnx-int8), beside our '
                            'PyTorch path')
    bench.add_argument('--no-references', action='store_true',
                       help='skip the reference runs (eager fp32, DOPE-sized, and with --onnx '
                            'our PyTorch path)')
    bench.add_argument('--json', action='store_true', help='print only the JSON report')
    bench.set_defaults(run=_run_bench_model)
    benches = bench.add_subparsers(dest='bench', metavar='WHAT')
    pnp = benches.add_parser('pnp', help='microseconds per PnP solve (9 points, RANSAC + LM)')
    pnp.add_argument('--trials', type=_positive_int, default=2000)
    pnp.add_argument('--threads', type=_positive_int, default=1,
                     help='OpenCV threads (default: 1, one CPU core)')
    pnp.add_argument('--seed', type=int, default=0)
    pnp.set_defaults(run=_run_bench_pnp)
    params = benches.add_parser(
        'params', help='parameter counts (and GFLOPs) of the HRPose teacher/student, the '
                       'corners ResNet-18/50-h, and both on EfficientNet-Lite0, JSON')
    params.add_argument('--classes', type=_positive_int, nargs='+', default=[1, 8])
    params.add_argument('--flops', action='store_true',
                        help='also count GFLOPs (HRPose at 640x480, corners at 448x448)')
    params.add_argument('--fps', action='store_true',
                        help="also time each network's forward pass on this CPU")
    params.add_argument('--seconds', type=_positive_float, default=3.0,
                        help='with --fps: time budget per network (default: 3)')
    params.set_defaults(run=_run_bench_params)
    bench_synth = benches.add_parser(
        'synth', help='synthetic images per second (two objects, backgrounds, all workers)')
    bench_synth.add_argument('--images', type=_positive_int, default=200,
                             help='images to make (default: 200)')
    bench_synth.add_argument('--workers', type=_positive_int, default=None,
                             help='worker processes (default: one per CPU core)')
    bench_synth.add_argument('--size', type=_size, default=(640, 480), metavar='WxH',
                             help='image size (default: 640x480)')
    bench_synth.add_argument('--seed', type=_non_negative_int, default=0)
    bench_synth.add_argument('--image-format', choices=('jpg', 'png'), default='jpg',
                             help='rgb image files, as synth (default: jpg)')
    bench_synth.add_argument('--config', metavar='FILE',
                             help='synth config to time (as synth --config; default: defaults)')
    bench_synth.add_argument('--baseline-config', metavar='FILE',
                             help='another synth config timed in the same run, before --config; '
                                  'reports both speeds and their ratio')
    bench_synth.set_defaults(run=_run_bench_synth)
    tracking = benches.add_parser(
        'tracking', help='tracking off and on side by side on rendered sequences with ground '
                         'truth (ADD, jitter, identity switches, false tracks, rate), JSON',
        description='Renders a moving and a static sequence (two demo boxes found by the '
                    'model, a symmetric box found by a simulated detector, a passing ball) '
                    'and runs them with tracking off, with tracking and the network on every '
                    'frame, and with the network every --network-every frames. --soak N runs '
                    'the tracking path for N frames instead (memory and latency drift).')
    tracking.add_argument('--model', metavar='BUNDLE',
                          help='model bundle (default: the bundled demo model)')
    tracking.add_argument('--device', default='cpu', help='cpu or cuda (default: cpu)')
    tracking.add_argument('--frames', type=_positive_int, default=90,
                          help='frames per sequence, at 30 fps (default: 90)')
    tracking.add_argument('--size', type=_size, default=(640, 480), metavar='WxH',
                          help='image size (default: 640x480)')
    tracking.add_argument('--network-every', type=_positive_int, default=5, metavar='N',
                          help='run the network every N frames on the tracking path '
                               '(default: 5)')
    tracking.add_argument('--seed', type=_non_negative_int, default=0)
    tracking.add_argument('--soak', type=_positive_int, metavar='N',
                          help='instead: the tracking path over N frames; resident memory '
                               'and latency p99 over time')
    tracking.add_argument('--max-seconds', type=_positive_float, metavar='S',
                          help='with --soak: stop after S seconds (the report says so)')
    tracking.set_defaults(run=_run_bench_tracking)

    synth = commands.add_parser(
        'synth', help='render a synthetic BOP-format training set from meshes',
        description='Render random scenes of the objects on photographs or procedural '
                    'backgrounds, with photometric jitter, into a BOP-format dataset. '
                    'Rerunning the same command continues an interrupted run.')
    synth.add_argument('--objects', required=True, metavar='PATH',
                       help='objects YAML, or a BOP models_info.json (or its folder)')
    synth.add_argument('--out', required=True, metavar='DIR', help='output dataset folder')
    synth.add_argument('--images', required=True, type=_positive_int,
                       help='number of images in the dataset')
    synth.add_argument('--backgrounds', metavar='DIR',
                       help='folder of photographs (.jpg .jpeg .png .bmp, searched '
                            'recursively); default: procedural backgrounds only')
    synth.add_argument('--camera', metavar='FILE',
                       help='camera calibration (ROS YAML or BOP camera.json); default: '
                            '640x480, fx = fy = 572, centred principal point')
    synth.add_argument('--seed', type=_non_negative_int, default=0,
                       help='random seed: the same seed gives the same images (default: 0)')
    synth.add_argument('--workers', type=_positive_int, default=None,
                       help='worker processes (default: one per CPU core)')
    synth.add_argument('--force', action='store_true',
                       help='write into a non-empty DIR that is not a run with the same '
                            'settings (deletes its train/, models/, synth.json, summary.json)')
    synth.add_argument('--config', metavar='FILE',
                       help='YAML with sections scene:, lighting:, shadows:, photometric:, '
                            'backgrounds: (see SceneConfig, LightingConfig, Shadows and '
                            'Photometric in pose6d_ros.core.data)')
    synth.add_argument('--object-ids', type=_id_list, metavar='IDS',
                       help='comma-separated object ids to synthesise (default: '
                            'scene.object_ids of --config, else all)')
    synth.add_argument('--image-format', choices=('jpg', 'png'), default='jpg',
                       help='rgb image files: jpg (quality 95, fast, as BOP PBR) or png '
                            '(lossless, slower) (default: jpg)')
    synth.set_defaults(run=_run_synth)

    show = commands.add_parser(
        'show', help="draw a BOP-format dataset's ground truth on a few images (PNG)",
        description="Draws each instance's 3D box, axes, 9 keypoints (numbered), visible-mask "
                    "outline and name with its image's camera on a few images of a BOP-format "
                    'dataset (as pose6d synth writes, or any BOP split), and writes them as one '
                    'contact sheet.')
    show.add_argument('--data', required=True, metavar='DIR',
                      help='BOP-format dataset folder (or one of its split or scene folders)')
    show.add_argument('--out', metavar='PNG',
                      help='contact sheet to write (default: ./<dataset folder name>_gt.png)')
    show.add_argument('--images', type=int, default=12, metavar='N',
                      help='images to draw (default: 12, spread evenly over the split)')
    show.add_argument('--seed', type=_non_negative_int,
                      help='draw the images at random with this seed instead')
    show.add_argument('--split', help='split folder (default: the only one there)')
    show.add_argument('--scene', type=_non_negative_int, metavar='ID',
                      help='only this scene of the split')
    show.add_argument('--force', action='store_true', help='overwrite an existing PNG')
    show.set_defaults(run=_run_show)

    for module in (cli_train, cli_demo, cli_tools, cli_calibrate):
        module.register(commands)

    bag = commands.add_parser(
        'bag', help='run a model over a recorded ROS 2 bag (sqlite3 or mcap; no ROS install '
                    'needed) and write a bag with poses, detections, markers, TF and overlays')
    bag.add_argument('--model', required=True, metavar='BUNDLE', help='model bundle folder')
    bag.add_argument('--in', dest='in_bag', required=True, metavar='IN_BAG',
                     help='input bag (folder with metadata.yaml, or a .db3 / .mcap file)')
    bag.add_argument('--out', dest='out_bag', required=True, metavar='OUT_BAG',
                     help='output bag folder (written under a temporary name, then moved)')
    bag.add_argument('--image-topic', default='/camera/image_raw',
                     help='sensor_msgs/Image or CompressedImage topic '
                          '(default: /camera/image_raw)')
    bag.add_argument('--info-topic', default='/camera/camera_info',
                     help='sensor_msgs/CameraInfo topic (default: /camera/camera_info)')
    bag.add_argument('--ns', default='/pose6d',
                     help='namespace of the output topics (default: /pose6d)')
    bag.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto',
                     help='where the network runs (default: auto, CUDA when present)')
    bag.add_argument('--onnx', metavar='FILE',
                     help='run the network from this ONNX file of the bundle with onnxruntime '
                          "on the CPU (as the node's onnx_model parameter)")
    bag.add_argument('--min-score', type=float, default=None,
                     help="keep instances with at least this score (default: the model's: "
                          "its card's min_score, 0.5 when it has none)")
    bag.add_argument('--max-reprojection-error', type=float, default=0.0, metavar='PX',
                     help='keep instances whose PnP error is at most this (default: 0, no limit)')
    bag.add_argument('--objects', nargs='+', default=(), metavar='NAME',
                     help='keep only these objects (default: all the model knows)')
    bag.add_argument('--storage', choices=('same', 'sqlite3', 'mcap'), default='same',
                     help='storage of the output bag (default: same as the input)')
    bag.add_argument('--distro', choices=('auto', 'humble', 'jazzy'), default='auto',
                     help='message definitions written for the outputs (default: the '
                          "input bag's distribution, else jazzy)")
    bag.add_argument('--no-debug-image', action='store_true',
                     help='do not write the overlay images (a much smaller bag)')
    bag.add_argument('--force', action='store_true', help='overwrite an existing output bag')
    bag_tracking = bag.add_argument_group(
        'tracking', "the node's tracker over the bag, on the image stamps (docs/ros.md, "
                    '"Tracking"); each option is the node parameter tracking_<name>')
    bag_tracking.add_argument(
        '--tracking', action='store_true',
        help='track objects: stable ids <object>_<track id>, filtered poses, confirmation, '
             'KLT + PnP between network runs')
    defaults = TrackerConfig()   # the tracker's own defaults, as the node's parameters take them
    bag_tracking.add_argument(
        '--network-every', type=_positive_int, default=defaults.network_every, metavar='N',
        help=f'with --tracking: the network every N frames (default: {defaults.network_every})')
    bag_tracking.add_argument(
        '--confirm', type=_hits_of_window, metavar='N/M',
        default=(defaults.confirm_hits, defaults.confirm_window),
        help='with --tracking: publish a track once seen in N of its last M network runs '
             f'(default: {defaults.confirm_hits}/{defaults.confirm_window})')
    bag_tracking.add_argument(
        '--track-timeout', type=_positive_float, default=defaults.timeout_s, metavar='S',
        help=f'with --tracking: drop a track unseen for S seconds (default: '
             f'{defaults.timeout_s:g})')
    bag_tracking.add_argument(
        '--gate', type=_gate, default=(defaults.gate_distance, defaults.gate_angle_deg),
        metavar='M/DEG',
        help='with --tracking: a jump beyond M metres or DEG degrees is held back until '
             f'confirmed (default: {defaults.gate_distance:g}/{defaults.gate_angle_deg:g})')
    bag_tracking.add_argument(
        '--track-filter', choices=('constant_velocity', 'none'), default='constant_velocity',
        help='with --tracking: the pose filter (default: constant_velocity)')
    bag.set_defaults(run=_run_bag)
    return parser


def main(argv=None):
    """Entry point of the `pose6d` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except Pose6dError as exc:
        print(f'pose6d: error: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('pose6d: interrupted', file=sys.stderr)
        return 130


def _run_selfcheck(args):

    report = selfcheck.run(trials=args.trials, seed=args.seed)
    print(json.dumps(report, indent=2) if args.json else selfcheck.format_report(report))
    return 0 if report['passed'] else 1


def _run_bench_model(args):
    if not args.model:
        raise Pose6dError('pose6d bench needs --model BUNDLE (or a sub-command: pnp, synth)')
    from pose6d_ros.tools.bench import bench_model, format_bench  # deferred: torch

    report = bench_model(args.model, device=args.device, size=args.size, frames=args.frames,
                         warmup=args.warmup, compile_network=args.compile,
                         references=not args.no_references, onnx=args.onnx,
                         seconds=args.seconds,
                         log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(report, indent=2) if args.json else format_bench(report))
    return 0


def _run_bench_params(args):
    from pose6d_ros.tools.bench import parameter_counts  # deferred: torch

    report = parameter_counts(args.classes, args.flops, fps=args.fps, seconds=args.seconds,
                              log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(report, indent=2))
    return 0


def _run_bench_pnp(args):
    from pose6d_ros.tools.bench import bench_pnp  # deferred: torch

    print(json.dumps(bench_pnp(trials=args.trials, seed=args.seed, threads=args.threads),
                     indent=2))
    return 0


def _run_bench_tracking(args):
    from pose6d_ros.tools import bench_tracking  # deferred: torch and OpenGL

    def log(line):
        print(line, file=sys.stderr, flush=True)

    if args.max_seconds is not None and args.soak is None:
        raise Pose6dError('--max-seconds applies to --soak N; add --soak or drop it')
    if args.soak is not None:
        report = bench_tracking.soak(args.model, args.soak, args.size, args.network_every,
                                     args.seed, args.device, args.max_seconds, log=log)
    else:
        report = bench_tracking.bench_tracking(args.model, args.frames, args.size,
                                               args.network_every, args.seed, args.device,
                                               log=log)
    print(json.dumps(report, indent=2))
    return 0


def _run_bench_synth(args):

    width, height = args.size
    config = synth.SynthConfig.load(args.config) if args.config else None
    baseline = synth.SynthConfig.load(args.baseline_config) if args.baseline_config else None
    print(json.dumps(bench_synth(images=args.images, workers=args.workers, width=width,
                                 height=height, seed=args.seed, image_format=args.image_format,
                                 config=config, baseline=baseline), indent=2))
    return 0


def _run_synth(args):

    camera = CameraModel.load(args.camera) if args.camera else None
    config = synth.SynthConfig.load(args.config) if args.config else None
    summary = synth.synthesize(
        args.objects, args.out, args.images, backgrounds=args.backgrounds, camera=camera,
        seed=args.seed, workers=args.workers or os.cpu_count() or 1, force=args.force,
        config=config, object_ids=args.object_ids, image_format=args.image_format,
        log=lambda text: print(text, file=sys.stderr))
    print(synth.format_summary(summary, args.out))
    return 0


def _run_show(args):

    print(format_summary(show_dataset(args.data, args.out, images=args.images, seed=args.seed,
                                      split=args.split, scene=args.scene, force=args.force)))
    return 0


def _run_bag(args):
    # deferred: rosbags and torch (never rclpy), only when this sub-command runs
    from pose6d_ros.ros.bag import run_bag
    from pose6d_ros.ros.pipeline import (
        load_estimator,
        MODEL_MIN_SCORE,
        PipelineConfig,
        resolve_min_score,
    )

    hits, window = args.confirm
    min_score = MODEL_MIN_SCORE if args.min_score is None else args.min_score
    if min_score == MODEL_MIN_SCORE and args.min_score is not None:
        raise Pose6dError(f'--min-score must be a number in [0, 1] (leave it out for the '
                          f"model's default); got {args.min_score!r}")
    config = PipelineConfig(min_score=min_score,
                            max_reprojection_error=args.max_reprojection_error,
                            objects=tuple(args.objects), tracking=args.tracking,
                            tracking_network_every=args.network_every,
                            tracking_confirm_hits=hits, tracking_confirm_window=window,
                            tracking_timeout=args.track_timeout,
                            tracking_gate_distance=args.gate[0],
                            tracking_gate_angle=args.gate[1],
                            tracking_filter=args.track_filter)
    config.validated()
    estimator = load_estimator(args.model, args.device, onnx=args.onnx or '')
    print(f'pose6d bag: model {args.model} on {getattr(estimator, "device", "?")} with '
          f'{getattr(estimator, "backend", "pytorch")}, min_score '
          f'{resolve_min_score(min_score, estimator):g}', file=sys.stderr)
    summary = run_bag(estimator, args.in_bag, args.out_bag, image_topic=args.image_topic,
                      info_topic=args.info_topic, ns=args.ns, config=config,
                      storage=None if args.storage == 'same' else args.storage,
                      distro=None if args.distro == 'auto' else args.distro,
                      debug_image=not args.no_debug_image, force=args.force,
                      progress=sys.stderr.isatty())
    print(summary.format())
    return 0


if __name__ == '__main__':
    sys.exit(main())
