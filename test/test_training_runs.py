"""`pose6d train` as a user runs it: failed runs, reruns, progress, validation, the summary."""

import csv
import shutil

import numpy as np
import pytest
import torch
import trimesh
import yaml

from pose6d_ros.core.data.bop import BopDataset
from pose6d_ros.core.geometry.mesh_copy import copy_mesh
from pose6d_ros.core.geometry.objects import ObjectModel
from pose6d_ros.core.inference.bundle import load_bundle
from pose6d_ros.core.training import train as train_module
from pose6d_ros.core.training.train import MAX_VALIDATIONS, TrainConfig, validation_interval
from pose6d_ros.tools import cli


def _train(data, out, *flags, quiet=True):
    argv = ['train', '--method', 'keypoints', '--data', str(data), '--out', str(out),
            '--input-size', '96x72', '--backbone', 'hrnet_tiny', '--batch-size', '4',
            '--workers', '0', '--device', 'cpu', *flags]
    return cli.main(argv + (['--quiet'] if quiet else []))


def _nan_from(monkeypatch, first_bad_call):
    """Make the training loss NaN from its `first_bad_call`-th computation on (1-based)."""
    real, calls = train_module._loss, []

    def loss(*args, **kwargs):
        value, parts = real(*args, **kwargs)
        calls.append(1)
        return (value * float('nan') if len(calls) >= first_bad_call else value), parts

    monkeypatch.setattr(train_module, '_loss', loss)


def _rows(path):
    with open(path, newline='') as handle:
        return list(csv.DictReader(handle))


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing(
        tiny_dataset, tmp_path, monkeypatch, capsys):
    run = tmp_path / 'runs' / 'first'
    _nan_from(monkeypatch, 3)
    assert _train(tiny_dataset, run, '--epochs', '2', quiet=False) == 1
    err = capsys.readouterr().err
    # the error is a line of its own, not glued to the progress bar's last line
    line = next(li for li in err.splitlines() if 'pose6d: error:' in li)
    assert line.startswith('pose6d: error: the loss became nan at iteration 3 (epoch 1)')
    assert '--lr' in line and 'weights_only' not in err and 'Traceback' not in err
    assert not run.exists()  # nothing that blocks the same command again
    monkeypatch.undo()
    assert _train(tiny_dataset, run, '--epochs', '1', '--max-iterations', '2') == 0
    assert (run / 'bundle' / 'card.yaml').is_file()


def test_a_run_that_diverges_later_keeps_its_checkpoint_and_force_starts_over(
        tiny_dataset, tmp_path, monkeypatch, capsys):
    run = tmp_path / 'run'
    _nan_from(monkeypatch, 8)  # epochs are 5 iterations (22 images, batch 4, last dropped)
    assert _train(tiny_dataset, run, '--epochs', '3') == 1
    err = capsys.readouterr().err
    assert 'checkpoint.pt holds the last epoch before it (--resume continues' in err
    assert torch.load(run / 'checkpoint.pt', weights_only=True)['epoch'] == 1
    monkeypatch.undo()
    assert _train(tiny_dataset, run, '--epochs', '1') == 1
    err = capsys.readouterr().err
    assert 'is not empty; pass --resume to continue that run, --force to start it over' in err
    (run / 'notes.txt').write_text('mine')
    assert _train(tiny_dataset, run, '--epochs', '1', '--max-iterations', '3', '--force') == 0
    rows = [r for r in _rows(run / 'log.csv') if r.get('loss')]
    assert [int(r['iteration']) for r in rows] == [1]  # a fresh log, not the failed run's
    assert (run / 'notes.txt').read_text() == 'mine'  # --force deletes only what runs write


def test_resume_and_force_together_are_refused(tiny_dataset, tmp_path, capsys):
    assert _train(tiny_dataset, tmp_path / 'run', '--resume', '--force') == 1
    assert 'not both' in capsys.readouterr().err


