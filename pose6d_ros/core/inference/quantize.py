"""`pose6d export --format onnx-int8`: the network with int8 weights and activations.

For CPUs: on two AVX2 cores, onnxruntime's int8 convolutions run the paper-size student about
1.3x faster end to end than our PyTorch path (`pose6d bench --onnx FILE` measures both).
Static post-training quantization, as onnxruntime does it:

1. the fp32 export of export.py (parity-checked against PyTorch), shape-inferred and optimised
   (BatchNorm folded) by onnxruntime's pre-processing;
2. activation ranges calibrated (min/max) on frames the network will see: images of a
   `pose6d synth` / BOP folder (`--calibration DIR`), or by default views of the bundle's
   objects rendered from their meshes;
3. QDQ format, weights int8 per output channel, activations uint8; the layers that produce
   the network's outputs (belief maps and fields, or the detection heads) stay fp32, so the
   decoder reads the same fine values as before.

An int8 network cannot match fp32 to 1e-3. The check that replaces the parity test decodes
both networks on frames kept out of calibration and compares the keypoints they find: fp32
must find some, the median shift (network-input pixels) must stay under `max_keypoint_shift`
and at most `MAX_LOST` of fp32's keypoints may be lost; else nothing is written (unless
`skip_check`: for timing an untrained network). The accuracy that matters is measured by
`pose6d eval --onnx FILE`.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
import shutil
import tempfile
import time

import numpy as np
import torch

from pose6d_ros.core.data.bop import BopDataset
from pose6d_ros.core.data.synth import render_frames
from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.geometry.camera import default_camera, Letterbox
from pose6d_ros.core.inference.bundle import load_bundle
from pose6d_ros.core.inference.estimator import Estimator, EstimatorConfig
from pose6d_ros.core.inference.onnx_export import DEFAULT_OPSET, export_onnx
from pose6d_ros.core.inference.onnx_network import INPUT_NAME, require_onnx

DEFAULT_CALIBRATION_IMAGES = 32
CHECK_IMAGES = 8              # frames kept out of calibration for the agreement check
MAX_KEYPOINT_SHIFT = 2.0      # median keypoint shift (network-input pixels) allowed
MAX_LOST = 0.1                # fraction of fp32's keypoints int8 may not find
MIN_OPSET = 13                # per-channel QuantizeLinear/DequantizeLinear (axis)
PRECISION = 'int8'
LAYER_OPS = ('Conv', 'Gemm', 'MatMul')
SHAPE_OPS = ('Reshape', 'Transpose', 'Concat', 'Slice', 'Split', 'Flatten', 'Squeeze',
             'Unsqueeze', 'Identity')


@dataclass
class QuantizeResult:
    """Where the int8 model went and how closely it agrees with fp32."""

    path: Path
    calibration: str             # where the calibration frames came from
    calibration_images: int
    fp32_parity: float           # max abs difference of the fp32 export against PyTorch
    keypoints_compared: int      # keypoints found by both networks on the check frames
    keypoints_missed: int        # found by fp32, not by int8
    median_shift_px: float       # network-input pixels; nan when nothing was found
    p95_shift_px: float
    seconds: float
    max_keypoint_shift: float = MAX_KEYPOINT_SHIFT


def export_int8(bundle_path, out=None, calibration=None, images=DEFAULT_CALIBRATION_IMAGES,
                opset=None, force=False, max_keypoint_shift=MAX_KEYPOINT_SHIFT, skip_check=False,
                seed=0, log=None):
    """Write `<bundle>/model_int8.onnx` (or `out`); see the module docstring."""
    start = time.perf_counter()
    bundle = load_bundle(bundle_path)
    onnx, _onnxruntime = require_onnx()
    out = Path(out) if out is not None else Path(bundle_path) / 'model_int8.onnx'
    if out.exists() and not force:
        raise Pose6dError(f'{out} already exists; pass --force to overwrite it')
    if out.exists() and out.is_dir():
        raise Pose6dError(f'{out} is a folder; expected a file name such as model_int8.onnx')
    if not isinstance(images, int) or images < 1:
        raise Pose6dError(f'--calibration-images must be a positive number; got {images!r}')
    if not (isinstance(max_keypoint_shift, (int, float)) and max_keypoint_shift > 0
            and np.isfinite(max_keypoint_shift)):
        raise Pose6dError(f'--max-keypoint-shift must be a positive number of pixels; got '
                          f'{max_keypoint_shift!r} (--skip-check turns the check off)')
    opset = DEFAULT_OPSET if opset is None else opset
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise Pose6dError(f'--opset must be at least {MIN_OPSET} for onnx-int8 (per-channel '
                          f'int8 weights); got {opset!r}')
    pictures, source = calibration_images(bundle, calibration, images + CHECK_IMAGES, seed)
    with tempfile.TemporaryDirectory(prefix='pose6d_int8_') as folder:
        folder = Path(folder)
        fp32 = export_onnx(bundle_path, folder / 'fp32.onnx', opset=opset, force=True)
        reference = _onnx_estimator(bundle, fp32.path)
        frames = [network_input(reference, picture) for picture in pictures]
        calibration_set, check_set = frames[:-CHECK_IMAGES], frames[-CHECK_IMAGES:]
        if log is not None:
            log(f'calibrating on {len(calibration_set)} frames ({source})')
        quantized = folder / 'int8.onnx'
        _quantize(fp32.path, quantized, calibration_set, folder)
        model = onnx.load(str(quantized))
        _copy_metadata(onnx.load(str(fp32.path)), model, source, len(calibration_set))
        onnx.save(model, str(quantized))
        agreement = keypoint_agreement(reference, _onnx_estimator(bundle, quantized), check_set)
        if log is not None:
            log(_agreement_line(agreement))
        problem = check_problem(agreement, max_keypoint_shift)
        if problem and not skip_check:
            raise Pose6dError(f'int8 check failed: {problem}; {out} was not written. Calibrate '
                              'on frames like the ones the model sees (--calibration DIR), or '
                              'use the fp32 export')
        if problem and log is not None:
            log(f'warning: int8 check failed ({problem}); written anyway (--skip-check)')
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f'.{out.name}.{os.getpid()}.tmp')
        try:
            shutil.copyfile(quantized, tmp)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return QuantizeResult(out, source, len(calibration_set), fp32.max_abs_diff,
                          agreement['compared'], agreement['missed'],
                          agreement['median_shift_px'], agreement['p95_shift_px'],
                          time.perf_counter() - start, max_keypoint_shift)


def calibration_images(bundle, calibration, count, seed=0):
    """`count` RGB images (H, W, 3) uint8 and a description of their source.

    From a `pose6d synth` / BOP folder (evenly spread over its images) when `calibration` is
    given, else rendered views of the bundle's objects (their meshes must be in the bundle).
    """
    if calibration is not None:
        return _dataset_images(calibration, count)
    return _rendered_images(bundle, default_camera(*bundle.input_size), count, seed)


def network_input(estimator, image):
    """An image as the estimator feeds it to its network: (1, 3, H, W) float32 array."""
    letterbox = Letterbox.fit(image.shape[1], image.shape[0], *estimator.input_size)
    return estimator.preprocess([image], [letterbox]).numpy()


def _onnx_estimator(bundle, path):
    """The bundle's estimator running the ONNX file `path`: its preprocess and its decoder."""
    return Estimator.from_bundle(bundle.path, device='cpu',
                                 config=EstimatorConfig(onnx=str(path)))


