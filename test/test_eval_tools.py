"""`pose6d eval`, `predict` and `export`, and the estimator paths they stand on.

Batch vs single, bundle round trips and refusals, the exact letterbox mapping, ONNX parity.
"""

import csv
import hashlib
import json
import shutil

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
import torch
import yaml

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.geometry import metrics
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.objects import ObjectModel, ObjectSet
from pose6d_ros.core.geometry.poses import box_2d, box_keypoints, Pose
from pose6d_ros.core.geometry.results import ObjectPose
from pose6d_ros.core.inference.bundle import (
    BundleError,
    IMAGENET_NORMALISATION,
    load_bundle,
    save_bundle,
)
from pose6d_ros.core.inference.estimator import Estimator, EstimatorConfig
from pose6d_ros.core.inference.evaluate import evaluate_dataset, PoseEvaluator
from pose6d_ros.core.nets.keypoint_codec import CodecConfig, encode
from pose6d_ros.core.nets.methods import get_method
from pose6d_ros.tools import cli
from pose6d_ros.tools.report import CURVES, predict_image, read_bop_csv, run_eval

EVAL_FILES = {'metrics.json', 'metrics.md', 'predictions.csv'} | {
    f'{c.key}_curve.png' for c in CURVES}
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


@pytest.fixture(scope='module')
def bundle_copy(tiny_bundle, tmp_path_factory):
    """A copy of the session's bundle to write default outputs into (its mesh path breaks)."""
    path = tmp_path_factory.mktemp('bundle_copy') / 'bundle'
    shutil.copytree(tiny_bundle, path)
    return path


# --- helpers ------------------------------------------------------------------------------


def read_csv(path):
    """The BOP results CSV, parsed here independently of report.read_bop_csv."""
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    parsed = []
    for row in rows:
        R = np.array([float(v) for v in row['R'].split(' ')]).reshape(3, 3)
        t_mm = np.array([float(v) for v in row['t'].split(' ')])
        parsed.append({'scene_id': int(row['scene_id']), 'im_id': int(row['im_id']),
                       'obj_id': int(row['obj_id']), 'score': float(row['score']),
                       'R': R, 't': t_mm / 1000.0, 'time': float(row['time'])})
    return parsed


def recompute_add(rows, dataset, objects, images):
    """Per object: ADD(-S) of each ground-truth instance, from the CSV rows alone.

    The BOP rule, written out plainly: of an object's estimates in an image only as many as it
    has instances count, best score first; each takes the nearest instance still free. Inf for
    an instance left without an estimate.
    """
    by_id = {obj.object_id: obj for obj in objects}
    errors = {obj.name: [] for obj in objects}
    for index in range(images):
        sample = dataset[index]
        error_of = {}
        for obj in objects:
            instances = [j for j, a in enumerate(sample.annotations)
                         if a.object_id == obj.object_id]
            estimates = [r for r in rows if (r['scene_id'], r['im_id'], r['obj_id'])
                         == (sample.scene_id, sample.image_id, obj.object_id)]
            estimates.sort(key=lambda r: r['score'], reverse=True)
            for row in estimates[:len(instances)]:
                free = {j: metrics.add_auto(Pose(row['R'], row['t']),
                                            Pose(sample.annotations[j].R,
                                                 sample.annotations[j].t), obj)
                        for j in instances if j not in error_of}
                nearest = min(free, key=free.get)
                error_of[nearest] = free[nearest]
        for j, annotation in enumerate(sample.annotations):
            errors[by_id[annotation.object_id].name].append(error_of.get(j, np.inf))
    return {name: np.array(v) for name, v in errors.items()}


def image_key(tensor):
    return hashlib.sha1(tensor.detach().cpu().numpy().tobytes()).hexdigest()


class KeypointMapNetwork(torch.nn.Module):
    """A stand-in for HRPose.

    For each known input (by its bytes) it returns the belief maps and vector fields that
    `keypoint_codec.encode` makes for the true keypoints; its outputs for one image do not
    depend on the rest of the batch.
    """

    def __init__(self, map_size):
        super().__init__()
        self.map_size = map_size  # (h, w)
        self.maps = {}

    def forward(self, x):
        h, w = self.map_size
        belief = torch.zeros(len(x), 9, h, w)
        vectors = torch.zeros(len(x), 16, h, w)
        for i, image in enumerate(x):
            if image_key(image) in self.maps:
                belief[i], vectors[i] = self.maps[image_key(image)]
        return {'belief': belief, 'vectors': vectors, 'features': torch.zeros(len(x), 1, h, w)}