def test_progress_validation_card_and_summary_say_what_really_ran(tiny_dataset, tmp_path,
                                                                  capsys):
    run = tmp_path / 'run'
    # 12 epochs of 5 iterations, validation asked every epoch: widened to every 2nd epoch
    assert _train(tiny_dataset, run, '--epochs', '12', quiet=False) == 0
    captured = capsys.readouterr()
    assert '/60 ' in captured.err or '/60[' in captured.err  # the bar's total: 12 x 5
    validations = [r for r in _rows(run / 'log.csv') if r.get('val_recall')]
    assert [int(r['epoch']) + 1 for r in validations] == [2, 4, 6, 8, 10, 12]
    card = load_bundle(run / 'bundle').card
    assert card['training']['epochs'] == 12 and card['training']['iterations'] == 60
    assert card['metrics']['epoch'] == 12
    out = captured.out
    assert 'trained 60 iterations (12 epochs) in ' in out and 'final loss ' in out
    validation = {k: 100 * v for k, v in card['metrics']['validation'].items()}  # in %
    assert (f'last validation: ADD(-S) {validation["add_0.1d"]:.1f}%, 2D projection '
            f'{validation["proj_2d_5px"]:.1f}%') in out and 'recall ' in out
    assert f'log: {run / "log.csv"}' in out and f'model bundle: {run / "bundle"}' in out
    plot = run / 'training.png'
    assert f'plot: {plot}' in out
    assert plot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and plot.stat().st_size > 5000


def test_max_iterations_sets_the_bar_and_the_card(tiny_dataset, tmp_path, capsys):
    run = tmp_path / 'run'
    assert _train(tiny_dataset, run, '--epochs', '120', '--max-iterations', '7',
                  quiet=False) == 0
    err = capsys.readouterr().err
    assert '/7 ' in err or '/7[' in err
    assert '/600' not in err  # not the 120 epochs the run never makes
    training = load_bundle(run / 'bundle').card['training']
    assert (training['iterations'], training['epochs'], training['planned_epochs'],
            training['max_iterations']) == (7, 2, 120, 7)