def _dataset_images(folder, count):
    try:
        dataset = BopDataset(folder)
    except Pose6dError as exc:
        raise Pose6dError(f'--calibration {folder}: {exc} (give one split folder, e.g. '
                          f'{Path(folder) / "train"})') from None
    if len(dataset) < count:
        hint = ('pass fewer --calibration-images' if len(dataset) > CHECK_IMAGES else
                f'it needs at least {CHECK_IMAGES + 1}')
        raise Pose6dError(f'--calibration {folder} has {len(dataset)} images; {count} are '
                          f'needed ({count - CHECK_IMAGES} to calibrate, {CHECK_IMAGES} to '
                          f'check): {hint}')
    picks = np.linspace(0, len(dataset) - 1, count).round().astype(int)
    return [dataset[int(i)].load_image() for i in picks], f'{len(dataset)} images of {folder}'


def _rendered_images(bundle, camera, count, seed):
    try:
        frames = render_frames(bundle.objects, camera, count, seed)
    except Exception as exc:  # no meshes in the bundle, or no OpenGL
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise Pose6dError(f"cannot render calibration frames of the bundle's objects "
                          f'({reason}); pass --calibration DIR (a pose6d synth or BOP folder '
                          'of images like the ones the model sees)') from None
    return [image for image, _labels in frames], "rendered views of the bundle's objects"


