"""The network run by onnxruntime: `pose6d export --format onnx-int8` and `--onnx FILE`.

fp32 ONNX gives PyTorch's poses; int8 finds the same objects with keypoints close to fp32;
files from another bundle, unreadable files and impossible settings are refused clearly.
"""

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
import torch

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.inference.bundle import save_bundle
from pose6d_ros.core.inference.estimator import Estimator, EstimatorConfig
from pose6d_ros.core.nets.methods import get_method
from pose6d_ros.tools import cli

onnx = pytest.importorskip('onnx', reason='onnx is not installed: pip install -e ".[export]"')
pytest.importorskip('onnxruntime', reason='onnxruntime is not installed: '
                                          'pip install -e ".[export]"')


@pytest.fixture(scope='module')
def bundle(learned_bundle, tmp_path_factory):
    """A copy of the fitted tiny model, with its fp32 and int8 exports written by the CLI."""
    path = tmp_path_factory.mktemp('onnx_bundle') / 'bundle'
    shutil.copytree(learned_bundle[0], path)
    return path


@pytest.fixture(scope='module')
def int8_export(bundle, tiny_dataset):
    """(the int8 file, what `pose6d export` printed)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(['export', '--model', str(bundle), '--format', 'onnx-int8',
                         '--calibration', str(tiny_dataset), '--calibration-images', '12']) == 0
    return bundle / 'model_int8.onnx', printed.getvalue()   # the default output


@pytest.fixture(scope='module')
def int8_file(int8_export):
    return int8_export[0]


@pytest.fixture(scope='module')
def fp32_file(bundle):
    assert cli.main(['export', '--model', str(bundle), '--format', 'onnx',
                     '--dynamic-batch']) == 0
    return bundle / 'model.onnx'


def output_layers(model, outputs):
    """The convolutions that write `outputs`, found back through shape-only ops.

    Asserts that they and everything after them are fp32: no (de)quantization on the way,
    weights plain float initializers.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    initializers = {t.name: t for t in model.graph.initializer}
    layers, pending = set(), list(outputs)
    while pending:
        node = producers.get(pending.pop())
        if node is None:
            continue   # an initializer (a shape)
        assert node.op_type not in ('DequantizeLinear', 'QuantizeLinear'), node.name
        if node.op_type == 'Conv':
            weight = initializers.get(node.input[1])   # not a DequantizeLinear output
            assert weight is not None and weight.data_type == onnx.TensorProto.FLOAT, node.name
            layers.add(node.name)
        else:
            pending.extend(node.input if node.op_type == 'Concat' else node.input[:1])
    return layers


def _estimate(estimator, samples):
    return [estimator(s.load_image(), s.camera) for s in samples]


def test_fp32_onnx_gives_the_pytorch_poses(bundle, fp32_file, dataset):
    torch_estimator = Estimator.from_bundle(bundle, device='cpu')
    onnx_estimator = Estimator.from_bundle(bundle, device='auto',
                                           config=EstimatorConfig(onnx=str(fp32_file)))
    assert onnx_estimator.device == 'cpu' and onnx_estimator.backend == 'onnxruntime float32'
    assert torch_estimator.backend == 'pytorch'
    samples = [dataset[i] for i in range(4)]
    expected, got = _estimate(torch_estimator, samples), _estimate(onnx_estimator, samples)
    assert sum(map(len, expected)) >= 3                    # real detections, not vacuous
    for poses, onnx_poses in zip(expected, got):
        assert [p.object_name for p in poses] == [p.object_name for p in onnx_poses]
        for a, b in zip(poses, onnx_poses):
            assert np.abs(a.keypoints - b.keypoints)[np.isfinite(a.keypoints)].max() < 0.01
            assert np.abs(a.t - b.t).max() < 1e-4
    # a variable-batch file takes the whole batch in one run, with the single-image results
    assert onnx_estimator.network.fixed_batch is None
    batch = onnx_estimator.batch([s.load_image() for s in samples], [s.camera for s in samples])
    for poses, single in zip(batch, got):
        assert [p.object_name for p in poses] == [p.object_name for p in single]
        for a, b in zip(poses, single):
            assert np.abs(a.t - b.t).max() < 1e-6


