"""The `pose6d` command: selfcheck, the PnP benchmark, and bad arguments."""

import json
import subprocess
import sys

import pytest

from pose6d_ros.core import cli


def test_selfcheck_passes_and_reports_every_check(capsys):
    assert cli.main(['selfcheck', '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['passed'] is True
    assert report['checks']['pnp_1px_noise_within_1cm_1deg']['value'] >= 0.99
    assert report['checks']['add_identical_poses_is_zero']['value'] == 0.0
    assert report['pnp_us_per_solve_mean'] > 0


def test_selfcheck_fails_when_a_check_fails(capsys, monkeypatch):
    from pose6d_ros.core import selfcheck

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
    result = subprocess.run([sys.executable, '-m', 'pose6d_ros.core.cli', '--version'],
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
