"""The shared training loop: learning works, checkpoints resume, bundles load, distillation."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pose6d_ros.core.data.bop import BopDataset
from pose6d_ros.core.data.training import collate, PoseSamples
from pose6d_ros.core.inference.bundle import IMAGENET_NORMALISATION, load_bundle
from pose6d_ros.core.inference.estimator import Estimator
from pose6d_ros.core.inference.evaluate import evaluate_dataset
from pose6d_ros.core.nets.methods import get_method
from pose6d_ros.core.training.train import load_config, TrainConfig
from pose6d_ros.tools import cli

INPUT = (96, 72)


def test_keypoints_learning_works_on_a_tiny_set(learned_bundle, tiny_dataset):
    """A short CPU run cuts the loss by a large factor and the poses pass the 2D test."""
    path, losses = learned_bundle
    assert np.mean(losses[:5]) / np.mean(losses[-5:]) > 5.0
    dataset = BopDataset(tiny_dataset)
    summary, _ = evaluate_dataset(Estimator.from_bundle(path, device='cpu'), dataset)
    assert summary['mean']['recall'] >= 0.8
    assert summary['mean']['proj_2d_5px'] >= 0.6


def test_corners_learning_works_on_a_tiny_set(tiny_dataset):
    """The corners detector (tiny ResNet-18-h) fits the set: loss down, 2D test passed."""
    torch.manual_seed(0)
    dataset = BopDataset(tiny_dataset)
    objects = dataset.object_set
    method = get_method('corners', len(objects), {
        'depth': 18, 'backbone_width': 16, 'fpn_channels': 32, 'input_size': list(INPUT)})
    network = method.build_network()
    samples = PoseSamples(dataset, objects, INPUT, method.targets, IMAGENET_NORMALISATION)
    images, targets = collate([samples[i] for i in range(len(samples))])
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    losses = []
    for _ in range(160):
        batch = torch.randperm(len(images))[:8].tolist()
        loss, _ = method.loss(network(images[batch]),
                              {k: [v[i] for i in batch] for k, v in targets.items()})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[:5]) / np.mean(losses[-5:]) > 10.0
    network.eval()
    estimator = Estimator(network, method, objects, INPUT, IMAGENET_NORMALISATION, device='cpu')
    summary, _ = evaluate_dataset(estimator, dataset)
    assert summary['mean']['recall'] >= 0.8
    assert summary['mean']['proj_2d_5px'] >= 0.6


@pytest.fixture(scope='module')
def trained_run(tiny_bundle):
    """The run directory of the session's tiny bundle (conftest.py)."""
    return tiny_bundle.parent


def test_train_command_writes_config_log_checkpoint_and_bundle(trained_run):
    config = yaml.safe_load((trained_run / 'config.yaml').read_text())
    assert config['method'] == 'keypoints' and config['optimizer'] == 'adam'  # paper default
    assert config['input_size'] == [96, 72] and config['network']['backbone'] == 'hrnet_tiny'
    rows = list(csv.DictReader(open(trained_run / 'log.csv')))
    assert any(row['loss'] for row in rows) and any(row.get('val_recall') for row in rows)
    state = torch.load(trained_run / 'checkpoint.pt', weights_only=True)
    assert {'model', 'optimizer', 'scheduler', 'epoch', 'iteration'} <= set(state)
    bundle = load_bundle(trained_run / 'bundle')
    assert bundle.method == 'keypoints' and bundle.input_size == (96, 72)
    assert bundle.card['training']['iterations'] == state['iteration']
    assert 'validation' in bundle.card['metrics']


def test_bundle_rebuilds_the_trained_network_exactly(trained_run, tiny_dataset):
    state = torch.load(trained_run / 'checkpoint.pt', weights_only=True)
    bundle = load_bundle(trained_run / 'bundle')
    network = bundle.build_network()
    method = get_method('keypoints', len(bundle.objects), bundle.card['network'])
    reference = method.build_network()
    reference.load_state_dict(state['model'])
    reference.eval()
    image = torch.rand(1, 3, 72, 96)
    with torch.no_grad():
        assert torch.equal(network(image)['belief'], reference(image)['belief'])
    sample = BopDataset(tiny_dataset)[0]
    estimator = Estimator.from_bundle(trained_run / 'bundle', device='cpu')
    assert isinstance(estimator(sample.load_image(), sample.camera), list)


def test_resume_continues_from_the_checkpoint(trained_run, tmp_path):
    import shutil

    run = tmp_path / 'run'
    shutil.copytree(trained_run, run)
    before = torch.load(run / 'checkpoint.pt', weights_only=True)['iteration']
    config = yaml.safe_load((run / 'config.yaml').read_text())
    status = cli.main(['train', '--method', 'keypoints', '--data', config['data'],
                       '--out', str(run), '--input-size', '96x72', '--backbone', 'hrnet_tiny',
                       '--epochs', '3', '--batch-size', '4', '--max-iterations', str(before + 2),
                       '--workers', '0', '--device', 'cpu', '--quiet', '--resume'])
    assert status == 0
    after = torch.load(run / 'checkpoint.pt', weights_only=True)
    assert after['iteration'] == before + 2


