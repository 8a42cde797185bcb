"""`pose6d demo-object` (the printable demo box) and `pose6d demo` (a held-out run)."""

from __future__ import annotations

from pathlib import Path

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.tools.cli_args import positive_float, positive_int, size


def register(commands):
    """Add the demo-object sub-command to the `pose6d` parser."""
    demo = commands.add_parser(
        'demo-object', help='write the demo object (a 7 x 6 x 5 cm box): mesh, texture, '
                            'objects.yaml and a printable net to make a real one',
        description='Writes demo_box.obj/.mtl + demo_box_texture.png (mesh in metres), '
                    'objects.yaml, and demo_box_net.pdf / demo_box_net.png: the net to print '
                    'at 100%, cut, fold and glue. The same command always writes the same '
                    'mesh and texture.')
    demo.add_argument('--out', required=True, metavar='DIR', help='output folder')
    demo.add_argument('--force', action='store_true',
                      help='write into a non-empty DIR (replaces files of the same names)')
    demo.add_argument('--px-per-mm', type=positive_float, default=4.0, metavar='N',
                      help='texture resolution in pixels per millimetre (default: 4)')
    demo.set_defaults(run=_run_demo_object)

    run = commands.add_parser(
        'demo', help='run the bundled model on a held-out rendered sequence of the demo box',
        description='Renders a short sequence of the demo box (new backgrounds, a shape passing '
                    'in front of it), runs the bundled model through the estimator, and writes '
                    'annotated frames (the estimate, the true box in thin white, ADD and 2D '
                    'pass/fail badges), an animated GIF, the poses and the accuracy against the '
                    'rendered ground truth.')
    run.add_argument('--out', default='pose6d_demo', metavar='DIR',
                     help='output folder (default: ./pose6d_demo); an existing non-empty one '
                          'is replaced only with --force')
    run.add_argument('--force', action='store_true',
                     help='replace DIR as a whole (an earlier demo run, or anything else)')
    run.add_argument('--model', metavar='BUNDLE', help='model bundle (default: the bundled one)')
    run.add_argument('--frames', type=positive_int, default=24, help='frames (default: 24)')
    run.add_argument('--size', type=size, default=(640, 480), metavar='WxH',
                     help='image size (default: 640x480)')
    run.add_argument('--seed', type=int, default=2026)
    run.add_argument('--device', default='auto', help='auto, cpu or cuda (default: auto)')
    run.set_defaults(run=_run_demo)


def _run_demo(args):
    from pose6d_ros.tools.demo import run_demo  # deferred: torch (fast --help)

    run_demo(out=args.out, model=args.model, frames=args.frames, size=args.size,
             seed=args.seed, device=args.device, force=args.force)
    return 0


def _run_demo_object(args):
    from pose6d_ros.tools import demo_object  # deferred: matplotlib (fast --help)

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise Pose6dError(f'--out {out} is a file; expected a folder (new or empty)')
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise Pose6dError(f'--out {out} is not empty; choose a new or empty folder, or add '
                          '--force to write into it')
    written = demo_object.generate(out, px_per_mm=args.px_per_mm)
    print(f'{demo_object.NAME}: {demo_object.size_cm_text()} cm box, object id '
          f'{demo_object.OBJECT_ID}; wrote:')
    for path in written.values():
        print(f'  {path}')
    if demo_object.NET_PDF_FILE in written:
        print(f'To make one: print {written[demo_object.NET_PDF_FILE]} on A4 or US Letter at '
              '100% ("actual size", no "fit to page"), on thick paper; check that the scale '
              'bar measures 5.0 cm; cut the solid lines, fold the dashed ones (printed side '
              'out) and glue the grey tabs inside.')
    return 0
