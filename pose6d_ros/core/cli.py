"""The `pose6d` command: one entry point for the offline tools.

Sub-commands import their heavy modules lazily, so `pose6d --help` stays instant.
Bad input ends with one line `pose6d: error: ...` on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys

from pose6d_ros import __version__
from pose6d_ros.core.errors import Pose6dError


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

    bench = commands.add_parser('bench', help='benchmarks, JSON out')
    benches = bench.add_subparsers(dest='bench', metavar='WHAT')
    benches.required = True
    pnp = benches.add_parser('pnp', help='microseconds per PnP solve (9 points, RANSAC + LM)')
    pnp.add_argument('--trials', type=_positive_int, default=2000)
    pnp.add_argument('--threads', type=_positive_int, default=1,
                     help='OpenCV threads (default: 1, one CPU core)')
    pnp.add_argument('--seed', type=int, default=0)
    pnp.set_defaults(run=_run_bench_pnp)
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
    from pose6d_ros.core import selfcheck

    report = selfcheck.run(trials=args.trials, seed=args.seed)
    print(json.dumps(report, indent=2) if args.json else selfcheck.format_report(report))
    return 0 if report['passed'] else 1


def _run_bench_pnp(args):
    from pose6d_ros.core.bench import bench_pnp

    print(json.dumps(bench_pnp(trials=args.trials, seed=args.seed, threads=args.threads),
                     indent=2))
    return 0


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a positive integer; got {text!r}') from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f'expected a positive integer; got {value}')
    return value


if __name__ == '__main__':
    sys.exit(main())