@pytest.mark.parametrize('epochs, max_iterations, val_every, expected', [
    (12, None, 1, 2),     # 12 epochs: every 2nd, 6 validations
    (120, 150, 1, 3),     # 150 iterations of 5 per epoch = 30 epochs: every 3rd
    (120, None, 5, 12),   # the asked interval is kept when it gives few enough
    (4, None, 1, 1),
    (50, None, 0, 0),     # 0: only at the end
])
def test_validations_are_spaced_to_at_most_ten_a_run(epochs, max_iterations, val_every,
                                                     expected):
    config = TrainConfig(method='keypoints', epochs=epochs, max_iterations=max_iterations,
                         val_every=val_every).resolved()
    interval = validation_interval(config, iterations_per_epoch=5)
    assert interval == expected
    if interval:
        planned = -(-(max_iterations or epochs * 5) // 5)
        assert planned // interval <= MAX_VALIDATIONS


def _objects_without_meshes(dataset, path):
    """An --objects file as config/objects/lmo.yaml: names, ids, keypoints, no meshes."""
    path.write_text(yaml.safe_dump({'objects': [
        {'name': obj.name, 'id': obj.object_id, 'diameter': float(obj.diameter),
         'keypoints': obj.keypoints.tolist()} for obj in BopDataset(dataset).object_set]}))
    return path


def test_images_held_out_for_validation_are_scored_with_the_datasets_meshes(tiny_dataset,
                                                                            tmp_path):
    objects = _objects_without_meshes(tiny_dataset, tmp_path / 'objects.yaml')
    run = tmp_path / 'run'  # no --val-data: a tenth of --data is held out
    assert _train(tiny_dataset, run, '--objects', str(objects), '--epochs', '1',
                  '--max-iterations', '2') == 0
    metrics = load_bundle(run / 'bundle').card['metrics']
    assert metrics['iteration'] == 2 and 'add_0.1d' in metrics['validation']


def test_validation_images_that_cannot_be_scored_stop_the_run_before_it_trains(
        tiny_dataset, tmp_path, capsys):
    data = tmp_path / 'data'
    shutil.copytree(tiny_dataset, data)
    for mesh in (data / 'models').glob('*.ply'):
        mesh.unlink()
    objects = _objects_without_meshes(data, tmp_path / 'objects.yaml')
    run = tmp_path / 'run'
    assert _train(data, run, '--objects', str(objects), '--epochs', '1') == 1
    err = capsys.readouterr().err
    assert (f'pose6d: error: cannot validate on the images held out of {data}: object '
            "'box' (id 1) has no mesh to score ADD with: its objects file names no mesh and "
            'the dataset has no models/obj_000001.ply') in err
    assert not run.exists()  # failed before its first step: nothing left to block a rerun


def test_object_names_come_from_the_dataset(tiny_dataset, tiny_bundle):
    # pose6d synth writes models/objects.yaml beside models_info.json: names survive
    assert BopDataset(tiny_dataset).object_set.names == ['box']
    bundle = load_bundle(tiny_bundle)  # trained without --objects
    assert bundle.card['classes'] == ['box'] and bundle.objects.names == ['box']


def test_a_bundle_carries_its_meshes_and_loads_after_a_move(tiny_bundle, tmp_path):
    moved = tmp_path / 'robot' / 'box_model'
    shutil.copytree(tiny_bundle, moved)
    bundle = load_bundle(moved)
    mesh_path = bundle.objects[0].mesh_path
    assert mesh_path.parent == moved / 'meshes' and mesh_path.is_file()
    assert len(bundle.objects[0].load_mesh().faces) > 0


def test_a_large_mesh_is_copied_smaller_and_keeps_its_shape(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=6, radius=50.0)  # millimetres
    sphere.visual.vertex_colors = np.tile([200, 30, 30, 255], (len(sphere.vertices), 1))
    source = tmp_path / 'ball.ply'
    source.write_bytes(sphere.export(file_type='ply', encoding='ascii'))
    obj = ObjectModel.from_mesh('ball', 1, source, scale=0.001)
    (tmp_path / 'as_is').mkdir()
    copied, scale, simplified = copy_mesh(obj, tmp_path / 'as_is', max_bytes=10**9)
    assert (copied.name, scale, simplified) == ('ball.ply', 0.001, False)  # small enough
    (tmp_path / 'out').mkdir()
    limit = 60_000
    assert source.stat().st_size > 10 * limit
    copied, scale, simplified = copy_mesh(obj, tmp_path / 'out', max_bytes=limit)
    assert simplified and scale == 1.0 and copied.stat().st_size <= limit
    small = ObjectModel.from_mesh('ball', 1, copied, scale=scale)
    assert small.diameter == pytest.approx(0.1, rel=0.05)  # metres, same size
    radii = np.linalg.norm(small.load_mesh().vertices, axis=1)
    assert np.abs(radii - 0.05).max() < 0.005
    colours = small.load_mesh().visual.vertex_colors
    assert np.abs(colours[:, :3].astype(int) - [200, 30, 30]).max() <= 1


def test_val_fraction_is_a_flag(tmp_path, capsys):
    args = cli.build_parser().parse_args(['train', '--val-fraction', '0.2'])
    assert args.val_fraction == 0.2
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(['train', '--val-fraction', '1.5'])
    assert "expected a number between 0 and 1; got '1.5'" in capsys.readouterr().err
    config = yaml.safe_dump({'val_fraction': 0.25})
    (tmp_path / 'c.yaml').write_text(config)
    assert train_module.load_config(tmp_path / 'c.yaml').val_fraction == 0.25


def test_a_resumed_run_counts_the_training_time_of_its_earlier_sessions(tiny_dataset, tmp_path):
    run = tmp_path / 'run'
    assert _train(tiny_dataset, run, '--epochs', '1') == 0
    first = torch.load(run / 'checkpoint.pt', weights_only=True)['seconds']
    assert first > 0
    assert _train(tiny_dataset, run, '--epochs', '2', '--resume') == 0
    state = torch.load(run / 'checkpoint.pt', weights_only=True)
    assert state['epoch'] == 2 and state['seconds'] > first
    assert load_bundle(run / 'bundle').card['training']['seconds'] >= round(state['seconds'], 1)


def _interrupt_at_the_third_step(monkeypatch):
    """Ctrl-C during the third training step; returns the real loss to put back."""
    real_loss, calls = train_module._loss, []

    def interrupted_at_the_third_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_module, '_loss', interrupted_at_the_third_step)
    return real_loss