BOX_OBJECT = ObjectSet([ObjectModel('box', 1, box_keypoints([-0.03, -0.025, -0.02],
                                                            [0.03, 0.025, 0.02]), 0.0877)])
INPUT = (96, 96)


def map_estimator(cases):
    """An Estimator (keypoints method, 96x96 input) on KeypointMapNetwork that knows `cases`.

    `cases`: (image, camera, pose) with the box object in view.
    """
    config = CodecConfig()
    map_size = (INPUT[1] // config.stride, INPUT[0] // config.stride)
    network = KeypointMapNetwork(map_size)
    estimator = Estimator(network, 'keypoints', BOX_OBJECT, INPUT, IMAGENET_NORMALISATION,
                          device='cpu', config=EstimatorConfig(max_reprojection_error=1.0))
    for image, camera, pose in cases:
        letterbox = camera.letterbox(*INPUT)
        pixels = camera.project(pose.transform(BOX_OBJECT[0].keypoints))
        belief, vectors = encode([(0, letterbox.to_input(pixels))], 1, *map_size, config)
        key = image_key(estimator.preprocess([image], [letterbox])[0])
        network.maps[key] = (torch.from_numpy(belief), torch.from_numpy(vectors))
    return estimator


def distorted_case(seed, width=160, height=90):
    """A non-square, distorted camera, a noise image, and a pose of the box well inside the view.

    The camera has an off-centre principal point.
    """
    rng = np.random.default_rng(seed)
    camera = CameraModel.from_intrinsics(
        0.9 * width, 0.88 * width, 0.54 * width, 0.46 * height, width, height,
        D=[-0.28, 0.09, 0.0012, -0.0008, -0.01])
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    rotvec = Rotation.random(random_state=seed).as_rotvec() * 0.6
    pose = Pose.from_rotvec(rotvec, [0.012 * rng.uniform(-1, 1), 0.006 * rng.uniform(-1, 1),
                                     0.36 + 0.04 * rng.uniform(-1, 1)])
    return image, camera, pose


# --- eval -----------------------------------------------------------------------------------


def test_eval_command_writes_every_output_and_refuses_to_overwrite(
        learned_bundle, tiny_dataset, dataset, tmp_path, capsys):
    out = tmp_path / 'eval'
    bundle, _losses = learned_bundle  # a model trained in the test session: real detections
    args = ['eval', '--model', str(bundle), '--data', str(tiny_dataset), '--out', str(out),
            '--device', 'cpu', '--max-images', '6']
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert '| Object | ADD(-S) 0.1d |' in printed and str(out) in printed
    assert {p.name for p in out.iterdir()} == EVAL_FILES     # no temporary files left

    document = json.loads((out / 'metrics.json').read_text())
    assert document['command'].startswith('pose6d eval --model ')
    assert document['bundle']['method'] == 'keypoints'
    assert document['dataset']['images'] == 6 and document['dataset']['split'] == 'train'
    assert document['date'] and document['fps'] > 0
    entry = document['objects']['box']
    for key in ('add_0.1d', '5cm5deg', 'proj_2d_5px', 'iou_2d_0.5', 'recall',
                'mean_rotation_deg', 'mean_translation', 'auc_add', 'auc_proj_2d'):
        assert key in entry and key in document['mean']
    table = (out / 'metrics.md').read_text()
    assert '| **Mean** |' in table and '| box |' in table
    for curve in CURVES:
        data = (out / f'{curve.key}_curve.png').read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[2] == 3
    header = (out / 'predictions.csv').read_text().splitlines()[0]
    assert header == 'scene_id,im_id,obj_id,score,R,t,time'
    rows = read_csv(out / 'predictions.csv')
    errors = recompute_add(rows, dataset, dataset.object_set, 6)
    diameter = dataset.object_set[0].diameter
    assert entry['recall'] > 0 and np.isfinite(errors['box']).any()
    assert entry['recall'] == pytest.approx(np.mean(np.isfinite(errors['box'])))
    assert entry['add_0.1d'] == pytest.approx(np.mean(errors['box'] < 0.1 * diameter))

    # Nothing is overwritten without --force; with it the folder is replaced whole.
    (out / 'stale.txt').write_text('old run')
    assert cli.main(args) == 1
    assert 'already exists; pass --force' in capsys.readouterr().err
    assert (out / 'stale.txt').exists()
    assert cli.main(args[:-2] + ['--max-images', '2', '--force']) == 0
    assert {p.name for p in out.iterdir()} == EVAL_FILES
    assert json.loads((out / 'metrics.json').read_text())['dataset']['images'] == 2


def test_eval_default_folder_is_in_the_bundle(bundle_copy, tiny_dataset, capsys):
    # The copied bundle's relative mesh path no longer resolves: the dataset's mesh stands in.
    assert cli.main(['eval', '--model', str(bundle_copy), '--data', str(tiny_dataset),
                     '--device', 'cpu', '--max-images', '2', '--objects', '1']) == 0
    assert {p.name for p in (bundle_copy / 'eval' / tiny_dataset.name).iterdir()} == EVAL_FILES


class OracleEstimator:
    """Ground truth plus noise: poses that pass and fail ADD, and misses.

    Also a second, wrong estimate of the same object on some images: ranked above the good one
    on some (it is the one scored, and fails), below it on others (ignored).
    """

    def __init__(self, dataset):
        self.objects = dataset.object_set
        self.truth = {}
        for i in range(len(dataset)):
            sample = dataset[i]
            self.truth[image_key(torch.from_numpy(sample.load_image()))] = (i, sample)
        self.returned = {}   # image index -> the poses returned for it

    def __call__(self, image, camera):
        index, sample = self.truth[image_key(torch.from_numpy(image))]
        rng = np.random.default_rng(index)
        poses = []
        if index % 6 == 5:
            return poses                                   # a miss
        for annotation in sample.annotations:
            obj = self.objects.by_id(annotation.object_id)
            noise = Rotation.from_rotvec(rng.normal(size=3) * np.radians(4.0))
            R = noise.as_matrix() @ annotation.R
            t = annotation.t + rng.normal(scale=0.006, size=3)
            poses.append(self._pose(obj, R, t, camera, 0.9))
            if index % 4 in (1, 3):
                score = 0.95 if index % 4 == 1 else 0.5
                poses.append(self._pose(obj, R, t + [0.05, 0.0, 0.1], camera, score))
        self.returned[index] = poses
        return poses

    @staticmethod
    def _pose(obj, R, t, camera, score):
        keypoints = camera.project(Pose(R, t).transform(obj.keypoints))
        return ObjectPose(obj.name, obj.class_id, obj.object_id, score, keypoints,
                          box_2d(keypoints[:8]), R, t, 0.5, 9, obj.box_size,
                          obj.keypoints[8].copy())


def test_eval_numbers_agree_with_the_core_metrics(dataset, tmp_path):
    estimator = OracleEstimator(dataset)
    document = run_eval(estimator, dataset, tmp_path / 'eval', progress=False)
    rows = read_csv(tmp_path / 'eval' / 'predictions.csv')
    returned = [p for poses in estimator.returned.values() for p in poses]
    assert len(rows) == len(returned)
    again = read_bop_csv(tmp_path / 'eval' / 'predictions.csv')      # our reader agrees
    assert all(np.array_equal(a['R'], b['R']) and np.allclose(a['t'], b['t'], rtol=1e-15)
               for a, b in zip(rows, again))
    for row in rows:                         # R row-major and orthonormal, t in millimetres
        assert np.allclose(row['R'] @ row['R'].T, np.eye(3), atol=1e-6)
        assert any(np.allclose(row['R'], p.R, atol=0, rtol=0) and np.allclose(row['t'], p.t)
                   for p in returned)
        assert 0.2 < row['t'][2] < 2.0 and row['time'] > 0
    times = {}
    for row in rows:                         # BOP: one time per image
        times.setdefault((row['scene_id'], row['im_id']), set()).add(row['time'])
    assert all(len(v) == 1 for v in times.values())

    obj = dataset.object_set[0]
    errors = recompute_add(rows, dataset, dataset.object_set, len(dataset))[obj.name]
    passed = np.mean(errors < 0.1 * obj.diameter)
    assert 0.2 < passed < 0.9, 'the noise makes some estimates pass and some fail'
    entry = document['objects'][obj.name]
    assert entry['add_0.1d'] == pytest.approx(passed, abs=1e-12)
    assert document['mean']['add_0.1d'] == pytest.approx(passed, abs=1e-12)
    assert entry['auc_add'] == pytest.approx(metrics.curve_auc(errors / obj.diameter, 0.5))
    assert entry['recall'] == pytest.approx(np.mean(np.isfinite(errors)))
    saved = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())
    assert saved['objects'][obj.name]['add_0.1d'] == entry['add_0.1d']
    assert f'| {obj.name} | {100 * passed:.1f} |' in (tmp_path / 'eval' / 'metrics.md').read_text()