def test_distillation_from_a_teacher_decreases_its_loss(trained_run, tiny_dataset):
    from pose6d_ros.core.nets.hrpose_loss import distillation_loss, DistillationWeights

    torch.manual_seed(1)
    teacher = load_bundle(trained_run / 'bundle').build_network()
    objects = BopDataset(tiny_dataset).object_set
    method = get_method('keypoints', len(objects), {'backbone': 'hrnet_tiny', 'head_width': 16})
    student = method.build_network()
    samples = PoseSamples(BopDataset(tiny_dataset), objects, INPUT, method.targets,
                          IMAGENET_NORMALISATION)
    images, targets = collate([samples[i] for i in range(8)])
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    weights = DistillationWeights(similarity_size=8)
    losses = []
    for _ in range(25):
        with torch.no_grad():
            teacher_outputs = teacher(images)
        loss, parts = distillation_loss(student(images), teacher_outputs, targets, weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert parts['output_distillation'] > 0 and parts['feature_similarity'] > 0
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])


def test_distill_command_writes_a_student_bundle(trained_run, tiny_dataset, tmp_path):
    out = tmp_path / 'student'
    status = cli.main(['distill', '--teacher', str(trained_run / 'bundle'),
                       '--data', str(tiny_dataset), '--out', str(out), '--input-size', '96x72',
                       '--backbone', 'hrnet_tiny', '--epochs', '1', '--batch-size', '4',
                       '--max-iterations', '2', '--workers', '0', '--device', 'cpu',
                       '--quiet'])
    assert status == 0
    bundle = load_bundle(out / 'bundle')
    assert bundle.card['training']['teacher'] == str(trained_run / 'bundle')
    Estimator.from_bundle(out / 'bundle', device='cpu')


@pytest.mark.parametrize('argv, message', [
    (['train', '--out', 'x'], 'training needs --data'),
    (['train', '--config', 'missing.yaml', '--data', 'd', '--out', 'o'],
     'cannot read training config missing.yaml'),
    (['train', '--input-size', '90x7', '--data', 'd', '--out', 'o'], 'multiples of 4'),
    (['distill', '--teacher', 'nowhere', '--data', 'd', '--out', 'o'], ''),
])
def test_bad_training_input_is_one_clear_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith('pose6d: error: ') and message in err and '\n' not in err


def test_config_file_then_flags_take_precedence(tmp_path):
    path = tmp_path / 'train.yaml'
    path.write_text('method: corners\nlr: 0.01\nepochs: 3\n')
    config = load_config(path, {'epochs': 5}).resolved()
    assert (config.method, config.lr, config.epochs) == ('corners', 0.01, 5)
    assert config.optimizer == 'sgd' and config.weight_decay == 5e-4  # corners paper defaults
    with pytest.raises(Exception, match='training config has unknown key.s. learning_rate'):
        load_config(None, {'learning_rate': 1})
    assert TrainConfig(method='keypoints').resolved().batch_size == 32


def test_refuses_a_used_run_directory(trained_run, tiny_dataset, capsys):
    status = cli.main(['train', '--data', str(tiny_dataset), '--out', str(trained_run),
                       '--quiet'])
    assert status == 1
    assert 'is not empty; pass --resume' in capsys.readouterr().err


def test_learning_rate_schedules_follow_the_papers():
    from pose6d_ros.core.training.train import lr_factor

    keypoints = TrainConfig(method='keypoints').resolved()
    per_epoch = 7
    factors = [lr_factor(keypoints, e * per_epoch, per_epoch) for e in (0, 19, 20, 40, 119)]
    assert factors == [1.0, 1.0, 0.5, 0.25, 0.5 ** 5]     # halved every 20 of 120 epochs
    corners = TrainConfig(method='corners', epochs=90).resolved()
    assert corners.stage1_epochs == 45
    # Each stage: /10 at 2/3 and 8/9 of it, then the second stage starts again at 1.
    factors = [lr_factor(corners, e * per_epoch, per_epoch)
               for e in (0, 29, 30, 40, 44, 45, 75, 85)]
    assert factors == pytest.approx([1.0, 1.0, 0.1, 0.01, 0.01, 1.0, 0.1, 0.01])