def test_an_interrupted_run_keeps_its_iteration_and_resumes_mid_epoch(
        tiny_dataset, tmp_path, monkeypatch, capsys):
    # Epochs are 5 batches of 4 (22 images, the last 2 dropped). The images a run trains on,
    # in order, from the samples it loads.
    loaded = []
    real_item = train_module.PoseSamples.__getitem__
    monkeypatch.setattr(train_module.PoseSamples, '__getitem__',
                        lambda self, index: (loaded.append(int(index)), real_item(self, index))[1])
    assert _train(tiny_dataset, tmp_path / 'whole', '--epochs', '2') == 0
    whole, loaded[:] = list(loaded), []

    real_loss = _interrupt_at_the_third_step(monkeypatch)
    run = tmp_path / 'run'
    assert _train(tiny_dataset, run, '--epochs', '2') == 130
    assert 'interrupted at iteration 2: ' in capsys.readouterr().err
    state = torch.load(run / 'checkpoint.pt', weights_only=True)
    assert (state['epoch'], state['iteration'], state['batches_done']) == (0, 2, 2)
    trained_before = loaded[:8]           # the third batch was loaded, never trained on
    loaded[:] = []
    monkeypatch.setattr(train_module, '_loss', real_loss)
    assert _train(tiny_dataset, run, '--epochs', '2', '--resume') == 0
    assert trained_before + loaded == whole   # the rest of epoch 0, then epoch 1, as unbroken
    state = torch.load(run / 'checkpoint.pt', weights_only=True)
    assert (state['epoch'], state['iteration'], state['batches_done']) == (2, 10, 0)


def test_a_run_resumed_mid_epoch_keeps_the_learning_rates_of_an_unbroken_run(
        tiny_dataset, tmp_path, monkeypatch, capsys):
    """The schedule counts whole epochs, not the rest of the one a resumed run starts in.

    Epochs of 5 batches, 2 epochs, the rate x0.1 at half the run (iteration 5). Resumed after
    2 steps, the loader holds 3 batches until epoch 0 ends; read as the epoch's length, that
    put the milestone at iteration 3.
    """
    config = tmp_path / 'schedule.yaml'
    config.write_text('lr_milestones: [0.5]\nlr_gamma: 0.1\nwarmup_iterations: 0\n')
    rates, real_set = [], train_module._set_learning_rate

    def recorded(optimizer, *args):
        real_set(optimizer, *args)
        rates.append(optimizer.param_groups[0]['lr'])

    monkeypatch.setattr(train_module, '_set_learning_rate', recorded)
    arguments = ('--config', str(config), '--epochs', '2')
    assert _train(tiny_dataset, tmp_path / 'whole', *arguments) == 0
    whole, rates[:] = list(rates), []
    assert len(whole) == 10 and whole[4] == pytest.approx(10 * whole[5])

    real_loss = _interrupt_at_the_third_step(monkeypatch)
    run = tmp_path / 'run'
    assert _train(tiny_dataset, run, *arguments) == 130
    capsys.readouterr()
    monkeypatch.setattr(train_module, '_loss', real_loss)
    assert _train(tiny_dataset, run, *arguments, '--resume') == 0
    assert rates == pytest.approx(whole)


def test_checkpoints_are_written_mid_epoch_every_checkpoint_minutes(tiny_dataset, tmp_path,
                                                                    monkeypatch):
    saves, real_save = [], train_module._save_checkpoint

    def recorded(path, *args):
        saves.append((args[4], args[5], args[8]))   # epoch, iteration, batches done
        return real_save(path, *args)

    monkeypatch.setattr(train_module, '_save_checkpoint', recorded)
    config = tmp_path / 'often.yaml'
    config.write_text('checkpoint_minutes: 1.0e-9\n')     # after every step
    assert _train(tiny_dataset, tmp_path / 'run', '--config', str(config), '--epochs', '1') == 0
    assert saves == [(0, 1, 1), (0, 2, 2), (0, 3, 3), (0, 4, 4), (1, 5, 0)]
    saves[:] = []
    assert _train(tiny_dataset, tmp_path / 'default', '--epochs', '1') == 0
    assert saves == [(1, 5, 0)]                     # 10 minutes: only the epoch's end here