def test_int8_export_is_quantized_and_finds_what_fp32_finds(bundle, int8_export, fp32_file,
                                                            dataset):
    int8_file, printed = int8_export
    assert 'keypoint shift against fp32 median' in printed and str(int8_file) in printed
    model = onnx.load(str(int8_file))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta['pose6d.precision'] == 'int8' and meta['pose6d.method'] == 'keypoints'
    assert meta['pose6d.calibration'].startswith('12 frames: 24 images of')
    ops = {node.op_type for node in model.graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear'} <= ops
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) > 10
    # The layers writing the outputs stay fp32: their weights are plain float initializers.
    assert len(output_layers(model, ('belief', 'vectors'))) == 1   # one conv, then a split
    assert int8_file.stat().st_size < 0.6 * fp32_file.stat().st_size

    fp32 = Estimator.from_bundle(bundle, device='cpu', config=EstimatorConfig(onnx=str(fp32_file)))
    int8 = Estimator.from_bundle(bundle, device='cpu', config=EstimatorConfig(onnx=str(int8_file)))
    assert int8.backend == 'onnxruntime int8'
    samples = [dataset[i] for i in range(0, 24, 3)]
    shifts, found_both, found_fp32 = [], 0, 0
    for poses, int8_poses in zip(_estimate(fp32, samples), _estimate(int8, samples)):
        found_fp32 += len(poses)
        for a in poses:
            match = [b for b in int8_poses if b.object_name == a.object_name]
            if match:
                found_both += 1
                both = np.isfinite(a.keypoints).all(1) & np.isfinite(match[0].keypoints).all(1)
                shifts.extend(np.linalg.norm(a.keypoints - match[0].keypoints, axis=1)[both])
    assert found_fp32 >= 6 and found_both >= found_fp32 - 1
    assert np.median(shifts) < 1.0                  # camera pixels, images of 96x72


def test_int8_batch_runs_one_image_at_a_time_with_the_same_results(bundle, int8_file, dataset):
    estimator = Estimator.from_bundle(bundle, device='cpu',
                                      config=EstimatorConfig(onnx=str(int8_file)))
    assert estimator.network.fixed_batch == 1
    samples = [dataset[i] for i in range(3)]
    images, cameras = [s.load_image() for s in samples], [s.camera for s in samples]
    batch = estimator.batch(images, cameras)
    for image, camera, poses in zip(images, cameras, batch):
        single = estimator(image, camera)
        assert len(single) == len(poses)
        for a, b in zip(single, poses):
            assert np.array_equal(a.t, b.t) and np.array_equal(a.R, b.R)


def test_onnx_threads_sleep_between_runs_and_torch_stages_use_one(bundle, int8_file, dataset,
                                                                  monkeypatch):
    """The onnxruntime threads sleep when idle, and torch's stages run on one thread.

    Two pools of spinning threads on the same cores made the stages around the network
    20-50x slower.
    """
    from pose6d_ros.core.cpus import inference_threads

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        estimator = Estimator.from_bundle(bundle, device='cpu',
                                          config=EstimatorConfig(onnx=str(int8_file)))
        options = estimator.network.session.get_session_options()
        assert options.get_session_config_entry('session.intra_op.allow_spinning') == '0'
        assert options.intra_op_num_threads == inference_threads(0, current=2)
        assert options.inter_op_num_threads == 1
        assert options.execution_mode.name == 'ORT_SEQUENTIAL'
        assert torch.get_num_threads() == 2        # building it leaves torch's threads alone

        seen = {}
        decode = estimator.method.decode

        def recording_decode(outputs):
            seen['threads'] = torch.get_num_threads()
            seen['channels_last'] = outputs['belief'].is_contiguous(
                memory_format=torch.channels_last)   # the PyTorch network's layout
            return decode(outputs)

        monkeypatch.setattr(estimator.method, 'decode', recording_decode)
        sample = dataset[0]
        estimator(sample.load_image(), sample.camera)
        assert seen == {'threads': 1, 'channels_last': True}
        assert torch.get_num_threads() == 2        # and so does running it
    finally:
        torch.set_num_threads(previous)