def test_eval_reports_keypoint_errors_and_corner_swaps(dataset):
    """A found object whose corners are taken for each other shows as swaps, pose or not."""
    class HonestEstimator(OracleEstimator):
        swap = False

        def __call__(self, image, camera):
            _, sample = self.truth[image_key(torch.from_numpy(image))]
            poses = [self._pose(self.objects.by_id(a.object_id), a.R, a.t, camera, 0.9)
                     for a in sample.annotations]   # the truth: keypoints exact
            for pose in poses if self.swap else ():
                pose.keypoints = pose.keypoints[[1, 0, 2, 3, 4, 5, 6, 7, 8]]   # 2 of 8 swapped
            return poses

    class SwappingEstimator(HonestEstimator):
        swap = True

    honest = evaluate_dataset(HonestEstimator(dataset), dataset)[0]
    swapped, evaluator = evaluate_dataset(SwappingEstimator(dataset), dataset)
    name = dataset.object_set[0].name
    assert honest['objects'][name]['corner_swaps'] == 0.0
    assert honest['objects'][name]['keypoint_px'] == pytest.approx(0.0, abs=1e-6)
    assert swapped['objects'][name]['corner_swaps'] == pytest.approx(0.25)
    for record in evaluator.records:            # two corners off by their distance apart
        assert np.count_nonzero(np.asarray(record['keypoint_errors']) > 1e-6) == 2


