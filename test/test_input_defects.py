"""A broken YAML file is one line naming it, wherever it is read; outputs follow the umask."""

import os
import stat

import pytest
import torch

from pose6d_ros.core.config_fields import load_yaml
from pose6d_ros.core.data.synth import SynthConfig
from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.files import make_temp_dir
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.objects import ObjectModel, ObjectSet
from pose6d_ros.core.geometry.poses import box_keypoints
from pose6d_ros.core.inference.bundle import CARD, load_bundle, OBJECTS, save_bundle, WEIGHTS
from pose6d_ros.core.training.train import load_config
from pose6d_ros.tools import cli
from pose6d_ros.tools.report import bundle_info, write_eval_folder

BROKEN = 'method: keypoints\n lr: 0.01\n'  # an indented key: not a mapping value here
PROBLEM = 'line 2, column 4: mapping values are not allowed here'


def _broken_bundle(tmp_path):
    folder = tmp_path / 'bundle'
    folder.mkdir()
    for name in (WEIGHTS, OBJECTS):
        (folder / name).write_bytes(b'')
    (folder / CARD).write_text(BROKEN)
    return folder, folder / CARD


def _broken_file(tmp_path, name):
    path = tmp_path / name
    path.write_text(BROKEN)
    return path, path


READERS = {
    'object set': lambda tmp: (ObjectSet.load, *_broken_file(tmp, 'objects.yaml')),
    'config file': lambda tmp: (SynthConfig.load, *_broken_file(tmp, 'scene.yaml')),
    'training config': lambda tmp: (load_config, *_broken_file(tmp, 'train.yaml')),
    'camera file': lambda tmp: (CameraModel.load, *_broken_file(tmp, 'camera.yaml')),
    'bundle card': lambda tmp: (load_bundle, *_broken_bundle(tmp)),
}


@pytest.mark.parametrize('what', sorted(READERS))
def test_a_broken_yaml_file_is_one_line_with_its_name_line_and_column(tmp_path, what):
    read, argument, path = READERS[what](tmp_path)
    with pytest.raises(Pose6dError) as error:
        read(argument)
    assert str(error.value) == f'cannot read {what} {path}: {PROBLEM}'


def test_bundle_info_reads_the_card_the_same_way(tmp_path):
    folder, card = _broken_bundle(tmp_path)
    with pytest.raises(Pose6dError, match=rf'^cannot read bundle card {card}: {PROBLEM}$'):
        bundle_info(folder)


def test_the_command_prints_a_broken_training_config_in_one_line(tmp_path, capsys):
    config, _ = _broken_file(tmp_path, 'train.yaml')
    argv = ['train', '--config', str(config), '--data', str(tmp_path), '--out',
            str(tmp_path / 'o')]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err == f'pose6d: error: cannot read training config {config}: {PROBLEM}\n'


@pytest.mark.parametrize('text, problem', [
    ('objects: [\n', "line 2, column 1: expected the node content, but found '<stream end>' "
                     '(while parsing a flow node)'),
    ('name: "ape\n', 'line 2, column 1: found unexpected end of stream (while scanning a quoted '
                     'scalar started at line 1, column 7)'),
    ('a:\n  b: \x07\n', 'line 2, column 6: special characters are not allowed (character '
                        '#x0007)'),
])
def test_load_yaml_problems(tmp_path, text, problem):
    path = tmp_path / 'file.yaml'
    path.write_text(text)
    with pytest.raises(Pose6dError, match=r'^cannot read test file .*file\.yaml: (.*)$') as error:
        load_yaml(path, 'test file')
    assert str(error.value).endswith(problem) and '<unicode string>' not in str(error.value)


def test_load_yaml_unreadable_files(tmp_path):
    (tmp_path / 'latin1.yaml').write_bytes(b'name: caf\xe9\n')
    with pytest.raises(Pose6dError, match=r'latin1\.yaml: byte 9 is not UTF-8 text'):
        load_yaml(tmp_path / 'latin1.yaml', 'test file')
    with pytest.raises(Pose6dError, match=r'missing\.yaml: No such file or directory$'):
        load_yaml(tmp_path / 'missing.yaml', 'test file')
    (tmp_path / 'empty.yaml').write_text('')
    assert load_yaml(tmp_path / 'empty.yaml', 'test file') is None


# --- output folders ---------------------------------------------------------------------------


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_a_bundle_folder_is_readable_by_other_users(tmp_path, umask_022):
    objects = ObjectSet([ObjectModel('box', 1, box_keypoints([-0.02] * 3, [0.02] * 3), 0.07)])
    path = save_bundle(tmp_path / 'bundle', 'keypoints', {}, {'w': torch.zeros(2)}, objects,
                       (96, 72))
    assert _mode(path) == 0o755
    assert {_mode(p) for p in path.iterdir()} == {0o644}


def test_an_eval_output_folder_is_readable_by_other_users(tmp_path, umask_022):
    out = tmp_path / 'eval'
    write_eval_folder(out, {'markdown': 'no images', 'negative_rows': [('a.png', 0.1, None)]},
                      None, None)
    assert _mode(out) == 0o755
    assert sorted(p.name for p in out.iterdir()) == [
        'metrics.json', 'metrics.md', 'negatives.csv']


def test_make_temp_dir_follows_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        first = make_temp_dir(tmp_path / 'new', '.out.', '.partial')
        second = make_temp_dir(tmp_path / 'new', '.out.', '.partial')
    finally:
        os.umask(previous)
    assert first != second and _mode(first) == 0o750
    assert first.name.startswith('.out.') and first.name.endswith('.partial')
    assert sorted(os.listdir(tmp_path / 'new')) == sorted([first.name, second.name])
