"""`pose6d synth`: ground truth read back from the BOP files, determinism, resume, errors."""

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh
import yaml

from pose6d_ros.core.data import synth
from pose6d_ros.core.data.bop import BopDataset
from pose6d_ros.core.data.scenes import sample_scene
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.objects import ObjectSet
from pose6d_ros.tools import cli

IMAGES = 6
CAMERA = CameraModel.from_intrinsics(90.0, 92.0, 47.3, 35.8, 96, 72)
# Large objects, so that masks are compared on many pixels; occluders make visib_fract < 1.
CONFIG = {'scene': {'object_size': [0.35, 0.7], 'objects_per_image': [1, 2],
                    'occluders': [0, 1], 'distractors': [0, 1]}}


def _write_inputs(folder):
    """Two vertex-coloured box meshes, an objects YAML, a camera, a config, backgrounds."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for object_id, size in ((3, (0.10, 0.07, 0.05)), (8, (0.04, 0.06, 0.09))):
        mesh = trimesh.creation.box(size)
        mesh.apply_translation([0.005, -0.01, 0.0])
        mesh.visual.vertex_colors = np.random.default_rng(object_id).integers(
            40, 255, (len(mesh.vertices), 4)).astype(np.uint8)
        mesh.export(folder / f'box_{object_id}.ply')
        entries.append({'name': f'box{object_id}', 'id': object_id,
                        'mesh': f'box_{object_id}.ply'})
    (folder / 'objects.yaml').write_text(yaml.safe_dump({'objects': entries}))
    (folder / 'camera.yaml').write_text(yaml.safe_dump(CAMERA.to_dict()))
    (folder / 'config.yaml').write_text(yaml.safe_dump(CONFIG))
    backgrounds = folder / 'backgrounds'
    backgrounds.mkdir()
    for index in range(3):
        small = np.random.default_rng(index).integers(0, 256, (5, 7, 3), dtype=np.uint8)
        cv2.imwrite(str(backgrounds / f'photo_{index}.png'), cv2.resize(small, (140, 100)))
    return folder


def _args(inputs, out, *extra, images=IMAGES, workers=1, seed=4):
    return ['synth', '--objects', str(inputs / 'objects.yaml'), '--out', str(out),
            '--images', str(images), '--backgrounds', str(inputs / 'backgrounds'),
            '--camera', str(inputs / 'camera.yaml'), '--config', str(inputs / 'config.yaml'),
            '--seed', str(seed), '--workers', str(workers), *extra]


def _fingerprint(out):
    """Hashes of every file of the scene folder (images, masks, json)."""
    scene = Path(out) / 'train' / '000000'
    return {str(p.relative_to(scene)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(scene.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    return _write_inputs(tmp_path_factory.mktemp('inputs'))


@pytest.fixture(scope='module')
def runs(inputs, tmp_path_factory):
    """The same synth command with 1 and with 2 workers."""
    outs = {}
    for workers in (1, 2):
        out = tmp_path_factory.mktemp(f'out{workers}') / 'dataset'
        assert cli.main(_args(inputs, out, workers=workers)) == 0
        outs[workers] = out
    return outs


# --- ground truth -----------------------------------------------------------------------------


def _pixel_centre_silhouette(mesh, R, t, camera):
    """Pixels whose centre lies inside a projected triangle (the rasteriser's rule)."""
    u, v = np.meshgrid(np.arange(camera.width), np.arange(camera.height))
    centres = np.stack([u.ravel(), v.ravel()], axis=1).astype(float)
    inside = np.zeros(len(centres), bool)
    projected = camera.project(mesh.vertices @ R.T + t)
    for a, b, c in projected[mesh.faces]:
        sides = [(q - p)[0] * (centres - p)[:, 1] - (q - p)[1] * (centres - p)[:, 0]
                 for p, q in ((a, b), (b, c), (c, a))]
        inside |= np.all([s >= 0 for s in sides], axis=0) | np.all([s <= 0 for s in sides],
                                                                   axis=0)
    return inside.reshape(camera.height, camera.width)


@pytest.mark.parametrize('workers', [1, 2])
def test_written_ground_truth_matches_the_meshes(runs, workers):
    out = runs[workers]
    dataset = BopDataset(out)
    objects = ObjectSet.load(out / 'models')  # the copied meshes, mm -> m
    assert len(dataset) == IMAGES and dataset.split == 'train'
    unoccluded = instances = 0
    for sample in dataset:
        assert sample.camera == CAMERA
        image = sample.load_image()
        assert image.shape == (72, 96, 3)
        for index, annotation in enumerate(sample.annotations):
            instances += 1
            obj = objects.by_id(annotation.object_id)
            mask = sample.load_mask(index)
            assert mask.sum() >= 30
            keypoints = sample.camera.project(obj.keypoints @ annotation.R.T + annotation.t)
            x0, y0, x1, y1 = annotation.box_full
            # BOP boxes are whole pixels: the rounding moves an edge by up to 0.5 px.
            assert (keypoints[:, 0] >= x0 - 0.5).all() and (keypoints[:, 0] <= x1 + 0.5).all()
            assert (keypoints[:, 1] >= y0 - 0.5).all() and (keypoints[:, 1] <= y1 + 0.5).all()
            if annotation.visib_fract > 0.99:
                unoccluded += 1
                expected = _pixel_centre_silhouette(obj.load_mesh(), annotation.R,
                                                    annotation.t, sample.camera)
                iou = (mask & expected).sum() / (mask | expected).sum()
                assert iou > 0.95, (sample.image_id, index, iou)
            else:
                assert 0.0 < annotation.visib_fract <= 0.99
    assert instances >= IMAGES and unoccluded >= 2


def test_models_and_summary_are_written(runs):
    out = runs[1]
    info = json.loads((out / 'models' / 'models_info.json').read_text())
    assert sorted(info) == ['3', '8']
    assert info['3']['size_x'] == pytest.approx(100.0) and info['8']['size_z'] == pytest.approx(
        90.0)
    named = ObjectSet.load(out / 'models' / 'objects.yaml')
    assert named.names == ['box3', 'box8']
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['images'] == IMAGES and summary['seed'] == 4 and summary['workers'] == 1
    assert summary['instances'] >= IMAGES and 0.1 <= summary['mean_visib_fract'] <= 1.0
    assert summary['settings']['config']['scene']['object_size'] == [0.35, 0.7]


def test_output_does_not_depend_on_the_number_of_workers(runs):
    scene_gt = [(runs[w] / 'train' / '000000' / 'scene_gt.json').read_text() for w in (1, 2)]
    assert scene_gt[0] == scene_gt[1]
    assert _fingerprint(runs[1]) == _fingerprint(runs[2])
    assert len([k for k in _fingerprint(runs[1]) if k.startswith('rgb/')]) == IMAGES


def test_negative_images_carry_no_ground_truth_and_are_read_back_as_such(inputs, tmp_path):
    """The scene.negative_share setting makes images without any object.

    scene_gt lists nothing for them, no mask is written, and the reader keeps them as images
    without annotations.
    """
    config = {'scene': {**CONFIG['scene'], 'negative_share': 0.5, 'negative_shapes': [1, 3]}}
    (tmp_path / 'negatives.yaml').write_text(yaml.safe_dump(config))
    out = tmp_path / 'dataset'
    args = _args(inputs, out, images=10)
    args[args.index('--config') + 1] = str(tmp_path / 'negatives.yaml')
    assert cli.main(args) == 0
    spec = synth.SynthConfig.load(tmp_path / 'negatives.yaml').scene
    objects = ObjectSet.load(inputs / 'objects.yaml')
    drawn = [not sample_scene(np.random.default_rng([4, i]), objects, CAMERA,
                              spec).instances for i in range(10)]
    assert 2 <= sum(drawn) <= 8      # seed 4 draws both kinds
    scene = out / 'train' / '000000'
    scene_gt = json.loads((scene / 'scene_gt.json').read_text())
    masks = {int(p.name[:6]) for p in (scene / 'mask_visib').iterdir()}
    dataset = BopDataset(out)
    assert len(dataset) == 10        # images without annotations are kept
    for sample, negative in zip(dataset, drawn):
        if negative:
            assert scene_gt[str(sample.image_id)] == [] and sample.annotations == []
            assert sample.image_id not in masks
            assert sample.load_image().std() > 0   # a real picture: background and shapes
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['images_without_objects'] >= sum(drawn)
    assert summary['settings']['config']['scene']['negative_share'] == 0.5


# --- sim-to-real sections --------------------------------------------------------------------

# What synth.json recorded before the lighting, shadows, camera-effect and albedo settings
# existed: a run recorded so must continue with the same command.
_EARLIER_PHOTOMETRIC_KEYS = {
    'hue', 'saturation', 'exposure', 'contrast', 'blur_probability', 'blur_sigma',
    'motion_blur_probability', 'motion_blur_length', 'noise_probability', 'noise_sigma',
    'jpeg_probability', 'jpeg_quality'}

SIM_TO_REAL = {
    'scene': {**CONFIG['scene'], 'albedo_contrast': [1.2, 1.8]},
    'lighting': {'lights': [2, 3], 'kelvin': [2700, 3500], 'background_tint': 0.8},
    'shadows': {'probability': 1.0},
    'photometric': {'white_balance_probability': 0.5, 'gamma_probability': 0.5,
                    'defocus_probability': 0.5, 'sharpen_probability': 0.5},
}


def test_runs_without_the_new_sections_record_the_settings_of_earlier_versions(inputs, runs):
    config = json.loads((runs[1] / 'synth.json').read_text())['config']
    assert set(config) == {'scene', 'photometric', 'backgrounds'}
    assert set(config['photometric']) == _EARLIER_PHOTOMETRIC_KEYS
    assert not {'albedo_contrast', 'albedo_saturation', 'negative_share'} & set(config['scene'])
    assert synth.SynthConfig.from_dict(config) == synth.SynthConfig.load(inputs / 'config.yaml')


def _mean_red_over_blue(out):
    images = [sample.load_image().reshape(-1, 3).mean(axis=0) for sample in BopDataset(out)]
    return np.mean([red / blue for red, _, blue in images])


def test_lights_shadows_and_camera_effects_change_the_images_not_the_poses(
        inputs, runs, tmp_path):
    (tmp_path / 'sim2real.yaml').write_text(yaml.safe_dump(SIM_TO_REAL))
    out = tmp_path / 'dataset'
    args = _args(inputs, out)
    args[args.index('--config') + 1] = str(tmp_path / 'sim2real.yaml')
    assert cli.main(args) == 0
    scene, plain = out / 'train' / '000000', runs[1] / 'train' / '000000'
    # Poses are drawn before the lights: the same objects at the same places, other looks.
    assert (scene / 'scene_gt.json').read_text() == (plain / 'scene_gt.json').read_text()
    differ = [not np.array_equal(a.load_image(), b.load_image())
              for a, b in zip(BopDataset(out), BopDataset(runs[1]))]
    assert all(differ) and len(differ) == IMAGES
    assert _mean_red_over_blue(out) > _mean_red_over_blue(runs[1]) + 0.1   # warm lights
    settings = json.loads((out / 'synth.json').read_text())['config']
    assert settings['lighting']['kelvin'] == [2700, 3500]
    assert settings['shadows']['probability'] == 1.0
    assert settings['photometric']['sharpen_probability'] == 0.5
    assert synth.SynthConfig.from_dict(settings) == synth.SynthConfig.load(
        tmp_path / 'sim2real.yaml')
    assert cli.main(args) == 0   # the settings it recorded are those it reads: complete


# --- resume, refusal, force -------------------------------------------------------------------


def test_a_larger_image_count_continues_the_run(inputs, runs, tmp_path, capsys):
    out = tmp_path / 'dataset'
    assert cli.main(_args(inputs, out, images=3)) == 0
    assert cli.main(_args(inputs, out)) == 0
    assert 'wrote 3 images (6 in total)' in capsys.readouterr().out
    assert _fingerprint(out) == _fingerprint(runs[1])  # ids 0..5, no duplicates, same images
    assert cli.main(_args(inputs, out)) == 0  # complete: nothing to do
    assert _fingerprint(out) == _fingerprint(runs[1])


def test_an_interrupted_run_resumes_exactly(inputs, runs, tmp_path, monkeypatch, capsys):
    out = tmp_path / 'dataset'
    real_write = synth._write_sample
    calls = []

    def interrupted_write(writer, camera, sample):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(sample[0])
        real_write(writer, camera, sample)

    monkeypatch.setattr(synth, '_write_sample', interrupted_write)
    assert cli.main(_args(inputs, out)) == 130
    assert 'run the same command again to continue' in capsys.readouterr().err
    assert len(BopDataset(out)) == 4
    monkeypatch.setattr(synth, '_write_sample', real_write)
    assert cli.main(_args(inputs, out)) == 0
    assert _fingerprint(out) == _fingerprint(runs[1])


def test_an_interrupt_while_an_image_is_written_leaves_no_image_without_ground_truth(
        inputs, runs, tmp_path, monkeypatch, capsys):
    out = tmp_path / 'dataset'
    real_replace = os.replace

    def interrupted_replace(source, target):
        if Path(target).name == '000003_000000.png':  # Ctrl-C: image 3 is in, its mask not
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(os, 'replace', interrupted_replace)
    assert cli.main(_args(inputs, out)) == 130
    monkeypatch.setattr(os, 'replace', real_replace)
    scene = out / 'train' / '000000'
    listed = sorted(int(k) for k in json.loads((scene / 'scene_gt.json').read_text()))
    assert listed == [0, 1, 2]
    assert sorted(int(p.stem) for p in (scene / 'rgb').iterdir()) == listed
    assert {int(p.name[:6]) for p in (scene / 'mask_visib').iterdir()} == set(listed)
    capsys.readouterr()
    assert cli.main(_args(inputs, out)) == 0
    assert 'wrote 3 images (6 in total)' in capsys.readouterr().out
    assert _fingerprint(out) == _fingerprint(runs[1])


def test_a_folder_with_more_images_than_asked_is_refused(inputs, tmp_path, capsys):
    out = tmp_path / 'dataset'
    assert cli.main(_args(inputs, out, images=2)) == 0
    before = _fingerprint(out)
    capsys.readouterr()
    assert cli.main(_args(inputs, out, images=1)) == 1
    err = capsys.readouterr().err
    assert err.startswith('pose6d: error: ') and err.count('\n') == 1
    assert 'already holds 2 images, more than the 1 asked for' in err
    assert '--images 2 or more' in err and '--force' in err
    assert _fingerprint(out) == before
    assert cli.main(_args(inputs, out, images=2)) == 0  # complete: a note, nothing to do
    captured = capsys.readouterr()
    assert 'already holds all 2 images; nothing to do' in captured.err
    assert 'wrote 0 images (2 in total)' in captured.out and _fingerprint(out) == before


def test_other_settings_are_refused_and_force_starts_over(inputs, tmp_path, capsys):
    out = tmp_path / 'dataset'
    assert cli.main(_args(inputs, out, images=2)) == 0
    capsys.readouterr()
    assert cli.main(_args(inputs, out, images=2, seed=5)) == 1
    err = capsys.readouterr().err
    assert err.startswith('pose6d: error: ') and 'seed' in err and '--force' in err
    assert cli.main(_args(inputs, out, '--force', images=2, seed=5)) == 0
    assert json.loads((out / 'synth.json').read_text())['seed'] == 5
    assert len(BopDataset(out)) == 2


def test_a_foreign_folder_is_refused_without_force(inputs, tmp_path, capsys):
    out = tmp_path / 'photos'
    out.mkdir()
    (out / 'holiday.txt').write_text('mine')
    assert cli.main(_args(inputs, out, images=1)) == 1
    err = capsys.readouterr().err
    assert 'is not empty and is not a pose6d synth output' in err and '--force' in err
    assert sorted(p.name for p in out.iterdir()) == ['holiday.txt']
    assert cli.main(_args(inputs, out, '--force', images=1)) == 0
    assert (out / 'holiday.txt').read_text() == 'mine'  # --force deletes only what synth writes
    assert len(BopDataset(out)) == 1


def test_a_distorted_camera_gives_undistorted_images_labelled_without_d(inputs, tmp_path,
                                                                        capsys):
    distorted = CameraModel(CAMERA.K, [-0.2, 0.05, 0.0, 0.0, 0.0], 96, 72)
    (tmp_path / 'camera.yaml').write_text(yaml.safe_dump(distorted.to_dict()))
    args = _args(inputs, tmp_path / 'out', images=1)
    args[args.index('--camera') + 1] = str(tmp_path / 'camera.yaml')
    assert cli.main(args) == 0
    assert 'rendered undistorted' in capsys.readouterr().err
    sample = BopDataset(tmp_path / 'out')[0]
    assert sample.camera == CAMERA and not sample.camera.has_distortion


# --- bad input --------------------------------------------------------------------------------


def _objects_yaml(folder, mesh_name):
    path = folder / 'bad_objects.yaml'
    path.write_text(yaml.safe_dump({'objects': [{'name': 'thing', 'id': 1, 'mesh': mesh_name}]}))
    return path


def _bad_case(case, inputs, tmp_path):
    """(argv changes, expected message) of one kind of bad input."""
    args = _args(inputs, tmp_path / 'out', images=1)
    if case == 'missing mesh':
        args[2] = str(_objects_yaml(tmp_path, 'nowhere.ply'))
        return args, 'mesh file not found: '
    if case == 'empty mesh':
        (tmp_path / 'empty.ply').write_bytes(b'')
        args[2] = str(_objects_yaml(tmp_path, 'empty.ply'))
        return args, 'is empty'
    if case == 'mesh without faces':
        (tmp_path / 'cloud.ply').write_text(
            'ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n'
            'property float z\nend_header\n0 0 0\n0.1 0 0\n0 0.1 0\n')
        args[2] = str(_objects_yaml(tmp_path, 'cloud.ply'))
        return args, 'has no faces'
    if case == 'mesh in millimetres':
        trimesh.creation.box((100.0, 70.0, 50.0)).export(tmp_path / 'box_mm.ply')
        args[2] = str(_objects_yaml(tmp_path, 'box_mm.ply'))
        return args, ("object 'thing' has a diameter of 131.9 m; expected 5 mm to 3 m "
                      '(geometry is in metres): add `scale: 0.001` if the mesh is in millimetres')
    if case == 'broken config':
        config = tmp_path / 'config.yaml'
        config.write_text('scene:\n  occluders: [0, 1\n  distractors: [0, 1]\n')
        args[args.index('--config') + 1] = str(config)
        return args, (f"cannot read config file {config}: line 3, column 14: expected ',' or "
                      "']', but got ':' (while parsing a flow sequence started at line 2, "
                      'column 14)')
    if case == 'bad lighting':
        config = tmp_path / 'config.yaml'
        config.write_text(yaml.safe_dump({'lighting': {'lights': [1, 5]}}))
        args[args.index('--config') + 1] = str(config)
        return args, f'{config}: lighting.lights must lie within [1, 3]'
    if case == 'unknown section':
        config = tmp_path / 'config.yaml'
        config.write_text(yaml.safe_dump({'lights': {'lights': [1, 2]}}))
        args[args.index('--config') + 1] = str(config)
        return args, ('unknown section(s) lights; expected some of scene, lighting, shadows, '
                      'photometric, backgrounds')
    if case == 'unknown object id':
        return args + ['--object-ids', '3,99'], ('unknown object id 99; this object '
                                                 'set has ids 3, 8')
    if case == 'unknown object id in config':
        config = tmp_path / 'config.yaml'
        config.write_text(yaml.safe_dump({'scene': {'object_ids': [42]}}))
        args[args.index('--config') + 1] = str(config)
        return args, 'unknown object id 42'
    if case == 'no readable background':
        (tmp_path / 'empty_photos').mkdir()
        (tmp_path / 'empty_photos' / 'broken.jpg').write_bytes(b'\x00' * 64)
        args[args.index('--backgrounds') + 1] = str(tmp_path / 'empty_photos')
        return args, 'holds no readable image; expected photographs with the extensions .jpg'
    if case == 'zero focal length':
        camera = tmp_path / 'camera.yaml'
        camera.write_text(yaml.safe_dump({'fx': 0.0, 'fy': 0.0, 'cx': 47.5, 'cy': 35.5,
                                          'width': 96, 'height': 72}))
        args[args.index('--camera') + 1] = str(camera)
        return args, 'positive focal lengths'
    raise AssertionError(case)


@pytest.mark.parametrize('case', ['missing mesh', 'empty mesh', 'mesh without faces',
                                  'mesh in millimetres', 'broken config', 'bad lighting',
                                  'unknown section',
                                  'unknown object id', 'unknown object id in config',
                                  'no readable background', 'zero focal length'])
def test_bad_input_is_one_clear_line_and_exit_1(inputs, tmp_path, capsys, case):
    argv, message = _bad_case(case, inputs, tmp_path)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith('pose6d: error: ') and err.count('\n') == 1
    assert message in err
    assert not (tmp_path / 'out').exists()  # nothing written before the input is checked


def test_bench_synth_prints_json(capsys):
    assert cli.main(['bench', 'synth', '--images', '3', '--workers', '1',
                     '--size', '64x48']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['benchmark'] == 'synth' and report['workers'] == 1
    assert (report['width'], report['height'], report['images']) == (64, 48, 3)
    assert report['images_per_second'] > 0 and report['machine']['cpu_count'] >= 1


def test_bench_synth_times_a_config_against_a_baseline(inputs, tmp_path, capsys):
    (tmp_path / 'sim2real.yaml').write_text(yaml.safe_dump(SIM_TO_REAL))
    assert cli.main(['bench', 'synth', '--images', '2', '--workers', '1', '--size', '64x48',
                     '--config', str(tmp_path / 'sim2real.yaml'),
                     '--baseline-config', str(inputs / 'config.yaml')]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['images_per_second'] > 0 and report['baseline']['images_per_second'] > 0
    assert report['speed_ratio_to_baseline'] == pytest.approx(
        report['images_per_second'] / report['baseline']['images_per_second'], rel=0.01)