def test_eval_iou_scores_the_pose_not_the_reported_box(dataset):
    """Zhang et al.'s 2D IoU compares the masks rendered with both poses.

    An exact pose scores 1 whatever box its method reports, and a pose off by its own width
    scores about 0.
    """
    sample = dataset[0]
    annotation = sample.annotations[0]
    obj = dataset.object_set.by_id(annotation.object_id)
    tiny_box = np.array([0.0, 0.0, 1.0, 1.0])
    exact = OracleEstimator._pose(obj, annotation.R, annotation.t, sample.camera, 0.9)
    exact.box = tiny_box
    evaluator = PoseEvaluator(dataset.object_set)
    evaluator.process(sample, [exact])
    assert evaluator.records[-1]['iou_2d'] == pytest.approx(1.0, abs=1e-9)
    sideways = annotation.t + [1.5 * obj.diameter, 0.0, 0.0]
    moved = OracleEstimator._pose(obj, annotation.R, sideways, sample.camera, 0.9)
    evaluator.process(sample, [moved])
    assert evaluator.records[-1]['detected'] is True
    assert evaluator.records[-1]['iou_2d'] < 0.1


# --- estimator: batch, bundles, letterbox ---------------------------------------------------


def test_batch_and_single_image_paths_agree(tiny_bundle, dataset):
    # The tiny bundle's real network: per-image outputs do not depend on the batch (to float
    # rounding: CPU kernels may pick another algorithm for another batch size).
    estimator = Estimator.from_bundle(tiny_bundle, device='cpu')
    samples = [dataset[i] for i in range(4)]
    images = [s.load_image() for s in samples]
    cameras = [s.camera for s in samples]
    letterboxes = [c.letterbox(*estimator.input_size) for c in cameras]
    batched = estimator.forward(estimator.preprocess(images, letterboxes))
    for i, (image, letterbox) in enumerate(zip(images, letterboxes)):
        single = estimator.forward(estimator.preprocess([image], [letterbox]))
        for name in ('belief', 'vectors'):
            assert torch.allclose(batched[name][i], single[name][0], atol=1e-5, rtol=0)
    assert [len(r) for r in estimator.batch(images, cameras)] == [
        len(estimator(i, c)) for i, c in zip(images, cameras)]

    # Decoding, letterbox and PnP per image: identical results, bit for bit, with a network
    # whose outputs are exact, for images of different sizes and cameras in one batch.
    cases = [distorted_case(1), distorted_case(2, 96, 72), distorted_case(3, 120, 120)]
    estimator = map_estimator(cases)
    batch = estimator.batch([c[0] for c in cases], [c[1] for c in cases])
    for (image, camera, pose), poses in zip(cases, batch):
        single = estimator(image, camera)
        assert len(poses) == len(single) == 1
        for name in ('R', 't', 'keypoints', 'box', 'score', 'reprojection_error'):
            assert np.array_equal(getattr(poses[0], name), getattr(single[0], name)), name
        assert np.abs(poses[0].t - pose.t).max() < 1e-5