def test_learning_rate_milestones_count_iterations_not_epochs():
    """A CPU stage of 2 long epochs still decays at 70% and 90% of its iterations."""
    from pose6d_ros.core.training.train import lr_factor

    config = TrainConfig(method='keypoints', epochs=2, lr_milestones=[0.7, 0.9],
                         lr_gamma=0.3).resolved()
    factor = [lr_factor(config, i, 1000) for i in range(2000)]
    assert factor[1399] == 1.0 and factor[1400] == pytest.approx(0.3)
    assert factor[1799] == pytest.approx(0.3) and factor[1800] == pytest.approx(0.09)
    assert factor[1999] == pytest.approx(0.09)
    stopped_early = TrainConfig(method='keypoints', epochs=2, lr_milestones=[0.7, 0.9],
                                lr_gamma=0.3, max_iterations=100).resolved()
    assert [lr_factor(stopped_early, i, 1000) for i in range(2000)] == factor


def test_train_command_for_corners_writes_a_loadable_bundle(tiny_dataset, tmp_path):
    config = tmp_path / 'corners.yaml'
    config.write_text('network: {depth: 18, backbone_width: 8, fpn_channels: 16}\n'
                      'epochs: 2\nbatch_size: 4\n')
    out = tmp_path / 'run'
    status = cli.main(['train', '--method', 'corners', '--config', str(config),
                       '--data', str(tiny_dataset), '--out', str(out), '--input-size', '96x72',
                       '--max-iterations', '3', '--workers', '0', '--device', 'cpu', '--quiet'])
    assert status == 0
    bundle = load_bundle(out / 'bundle')
    assert bundle.method == 'corners'
    assert bundle.card['network']['input_size'] == [96, 72]  # anchors scale with it
    estimator = Estimator.from_bundle(out / 'bundle', device='cpu')
    sample = BopDataset(tiny_dataset)[0]
    assert isinstance(estimator(sample.load_image(), sample.camera), list)


def test_training_runs_under_torchrun_with_two_processes(tiny_dataset, tmp_path):
    """The DDP path (gloo on the CPU here; NCCL on GPUs) trains and writes one bundle."""
    import shutil
    import subprocess
    import sys

    if shutil.which('torchrun') is None:
        pytest.skip('torchrun is not on PATH')
    out = tmp_path / 'ddp'
    result = subprocess.run(
        ['torchrun', '--standalone', '--nproc_per_node', '2', '-m', 'pose6d_ros.tools.cli',
         'train',
         '--method', 'keypoints', '--data', str(tiny_dataset), '--out', str(out),
         '--input-size', '96x72', '--backbone', 'hrnet_tiny', '--epochs', '1',
         '--batch-size', '4', '--workers', '0', '--device', 'cpu', '--quiet'],
        capture_output=True, text=True, timeout=600, env={**__import__('os').environ,
                                                          'PYTHONPATH': sys.path[0]})
    assert result.returncode == 0, result.stderr[-2000:]
    state = torch.load(out / 'checkpoint.pt', weights_only=True)
    # 22 training images split over 2 processes, batch 4, last partial batch dropped.
    assert state['iteration'] == 2
    assert load_bundle(out / 'bundle').method == 'keypoints'


def test_data_workers_start_afresh_every_epoch_from_a_forkserver(tiny_dataset, tmp_path):
    """With data workers, each epoch starts new ones; they come from a forkserver.

    They are not forked from the training process (whose thread pools can hold a lock: a worker
    then hangs).
    """
    from pose6d_ros.core.training.train import _worker_start_method

    assert _worker_start_method(0) is None
    assert _worker_start_method(2) in ('forkserver', None)  # None where there is none
    out = tmp_path / 'run'
    status = cli.main(['train', '--method', 'keypoints', '--data', str(tiny_dataset),
                       '--out', str(out), '--input-size', '96x72', '--backbone', 'hrnet_tiny',
                       '--epochs', '2', '--batch-size', '11', '--workers', '1',
                       '--device', 'cpu', '--quiet'])
    assert status == 0
    state = torch.load(out / 'checkpoint.pt', weights_only=True)
    assert (state['epoch'], state['iteration']) == (2, 4)   # 22 images, batch 11, two epochs


def test_config_can_ask_for_a_self_contained_half_precision_bundle(tiny_dataset, tmp_path):
    config = tmp_path / 'train.yaml'
    config.write_text('half_precision_bundle: true\nbundle_meshes: true\n')
    out = tmp_path / 'run'
    status = cli.main(['train', '--method', 'keypoints', '--config', str(config),
                       '--data', str(tiny_dataset), '--out', str(out), '--input-size', '96x72',
                       '--backbone', 'hrnet_tiny', '--epochs', '1', '--batch-size', '4',
                       '--max-iterations', '1', '--workers', '0', '--device', 'cpu', '--quiet'])
    assert status == 0
    bundle = load_bundle(out / 'bundle')
    assert bundle.card['weights_dtype'] == 'float16'
    mesh = bundle.objects[0].mesh_path
    assert mesh is not None and Path(mesh).is_file() and (out / 'bundle') in Path(mesh).parents