def _quantize(fp32_path, out_path, frames, folder):
    # deferred: onnx and onnxruntime are the optional `export` extra (onnx_network.py)
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        quantize_static,
        QuantType,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = folder / 'prepared.onnx'
    quant_pre_process(str(fp32_path), str(prepared))

    class Frames(CalibrationDataReader):
        def __init__(self):
            self.remaining = iter(frames)

        def get_next(self):
            frame = next(self.remaining, None)
            return None if frame is None else {INPUT_NAME: frame}

    quantize_static(str(prepared), str(out_path), Frames(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, nodes_to_exclude=_output_layers(prepared),
                    calibration_providers=['CPUExecutionProvider'])


def _output_layers(path):
    """Names of the layers that write the graph's outputs, and the reshapes between: fp32.

    Walks back from each output through shape-only ops (a corners head's per-level
    reshapes, transposes and concatenation; HRPose's split of its last layer) to the
    convolutions that compute the values.
    """
    import onnx  # deferred: the optional `export` extra

    model = onnx.load(str(path), load_external_data=False)
    producers = {name: node for node in model.graph.node for name in node.output}
    excluded, pending = set(), [output.name for output in model.graph.output]
    while pending:
        node = producers.get(pending.pop())
        if node is None or node.name in excluded:
            continue
        if node.op_type in LAYER_OPS:
            excluded.add(node.name)
        elif node.op_type in SHAPE_OPS:
            excluded.add(node.name)
            pending.extend(node.input if node.op_type == 'Concat' else node.input[:1])
    return sorted(excluded)


def _copy_metadata(source, target, calibration, count):
    del target.metadata_props[:]
    for entry in source.metadata_props:
        target.metadata_props.add(key=entry.key, value=entry.value)
    target.metadata_props.add(key='pose6d.precision', value=PRECISION)
    target.metadata_props.add(key='pose6d.calibration', value=f'{count} frames: {calibration}')
    target.producer_name = 'pose6d_ros'


def keypoint_agreement(fp32, int8, frames, min_score=0.3):
    """Keypoints found by both estimators' networks on `frames` and how far apart.

    Distances are in network-input pixels. For each fp32 instance at or above `min_score`, the
    int8 instance of the same class whose keypoints lie closest; a keypoint found by fp32 and
    not there counts as missed.
    """
    shifts, missed = [], 0
    for frame in frames:
        tensor = torch.from_numpy(frame)
        reference, candidates = (estimator.method.decode(estimator.forward(tensor))[0]
                                 for estimator in (fp32, int8))
        for instance in reference:
            if instance.score < min_score:
                continue
            found = np.isfinite(instance.keypoints).all(axis=1)
            best = None
            for other in candidates:
                if other.class_id != instance.class_id:
                    continue
                distance = np.linalg.norm(other.keypoints - instance.keypoints, axis=1)
                both = found & np.isfinite(distance)
                if both.any() and (best is None or np.median(distance[both]) < best[0]):
                    best = (np.median(distance[both]), distance, both)
            if best is None:
                missed += int(found.sum())
                continue
            _, distance, both = best
            shifts.extend(distance[both].tolist())
            missed += int((found & ~both).sum())
    shifts = np.asarray(shifts)
    return {'compared': int(shifts.size), 'missed': missed,
            'median_shift_px': float(np.median(shifts)) if shifts.size else float('nan'),
            'p95_shift_px': float(np.percentile(shifts, 95)) if shifts.size else float('nan')}


def check_problem(agreement, max_keypoint_shift=MAX_KEYPOINT_SHIFT, max_lost=MAX_LOST):
    """Why the int8 network does not pass the agreement check, or None when it does."""
    compared, missed = agreement['compared'], agreement['missed']
    if compared + missed == 0:
        return (f'fp32 finds no object in the {CHECK_IMAGES} check frames, so int8 cannot be '
                'compared with it (an untrained model, or frames without the objects)')
    if missed > max_lost * (compared + missed):
        return (f'int8 loses {missed} of the {compared + missed} keypoints fp32 finds (at most '
                f'{max_lost:.0%} may be lost)')
    if agreement['median_shift_px'] > max_keypoint_shift:
        return (f'keypoints move by {agreement["median_shift_px"]:.2f} px (median, network '
                f'input) against fp32, more than {max_keypoint_shift:g} px')
    return None


def _agreement_line(agreement):
    if not agreement['compared']:
        return ('int8 against fp32: no keypoints found on the check frames to compare '
                f'({agreement["missed"]} found by fp32 only)')
    return (f'int8 against fp32 on {CHECK_IMAGES} check frames: {agreement["compared"]} '
            f'keypoints compared, {agreement["missed"]} missed; shift median '
            f'{agreement["median_shift_px"]:.2f} px, p95 {agreement["p95_shift_px"]:.2f} px '
            '(network input)')


def format_result(result):
    """The lines `pose6d export --format onnx-int8` prints."""
    shift = ('no keypoints to compare' if not result.keypoints_compared else
             f'keypoint shift against fp32 median {result.median_shift_px:.2f} px, p95 '
             f'{result.p95_shift_px:.2f} px (limit {result.max_keypoint_shift:g})')
    return (f'int8 ONNX model: {result.path}\n'
            f'calibrated on {result.calibration_images} frames ({result.calibration}); fp32 '
            f'export parity {result.fp32_parity:.2e}; {shift}; {result.seconds:.1f} s\n'
            f"run it with: --onnx {result.path} (pose6d eval/predict/bench, the node's "
            'onnx_model parameter)')