@pytest.mark.skipif(not any(shutil.which(c) for c in ('g++', 'c++', 'clang++')),
                    reason='torch.compile on the CPU needs a C++ compiler (g++ or clang++)')
def test_compiled_network_gives_the_same_results(learned_bundle, dataset):
    """compile=True (inductor, weights frozen in on the CPU) changes speed, not results."""
    path, _ = learned_bundle
    eager = Estimator.from_bundle(path, device='cpu')
    compiled = Estimator.from_bundle(path, device='cpu', config=EstimatorConfig(compile=True))
    compiled.warm_up()
    samples = [dataset[i] for i in range(3)]
    for sample in samples:
        image, camera = sample.load_image(), sample.camera
        tensor = eager.preprocess([image], [camera.letterbox(*eager.input_size)])
        expected, got = eager.forward(tensor), compiled.forward(tensor)
        for name in ('belief', 'vectors'):
            assert torch.allclose(expected[name], got[name], atol=1e-3, rtol=0), name
        found, found_compiled = eager(image, camera), compiled(image, camera)
        assert [p.object_name for p in found] == [p.object_name for p in found_compiled]
        for a, b in zip(found, found_compiled):
            assert np.abs(a.t - b.t).max() < 1e-3
            same_found = np.isfinite(a.keypoints) == np.isfinite(b.keypoints)
            assert same_found.all()
            assert np.nanmax(np.abs(a.keypoints - b.keypoints)) < 0.05
    assert sum(len(eager(s.load_image(), s.camera)) for s in samples) > 0   # not vacuous


@pytest.mark.parametrize('method, network_config, input_size', [
    ('keypoints', {'backbone': 'hrnet_tiny'}, (96, 72)),
    ('corners', {'depth': 18, 'backbone_width': 16, 'fpn_channels': 32,
                 'input_size': [96, 96]}, (96, 96)),
])
def test_saved_bundle_gives_identical_outputs(method, network_config, input_size, dataset,
                                              tmp_path):
    torch.manual_seed(0)
    network = get_method(method, 1, network_config).build_network()
    with torch.no_grad():                # non-trivial weights and BN statistics
        for value in network.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.randn_like(value) * 0.05)
    network.eval()
    path = save_bundle(tmp_path / 'bundle', method, network.config_dict(), network.state_dict(),
                       dataset.object_set, input_size)
    loaded = load_bundle(path).build_network()     # on the CPU, in eval mode
    assert not loaded.training
    image = torch.randn(2, 3, input_size[1], input_size[0])
    with torch.no_grad():
        expected, got = network(image), loaded(image)
    assert set(expected) == set(got)
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    # The estimator takes it as it is (it may fold BatchNorm: equal to float rounding).
    estimator = Estimator.from_bundle(path, device='cpu')
    with torch.no_grad():
        optimised = estimator.network(image.contiguous(memory_format=torch.channels_last))
    for name in ('belief', 'vectors') if method == 'keypoints' else ('scores', 'boxes'):
        assert torch.allclose(optimised[name], expected[name], atol=1e-3, rtol=1e-3), name


