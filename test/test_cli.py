"""The `pose6d` command: selfcheck, the benchmarks, and bad arguments."""

import json
import subprocess
import sys

import pytest

from pose6d_ros.tools import cli


def test_selfcheck_passes_and_reports_every_check(capsys):
    assert cli.main(['selfcheck', '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['passed'] is True
    assert report['checks']['pnp_1px_noise_within_1cm_1deg']['value'] >= 0.99
    assert report['checks']['add_identical_poses_is_zero']['value'] == 0.0
    assert report['pnp_us_per_solve_mean'] > 0


def test_bench_model_reports_every_stage_and_both_references(tiny_bundle, capsys):
    import torch

    threads = torch.get_num_threads()
    assert cli.main(['bench', '--model', str(tiny_bundle), '--device', 'cpu', '--size', '80x60',
                     '--frames', '3', '--warmup', '1', '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert torch.get_num_threads() == threads  # the benchmark leaves the process as it was
    assert report['benchmark'] == 'model' and report['image_size'] == [80, 60]
    stages = report['ours']['stages_ms']
    assert set(stages) == {'preprocess', 'network', 'decode', 'pnp', 'total'}
    for timing in stages.values():
        assert 0 <= timing['min'] <= timing['median'] <= timing['p95']
    parts = sum(stages[k]['median'] for k in ('preprocess', 'network', 'decode', 'pnp'))
    assert stages['total']['median'] >= 0.9 * stages['network']['median']
    assert parts > 0 and report['ours']['fps'] == pytest.approx(
        1e3 / stages['total']['median'], rel=0.01)
    for reference in ('reference_eager_fp32', 'reference_dope'):
        assert report[reference]['fps'] > 0 and report[reference]['decode_ms_median'] >= 0
    assert report['speedup_over_dope'] == pytest.approx(
        report['reference_dope']['total_ms_median'] / stages['total']['median'], rel=0.01)
    assert report['end_to_end_over_network'] >= 1.0 and report['peak_cpu_memory_mb'] > 0


def test_bench_defaults_fit_a_cpu_and_a_time_budget_ends_each_path(tiny_bundle, capsys):
    defaults = cli.build_parser().parse_args(['bench', '--model', 'BUNDLE'])
    assert (defaults.frames, defaults.warmup, defaults.seconds) == (200, 5, 4.0)
    # a budget that any frame exceeds: one warm-up frame, then the 3 frames a median needs
    assert cli.main(['bench', '--model', str(tiny_bundle), '--device', 'cpu', '--size', '80x60',
                     '--frames', '50', '--warmup', '4', '--seconds', '1e-9', '--json']) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)   # stdout holds the report alone
    assert report['frames'] == 50 and report['seconds'] == 1e-9 and report['warmup'] == 4
    for path in ('ours', 'reference_eager_fp32', 'reference_dope'):
        assert (report[path]['frames'], report[path]['warmup_frames']) == (3, 1), path
    assert len(report['ours']['stages_ms']) == 5
    # progress: a line as each stage starts and ends, on stderr
    lines = captured.err.splitlines()
    assert lines[0].startswith('bench: 32 frames of 80x60 (')   # at most 32, reused
    for name in ('ours (pytorch)', 'the eager fp32 reference', 'the DOPE-sized reference'):
        start = lines.index(f'bench: timing {name}: up to 50 frames or 1e-09 s after 4 '
                            'warm-up frames')
        assert lines[start + 1].startswith(f'bench: {name}: ') and (
            '(3 frames timed, ' in lines[start + 1]), lines


def test_selfcheck_fails_when_a_check_fails(capsys, monkeypatch):
    from pose6d_ros.tools import selfcheck

    real_run = selfcheck.run

    def broken_run(**kwargs):
        report = real_run(**kwargs)
        report['checks']['add_identical_poses_is_zero']['passed'] = False
        report['passed'] = False
        return report

    monkeypatch.setattr(selfcheck, 'run', broken_run)
    assert cli.main(['selfcheck', '--trials', '20']) == 1
    assert 'FAIL' in capsys.readouterr().out


def test_bench_pnp_prints_json_with_timings(capsys):
    assert cli.main(['bench', 'pnp', '--trials', '50']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['benchmark'] == 'pnp' and report['points'] == 9
    for case in ('clean', 'weighted', 'outliers_2_of_9'):
        assert report['cases'][case]['us_per_solve_median'] > 0
        assert report['cases'][case]['success_rate'] >= 0.9


@pytest.mark.parametrize('argv, message', [
    ([], 'required'),
    (['nonsense'], 'invalid choice'),
    (['selfcheck', '--trials', '0'], 'expected a positive integer; got 0'),
    (['bench', 'pnp', '--threads', 'two'], "expected a positive integer; got 'two'"),
    (['bench', '--seconds', '0'], "expected a positive number; got '0'"),
])
def test_bad_arguments_exit_non_zero_with_a_message(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code != 0
    assert message in capsys.readouterr().err


def test_user_errors_print_one_line_and_exit_1(capsys, monkeypatch):
    from pose6d_ros.core.errors import CameraError

    def failing(args):
        raise CameraError('camera K is all zeros')

    parser = cli.build_parser()
    monkeypatch.setattr(cli, 'build_parser', lambda: parser)
    parser._subparsers._group_actions[0].choices['selfcheck'].set_defaults(run=failing)
    assert cli.main(['selfcheck']) == 1
    assert capsys.readouterr().err.strip() == 'pose6d: error: camera K is all zeros'


def test_console_script_runs_as_a_module():
    result = subprocess.run([sys.executable, '-m', 'pose6d_ros.tools.cli', '--version'],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith('pose6d ')


def test_bench_params_reports_counts_near_the_paper(capsys):
    assert cli.main(['bench', 'params', '--classes', '1']) == 0
    report = json.loads(capsys.readouterr().out)
    student = report['keypoints']['student']['1']['params']
    teacher = report['keypoints']['teacher']['1']['params']
    assert 3.5e6 < student < 4.6e6 and 9.0e6 < teacher < 10.5e6
    assert report['corners']['resnet18_h']['1'] > report['keypoints']['student']['1']['params']


def test_network_fps_times_each_network_on_the_cpu():
    from torch import nn

    from pose6d_ros.tools.bench import network_fps, papers_networks

    lines = []
    small = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU())
    report = network_fps(1, seconds=1e-9, log=lines.append,
                         networks=[('small', small, (160, 120))])
    entry = report['small']
    assert entry['input'] == [160, 120] and entry['passes'] == 3 and entry['ms'] > 0
    assert entry['fps'] == pytest.approx(1000.0 / entry['ms'], rel=0.05)
    assert len(lines) == 1 and lines[0].startswith('bench: small at 160x120: ')
    names = [name for name, _, _ in papers_networks(2)]
    assert names == ['keypoints_teacher', 'keypoints_student', 'keypoints_lite0',
                     'corners_resnet18_h', 'corners_resnet50_h', 'corners_efficientnet_lite0_h']
    assert cli.build_parser().parse_args(['bench', 'params', '--fps']).fps is True
