"""Nothing a user may have been handed runs code when it is loaded (checkpoints, bundles)."""

import pickle

import pytest
import torch

from pose6d_ros.tools import cli


class _CreatesAFile:
    """A pickle payload: unpickling it calls open(path, 'w'), as an attack would run code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, 'w'))


def _malicious_checkpoint(path, marker):
    state = {'model': {}, 'optimizer': {}, 'scheduler': {}, 'scaler': {}, 'epoch': 1,
             'iteration': 1, 'payload': _CreatesAFile(marker)}
    with open(path, 'wb') as handle:
        pickle.dump(state, handle)
    return path


def _train_args(data, out, *extra):
    return ['train', '--method', 'keypoints', '--data', str(data), '--out', str(out),
            '--input-size', '96x72', '--backbone', 'hrnet_tiny', '--epochs', '1',
            '--batch-size', '4', '--max-iterations', '1', '--workers', '0', '--device', 'cpu',
            '--quiet', *extra]


@pytest.mark.parametrize('flag', ['--resume', '--init-weights'])
def test_a_malicious_checkpoint_runs_nothing_and_is_one_line(flag, tiny_dataset, tmp_path,
                                                             capsys):
    marker = tmp_path / 'created_by_the_checkpoint'
    run = tmp_path / 'run'
    if flag == '--resume':
        run.mkdir()
        _malicious_checkpoint(run / 'checkpoint.pt', marker)
        extra = ['--resume']
    else:
        extra = ['--init-weights', str(_malicious_checkpoint(tmp_path / 'handed.pt', marker))]
    status = cli.main(_train_args(tiny_dataset, run, *extra))
    err = capsys.readouterr().err.strip()
    assert status == 1
    assert not marker.exists()
    assert err.startswith('pose6d: error: ') and '\n' not in err and 'Traceback' not in err
    assert 'checkpoint.pt' in err or 'handed.pt' in err
    assert 'refused' in err and 'weights_only' not in err  # never points at the unsafe loader


def test_a_truncated_checkpoint_is_one_line(tiny_dataset, tmp_path, capsys):
    broken = tmp_path / 'broken.pt'
    broken.write_bytes(b'PK\x03\x04 not really a zip')
    status = cli.main(_train_args(tiny_dataset, tmp_path / 'run', '--init-weights', str(broken)))
    err = capsys.readouterr().err.strip()
    assert status == 1 and 'broken.pt' in err and '\n' not in err


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_dataset, tmp_path):
    common = ['--method', 'keypoints', '--data', str(tiny_dataset), '--input-size', '96x72',
              '--backbone', 'hrnet_tiny', '--epochs', '2', '--batch-size', '4',
              '--workers', '0', '--device', 'cpu', '--quiet']
    assert cli.main(['train', *common, '--out', str(tmp_path / 'whole')]) == 0
    whole = torch.load(tmp_path / 'whole' / 'checkpoint.pt', weights_only=True)
    per_epoch = whole['iteration'] // 2
    split = tmp_path / 'split'
    assert cli.main(['train', *common, '--out', str(split),
                     '--max-iterations', str(per_epoch)]) == 0
    assert torch.load(split / 'checkpoint.pt', weights_only=True)['epoch'] == 1
    assert cli.main(['train', *common, '--out', str(split), '--resume']) == 0
    resumed = torch.load(split / 'checkpoint.pt', weights_only=True)
    assert resumed['iteration'] == whole['iteration']
    for key, value in whole['model'].items():
        assert torch.equal(value, resumed['model'][key]), key
    assert resumed['optimizer']['state'].keys() == whole['optimizer']['state'].keys()
    assert resumed['scheduler'] == whole['scheduler']


def _calls(tree):
    """(dotted name, call node) of every call in a module's syntax tree."""
    import ast

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts, func = [], node.func
            while isinstance(func, ast.Attribute):
                parts.append(func.attr)
                func = func.value
            if isinstance(func, ast.Name):  # a name path (not a method of a call's result)
                yield '.'.join(reversed(parts + [func.id])), node


def test_no_module_has_a_loader_that_can_run_code():
    """The audit, kept: only safe_load.py calls torch.load, and nothing unpickles or evals."""
    import ast
    from pathlib import Path

    import pose6d_ros

    package = Path(pose6d_ros.__file__).parent
    found = []
    for path in sorted(package.rglob('*.py')) + sorted((package.parent / 'launch').glob('*.py')):
        tree = ast.parse(path.read_text(), str(path))
        for name, call in _calls(tree):
            true = {k.arg for k in call.keywords
                    if isinstance(k.value, ast.Constant) and k.value.value is True}
            if name == 'torch.load' and path.name != 'safe_load.py':
                found.append(f'{path.name}: torch.load outside safe_load.torch_load')
            if name == 'torch.load' and 'weights_only' not in true:
                found.append(f'{path.name}: torch.load without weights_only=True')
            if name in ('pickle.load', 'pickle.loads', 'yaml.load', 'yaml.unsafe_load',
                        'yaml.full_load', 'eval', 'exec', 'marshal.loads', 'shelve.open',
                        'torch.jit.load', 'os.system'):
                found.append(f'{path.name}: {name}')
            if true & {'allow_pickle', 'shell'}:
                found.append(f'{path.name}: {name} with a flag that runs code')
    assert found == []