def test_int8_check_refuses_and_writes_nothing(bundle, tiny_dataset, tmp_path):
    from pose6d_ros.core.inference.quantize import export_int8

    out = tmp_path / 'strict.onnx'
    with pytest.raises(Pose6dError, match=r'int8 check failed: keypoints move by .* was not '
                                          r'written'):
        export_int8(bundle, out=out, calibration=tiny_dataset, images=8,
                    max_keypoint_shift=1e-9)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_int8_calibrates_on_rendered_views_by_default(tmp_path, dataset):
    """A corners bundle (random weights) with no --calibration: views of its meshes."""
    from pose6d_ros.core.inference.quantize import export_int8

    torch.manual_seed(0)
    config = {'depth': 18, 'backbone_width': 16, 'fpn_channels': 32, 'input_size': [96, 96]}
    network = get_method('corners', 1, config).build_network()
    path = save_bundle(tmp_path / 'corners', 'corners', network.config_dict(),
                       network.state_dict(), dataset.object_set, (96, 96))
    result = export_int8(path, images=4, skip_check=True)   # random weights: nothing to match
    assert result.path == path / 'model_int8.onnx' and result.calibration_images == 4
    assert 'rendered views' in result.calibration
    # every level's head layers stay fp32 (three outputs, concatenated over the levels)
    model = onnx.load(str(result.path))
    assert len(output_layers(model, ('scores', 'boxes', 'corners'))) >= 6
    estimator = Estimator.from_bundle(path, device='cpu',
                                      config=EstimatorConfig(onnx=str(result.path)))
    sample = dataset[0]
    tensor = estimator.preprocess([sample.load_image()],
                                  [sample.camera.letterbox(*estimator.input_size)])
    outputs = estimator.forward(tensor)
    assert set(outputs) == {'scores', 'boxes', 'corners', 'anchors'}
    assert outputs['anchors'].shape[0] == outputs['scores'].shape[1]
    assert isinstance(estimator(sample.load_image(), sample.camera), list)


def test_onnx_files_that_do_not_fit_are_refused(bundle, fp32_file, tmp_path, dataset):
    def load(path, **config):
        return Estimator.from_bundle(bundle, device=config.pop('device', 'cpu'),
                                     config=EstimatorConfig(onnx=str(path), **config))

    with pytest.raises(Pose6dError, match='ONNX model not found: .*pose6d export'):
        load(tmp_path / 'missing.onnx')
    (tmp_path / 'junk.onnx').write_bytes(b'not a model')
    with pytest.raises(Pose6dError, match='is not a readable ONNX model'):
        load(tmp_path / 'junk.onnx')
    # another bundle's export: same network, another input size
    other = tmp_path / 'other'
    shutil.copytree(bundle, other)
    card = (other / 'card.yaml').read_text().replace('- 96\n- 72', '- 64\n- 48')
    assert card != (other / 'card.yaml').read_text()
    (other / 'card.yaml').write_text(card)
    (other / 'model.onnx').unlink()
    assert cli.main(['export', '--model', str(other), '--format', 'onnx']) == 0
    with pytest.raises(Pose6dError, match=r'not an export of this bundle: its input_size is '
                                          r"\[64, 48\] but the bundle's card has \[96, 72\]"):
        load(other / 'model.onnx')
    # a plain ONNX file without our metadata
    model = onnx.load(str(fp32_file))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / 'bare.onnx'))
    with pytest.raises(Pose6dError, match='was not written by `pose6d export`'):
        load(tmp_path / 'bare.onnx')
    # the same card, other weights (a bundle retrained since the export)
    retrained = tmp_path / 'retrained'
    shutil.copytree(bundle, retrained)
    weights = torch.load(retrained / 'weights.pt')
    next(v for v in weights.values() if v.is_floating_point()).mul_(1.01)
    torch.save(weights, retrained / 'weights.pt')
    with pytest.raises(Pose6dError, match='exported from other weights than .*export it again'):
        Estimator.from_bundle(retrained, device='cpu',
                              config=EstimatorConfig(onnx=str(retrained / 'model.onnx')))
    with pytest.raises(Pose6dError, match="runs on the CPU .*device 'cuda'"):
        load(fp32_file, device='cuda')
    with pytest.raises(Pose6dError, match='compile .*applies to the PyTorch network'):
        load(fp32_file, compile=True)


def test_a_relative_onnx_path_is_found_in_the_bundle(bundle, int8_file, tmp_path,
                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)                     # not where the file is
    estimator = Estimator.from_bundle(bundle, device='cpu',
                                      config=EstimatorConfig(onnx='model_int8.onnx'))
    assert estimator.network.path == bundle / 'model_int8.onnx'
    with pytest.raises(Pose6dError, match=f'ONNX model not found: {tmp_path}/other.onnx nor '
                                          f'{bundle}/other.onnx'):
        Estimator.from_bundle(bundle, device='cpu', config=EstimatorConfig(onnx='other.onnx'))