@pytest.fixture(scope='module')
def good_bundle(dataset, tmp_path_factory):
    network = get_method('keypoints', 1, {'backbone': 'hrnet_tiny'}).build_network()
    return save_bundle(tmp_path_factory.mktemp('good') / 'bundle', 'keypoints',
                       network.config_dict(), network.state_dict(), dataset.object_set,
                       (96, 72))


def _edit_card(path, **changes):
    card = yaml.safe_load((path / 'card.yaml').read_text())
    card.update(changes)
    (path / 'card.yaml').write_text(yaml.safe_dump(card))


def _truncate_weights(path):
    data = (path / 'weights.pt').read_bytes()
    (path / 'weights.pt').write_bytes(data[:len(data) // 2])


def _other_network_weights(path):
    other = get_method('keypoints', 1, {'backbone': 'hrnet_tiny', 'head_width': 32})
    torch.save(other.build_network().state_dict(), path / 'weights.pt')


@pytest.mark.parametrize('damage, message', [
    (lambda p: (p / 'card.yaml').unlink(), 'has no card.yaml'),
    (lambda p: _edit_card(p, format='pose6d-bundle/0'), "unsupported format 'pose6d-bundle/0'"),
    (lambda p: _edit_card(p, method='segmentation'), "unknown method 'segmentation'"),
    (lambda p: _edit_card(p, classes=['mug']), r'classes in card.yaml \(mug\) do not match '
                                               r'objects.yaml \(box\)'),
    (_truncate_weights, 'cannot read weights.pt'),
    (_other_network_weights, 'weights do not match the network described in card.yaml'),
], ids=['no-card', 'format', 'method', 'classes', 'truncated', 'other-network'])
def test_corrupt_or_mismatched_bundles_are_refused(good_bundle, tmp_path, damage, message):
    path = tmp_path / 'bundle'
    shutil.copytree(good_bundle, path)
    Estimator.from_bundle(path, device='cpu')  # the copy is fine before the damage
    damage(path)
    with pytest.raises(BundleError, match=message):
        Estimator.from_bundle(path, device='cpu')


def test_a_corrupt_bundle_is_one_line_on_the_command_line(good_bundle, tiny_dataset, tmp_path,
                                                          capsys):
    path = tmp_path / 'bundle'
    shutil.copytree(good_bundle, path)
    _truncate_weights(path)
    image = next((tiny_dataset / 'train' / '000000' / 'rgb').iterdir())
    assert cli.main(['predict', '--model', str(path), '--image', str(image),
                     '--out', str(tmp_path / 'o.png')]) == 1
    err = capsys.readouterr().err
    assert err.startswith('pose6d: error: bundle ') and 'cannot read weights.pt' in err
    assert not (tmp_path / 'o.png').exists()


def test_letterbox_mapping_is_exact():
    """A 160x90 distorted image with an off-centre principal point into a 96x96 input.

    Scale 0.6, 21 rows of padding above and below. Maps made from the true projections,
    carried to network-input pixels by Letterbox.to_input, come back as the true pose.

    Tolerance: the decoder's log-parabola peak fit is exact for the codec's Gaussians, so what
    is left is float32 rounding of the maps and PnP's convergence (measured: 3e-6 px, 3e-8 m,
    1e-5 deg). The bounds (1e-4 px, 1e-6 m, 1e-4 deg) keep a 30x margin and sit far below a
    half-pixel-convention slip in the mapping (0.5 (1/0.6 - 1) = 0.33 px, 1.3 mm, 0.19 deg
    here), which a 1 mm / 0.1 deg bound would catch only just.
    """
    for seed in range(4):
        image, camera, pose = distorted_case(seed)
        letterbox = camera.letterbox(*INPUT)
        assert (letterbox.resized_width, letterbox.resized_height, letterbox.pad_y) == (96, 54, 21)
        truth = camera.project(pose.transform(BOX_OBJECT[0].keypoints))
        assert (truth > 5).all() and (truth < [155, 85]).all()
        found = map_estimator([(image, camera, pose)])(image, camera)
        assert len(found) == 1
        assert np.abs(found[0].keypoints - truth).max() < 1e-4
        assert np.linalg.norm(found[0].t - pose.t) < 1e-6
        assert metrics.rotation_error_deg(found[0].pose, pose) < 1e-4


# --- export ---------------------------------------------------------------------------------


def test_onnx_export_matches_pytorch(bundle_copy, dataset, capsys):
    ort = pytest.importorskip('onnxruntime', reason='onnxruntime is not installed: '
                                                    'pip install -e ".[export]"')
    assert cli.main(['export', '--model', str(bundle_copy), '--format', 'onnx',
                     '--dynamic-batch']) == 0
    printed = capsys.readouterr().out
    assert 'max abs difference' in printed
    path = bundle_copy / 'model.onnx'                    # the default output
    assert path.is_file() and not list(bundle_copy.glob('.model.onnx*'))

    # Our own check on real images, batch of 3 (the exported batch size was 2).
    estimator = Estimator.from_bundle(bundle_copy, device='cpu')
    samples = [dataset[i] for i in range(3)]
    tensor = estimator.preprocess([s.load_image() for s in samples],
                                  [s.camera.letterbox(*estimator.input_size) for s in samples])
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    assert [i.name for i in session.get_inputs()] == ['image']
    assert [o.name for o in session.get_outputs()] == ['belief', 'vectors']
    belief, vectors = session.run(None, {'image': np.ascontiguousarray(tensor.numpy())})
    with torch.no_grad():
        expected = load_bundle(bundle_copy).build_network()(tensor)
    assert np.abs(belief - expected['belief'].numpy()).max() < 1e-3
    assert np.abs(vectors - expected['vectors'].numpy()).max() < 1e-3
    meta = session.get_modelmeta().custom_metadata_map
    assert meta['pose6d.method'] == 'keypoints' and json.loads(meta['pose6d.input_size']) == [
        96, 72]

    assert cli.main(['export', '--model', str(bundle_copy), '--format', 'onnx']) == 1
    assert 'already exists; pass --force' in capsys.readouterr().err


def test_onnx_export_of_a_corners_bundle(dataset, tmp_path):
    pytest.importorskip('onnxruntime', reason='onnxruntime is not installed: '
                                              'pip install -e ".[export]"')
    from pose6d_ros.core.inference.export import export_model

    torch.manual_seed(0)
    config = {'depth': 18, 'backbone_width': 16, 'fpn_channels': 32, 'input_size': [96, 96]}
    network = get_method('corners', 1, config).build_network()
    path = save_bundle(tmp_path / 'bundle', 'corners', network.config_dict(),
                       network.state_dict(), dataset.object_set, (96, 96))
    result = export_model(path, 'onnx')
    assert result.path == path / 'model.onnx' and result.path.is_file()
    assert result.output_names == ('scores', 'boxes', 'corners')
    assert result.max_abs_diff < 1e-3 and result.input_shape == (1, 3, 96, 96)


def test_export_bad_input(tmp_path, bundle_copy, capsys, monkeypatch):
    from pose6d_ros.core.inference.export import export_model

    assert cli.main(['export', '--model', str(tmp_path / 'nowhere'), '--format', 'onnx']) == 1
    assert 'model bundle not found' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(['export', '--model', str(bundle_copy), '--format', 'tflite'])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    with pytest.raises(Pose6dError, match="unknown export format 'tflite'; expected one of onnx"):
        export_model(bundle_copy, 'tflite')
    monkeypatch.setitem(__import__('sys').modules, 'onnxruntime', None)   # not installed
    with pytest.raises(Pose6dError, match=r'pip install -e "\.\[export\]"'):
        export_model(bundle_copy, 'onnx', out=tmp_path / 'm.onnx')
    assert not (tmp_path / 'm.onnx').exists()


# --- predict --------------------------------------------------------------------------------


def test_predict_command_writes_overlay_and_json(tiny_bundle, dataset, tmp_path, capsys):
    sample = dataset[0]
    camera_file = tmp_path / 'camera.yaml'
    camera_file.write_text(yaml.safe_dump(sample.camera.to_dict()))
    out, poses = tmp_path / 'overlay.png', tmp_path / 'poses.json'
    args = ['predict', '--model', str(tiny_bundle), '--image', str(sample.image_path),
            '--out', str(out), '--json', str(poses), '--device', 'cpu']
    assert cli.main(args + ['--camera', str(camera_file)]) == 0
    assert 'warning' not in capsys.readouterr().err
    overlay = cv2.imread(str(out))
    assert overlay.shape == (sample.camera.height, sample.camera.width, 3)
    document = json.loads(poses.read_text())
    assert document['camera']['assumed'] is False
    assert CameraModel.from_dict(document['camera']) == sample.camera
    assert document['bundle']['method'] == 'keypoints' and isinstance(document['poses'], list)

    # Without a calibration: the default guess, and a warning that says so.
    assert cli.main(args + ['--force']) == 0
    assert 'only as good as that guess' in capsys.readouterr().err
    guess = json.loads(poses.read_text())['camera']
    assert guess['assumed'] is True
    assert guess['camera_matrix']['data'][0] == pytest.approx(0.9 * 96)
    assert guess['camera_matrix']['data'][2:6:3] == [47.5, 35.5]

    assert cli.main(args) == 1                                   # no overwrite without --force
    assert 'already exists' in capsys.readouterr().err
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'\x89PNG\r\n\x1a\n not really')
    assert cli.main(['predict', '--model', str(tiny_bundle), '--image', str(broken),
                     '--out', str(tmp_path / 'x.png')]) == 1
    assert f'pose6d: error: cannot read image {broken}' in capsys.readouterr().err
    assert cli.main(['predict', '--model', str(tiny_bundle), '--image', str(tmp_path / 'no.png'),
                     '--out', str(tmp_path / 'x.png')]) == 1
    assert 'image not found' in capsys.readouterr().err
    assert not (tmp_path / 'x.png').exists()


def test_predict_json_has_quaternions_in_xyzw_order(tmp_path):
    image, camera, pose = distorted_case(7)
    image_path = tmp_path / 'image.png'
    cv2.imwrite(str(image_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    estimator = map_estimator([(image, camera, pose)])
    found = predict_image(estimator, image_path, tmp_path / 'overlay.png', camera=camera,
                          json_path=tmp_path / 'poses.json', bundle={'path': 'fake'})
    assert len(found) == 1
    entry = json.loads((tmp_path / 'poses.json').read_text())['poses'][0]
    expected = Rotation.from_matrix(pose.R).as_quat()           # scipy: x, y, z, w
    expected *= np.sign(expected[3])
    assert np.allclose(entry['quat_xyzw'], expected, atol=1e-6)
    assert np.allclose(entry['t'], pose.t, atol=1e-5)
    assert entry['object_name'] == 'box' and len(entry['keypoints']) == 9
    overlay = cv2.cvtColor(cv2.imread(str(tmp_path / 'overlay.png')), cv2.COLOR_BGR2RGB)
    assert overlay.shape == image.shape and (overlay != image).any(axis=2).sum() > 100


def test_eval_writes_bop_results_for_a_folder_without_masks_or_depth(
        learned_bundle, tiny_dataset, tmp_path):
    # The LM-O test split as its users have it (rgb/, scene_camera.json, scene_gt.json,
    # scene_gt_info.json, models/: no depth, no masks) and a bundle without meshes
    # (bundle_meshes: false): the meshes come from the dataset's models/.
    data = tmp_path / 'photographs'
    shutil.copytree(tiny_dataset, data)
    for scene in (data / 'train').iterdir():
        for name in ('mask', 'mask_visib', 'depth'):
            shutil.rmtree(scene / name, ignore_errors=True)
        assert {p.name for p in scene.iterdir()} == {'rgb', 'scene_camera.json', 'scene_gt.json',
                                                     'scene_gt_info.json'}
    bundle = tmp_path / 'bundle'
    shutil.copytree(learned_bundle[0], bundle)
    objects = yaml.safe_load((bundle / 'objects.yaml').read_text())
    for entry in objects['objects']:
        entry.pop('mesh', None)
    (bundle / 'objects.yaml').write_text(yaml.safe_dump(objects))
    out = tmp_path / 'eval'
    assert cli.main(['eval', '--model', str(bundle), '--data', str(data), '--out', str(out),
                     '--device', 'cpu']) == 0
    assert (out / 'predictions.csv').read_text().splitlines()[0] == \
        'scene_id,im_id,obj_id,score,R,t,time'
    rows = read_csv(out / 'predictions.csv')
    assert rows and {row['obj_id'] for row in rows} == {1}
    document = json.loads((out / 'metrics.json').read_text())
    assert document['objects']['box']['recall'] > 0