def test_training_crop_is_a_window_of_the_input_around_an_object(tiny_dataset):
    dataset = BopDataset(tiny_dataset)
    method = get_method('keypoints', len(dataset.object_set), {'backbone': 'hrnet_tiny'})
    full = PoseSamples(dataset, dataset.object_set, INPUT, method.targets,
                       IMAGENET_NORMALISATION, augment=None)
    cropped = PoseSamples(dataset, dataset.object_set, INPUT, method.targets,
                          IMAGENET_NORMALISATION, augment=None, crop=(48, 40))
    for index in range(4):
        image, instances = full.load(index)
        window, window_instances = cropped.load(index)
        assert window.shape == (40, 48, 3)
        offset = instances[0].keypoints - window_instances[0].keypoints
        assert np.allclose(offset, offset[0], atol=1e-9)   # one shift for every keypoint
        assert (offset[0] >= 0).all() and (offset[0] <= (96 - 48, 72 - 40)).all()
        x, y = offset[0].astype(int)
        assert np.allclose(offset[0], (x, y), atol=1e-9)   # a whole-pixel cut-out
        assert np.abs(window.astype(int) - image[y:y + 40, x:x + 48]).max() <= 1
        centre = window_instances[0].keypoints[8]
        assert (centre >= 0).all() and (centre < (48, 40)).all()
    _, targets = cropped[0]
    assert targets['belief'].shape[-2:] == (10, 12)   # the crop at the codec's stride 4


def test_fine_tuning_starts_from_the_given_weights(tiny_bundle, tiny_dataset, tmp_path):
    from pose6d_ros.core.errors import Pose6dError
    from pose6d_ros.core.training.train import _load_initial_weights, _read_initial_weights

    bundle = load_bundle(tiny_bundle)
    method = get_method('keypoints', len(bundle.objects), bundle.card['network'])
    network = method.build_network()
    _load_initial_weights(network, _read_initial_weights(tiny_bundle))
    assert all(torch.equal(network.state_dict()[k], v) for k, v in bundle.state_dict.items())
    other = get_method('keypoints', 1, {'backbone': 'hrnet_w18_small'}).build_network()
    with pytest.raises(Pose6dError, match='do not fit the configured network'):
        _load_initial_weights(other, _read_initial_weights(tiny_bundle))
    with pytest.raises(Pose6dError, match='expected a model bundle folder or a training chec'):
        _read_initial_weights(tmp_path / 'missing.pt')

    out = tmp_path / 'run'
    status = cli.main(['train', '--method', 'keypoints', '--data', str(tiny_dataset),
                       '--out', str(out), '--input-size', '96x72', '--backbone', 'hrnet_tiny',
                       '--train-crop', '64x48', '--init-weights', str(tiny_bundle),
                       '--epochs', '1', '--batch-size', '4', '--max-iterations', '2',
                       '--workers', '0', '--device', 'cpu', '--quiet'])
    assert status == 0
    config = yaml.safe_load((out / 'config.yaml').read_text())
    assert config['train_crop'] == [64, 48] and config['init_weights'] == str(tiny_bundle)
    assert load_bundle(out / 'bundle').input_size == (96, 72)   # evaluated on the whole input


@pytest.mark.parametrize('values, message', [
    ({'input_size': '96x72', 'train_crop': '128x64'}, 'must fit in the input size'),
    ({'method': 'corners', 'train_crop': '64x64'}, 'train_crop is for the keypoints method'),
])
def test_a_training_crop_is_checked(values, message):
    from pose6d_ros.core.errors import Pose6dError

    with pytest.raises(Pose6dError, match=message):
        load_config(None, values)


def test_validation_takes_the_meshes_from_the_validation_data_when_objects_have_none(
        tiny_dataset, tmp_path):
    # The LM-O recipe: objects by name without meshes (config/objects/lmo.yaml); ADD needs
    # the meshes, which the BOP validation folder holds in models/.
    objects = BopDataset(tiny_dataset).object_set
    for obj in objects:
        obj.mesh_path = None
    objects_yaml, out = tmp_path / 'objects.yaml', tmp_path / 'run'
    objects.to_yaml(objects_yaml)
    status = cli.main(['train', '--method', 'keypoints', '--data', str(tiny_dataset),
                       '--val-data', str(tiny_dataset), '--objects', str(objects_yaml),
                       '--out', str(out), '--input-size', '96x72', '--backbone', 'hrnet_tiny',
                       '--epochs', '1', '--batch-size', '4', '--max-iterations', '1',
                       '--workers', '0', '--device', 'cpu', '--quiet'])
    assert status == 0
    rows = list(csv.DictReader(open(out / 'log.csv')))
    assert rows[-1]['val_recall'] != ''
    assert load_bundle(out / 'bundle').objects[0].mesh_path is None