def test_the_int8_check_refuses_what_it_cannot_vouch_for(bundle, tiny_dataset, tmp_path,
                                                         monkeypatch, capsys):
    from pose6d_ros.core.inference import quantize

    fine = {'compared': 60, 'missed': 2, 'median_shift_px': 0.3, 'p95_shift_px': 1.0}
    assert quantize.check_problem(fine) is None
    assert 'finds no object' in quantize.check_problem(
        {'compared': 0, 'missed': 0, 'median_shift_px': float('nan'), 'p95_shift_px': 0})
    assert 'loses 9 of the 9 keypoints' in quantize.check_problem(
        {'compared': 0, 'missed': 9, 'median_shift_px': float('nan'), 'p95_shift_px': 0})
    assert 'loses 8 of the 60' in quantize.check_problem({**fine, 'compared': 52, 'missed': 8})
    assert 'move by 2.50 px' in quantize.check_problem({**fine, 'median_shift_px': 2.5})

    # fp32 finds nothing on the check frames: refused, nothing written; --skip-check writes
    monkeypatch.setattr(quantize, 'keypoint_agreement', lambda *args: {
        'compared': 0, 'missed': 0, 'median_shift_px': float('nan'), 'p95_shift_px': 0})
    out = tmp_path / 'int8.onnx'
    argv = ['export', '--model', str(bundle), '--format', 'onnx-int8', '--out', str(out),
            '--calibration', str(tiny_dataset), '--calibration-images', '4']
    assert cli.main(argv) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and 'fp32 finds no object' in error[0] and 'not written' in error[0]
    assert not out.exists() and not list(tmp_path.iterdir())
    assert cli.main(argv + ['--skip-check']) == 0
    assert 'warning: int8 check failed' in capsys.readouterr().out and out.is_file()


@pytest.mark.parametrize('extra, message', [
    (['--opset', '11'], '--opset must be at least 13 for onnx-int8'),
    (['--max-keypoint-shift', 'nan'], '--max-keypoint-shift must be a positive number'),
    (['--max-keypoint-shift', '-1'], '--max-keypoint-shift must be a positive number'),
    (['--calibration-images', '20'], 'has 24 images; 28 are needed'),
])
def test_int8_export_bad_arguments(bundle, tiny_dataset, tmp_path, capsys, extra, message):
    out = tmp_path / 'int8.onnx'
    assert cli.main(['export', '--model', str(bundle), '--format', 'onnx-int8', '--out',
                     str(out), '--calibration', str(tiny_dataset)] + extra) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error
    assert not out.exists()


def test_eval_predict_and_bench_take_onnx(bundle, int8_file, tiny_dataset, tmp_path, capsys):
    out = tmp_path / 'eval'
    assert cli.main(['eval', '--model', str(bundle), '--data', str(tiny_dataset), '--out',
                     str(out), '--device', 'cpu', '--max-images', '4', '--onnx',
                     str(int8_file)]) == 0
    document = json.loads((out / 'metrics.json').read_text())
    assert document['backend'] == 'onnxruntime int8'
    assert '--onnx' in document['command']

    image = next((tiny_dataset / 'train').rglob('rgb/*'))
    assert cli.main(['predict', '--model', str(bundle), '--image', str(image), '--out',
                     str(tmp_path / 'overlay.png'), '--json', str(tmp_path / 'poses.json'),
                     '--onnx', str(int8_file)]) == 0
    assert (tmp_path / 'overlay.png').is_file()
    assert json.loads((tmp_path / 'poses.json').read_text())['backend'] == 'onnxruntime int8'

    capsys.readouterr()
    assert cli.main(['bench', '--model', str(bundle), '--size', '80x60', '--frames', '2',
                     '--warmup', '1', '--onnx', str(int8_file), '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['backend'] == 'onnxruntime int8' and report['device'] == 'cpu'
    assert report['onnx'] == str(int8_file) and report['ours']['fps'] > 0
    assert report['compile'] is False and report['reference_pytorch']['compile'] is False
    # our PyTorch path is timed in the same run, beside the two usual references
    for name in ('pytorch', 'eager_fp32', 'dope'):
        assert report[f'reference_{name}']['fps'] > 0, name
        assert report[f'speedup_over_{name}'] == pytest.approx(
            report[f'reference_{name}']['total_ms_median']
            / report['ours']['stages_ms']['total']['median'], abs=0.01)

    assert cli.main(['eval', '--model', str(bundle), '--data', str(tiny_dataset), '--out',
                     str(tmp_path / 'bad'), '--onnx', str(tmp_path / 'nope.onnx')]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and 'ONNX model not found' in error[0]


def test_node_pipeline_loads_the_onnx_model(bundle, int8_file):
    from pose6d_ros.ros.parameters import PARAMETERS
    from pose6d_ros.ros.pipeline import load_estimator

    assert PARAMETERS['onnx_model'].default == '' and PARAMETERS['onnx_model'].read_only
    assert load_estimator(bundle, 'cpu').backend == 'pytorch'
    estimator = load_estimator(bundle, 'auto', onnx=str(int8_file))
    assert estimator.backend == 'onnxruntime int8'
    with pytest.raises(Pose6dError, match='compile .*applies to the PyTorch network'):
        load_estimator(bundle, 'cpu', compile_network=True, onnx=str(int8_file))
