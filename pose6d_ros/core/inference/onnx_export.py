"""A bundle's network as an fp32 ONNX file, checked against PyTorch (`pose6d export`).

Only the network is exported; decoding (peaks and vector fields, or anchors + NMS) and PnP
stay in Python. The graph takes one input, `image` (B, 3, H, W) float32, normalised with the
bundle's mean/std and letterboxed to its input size, and returns the method's raw tensors:

- keypoints: `belief` (B, C*9, H/4, W/4), `vectors` (B, C*16, H/4, W/4);
- corners: `scores` (B, A, C+1) logits, `boxes` (B, A, 4) deltas, `corners` (B, A, 16).

The backbone `features` (distillation only) are left out. The corners anchors depend only on
the input size and the network config: `nets.corners.make_anchors(CornersConfig, H, W)`
rebuilds them. The file's metadata (`pose6d.*` keys) carries the card's method, classes,
input size, normalisation, network and decoder config, and the SHA-256 of its weights file
(onnx_network.py refuses a file from other weights). `--format onnx-int8` (quantize.py) starts
from this export.

The export uses the TorchScript-based exporter (`dynamo=False`): it handles both networks and
is several times faster here than the dynamo exporter. onnx and onnxruntime are optional
dependencies (`pip install -e ".[export]"`).
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import os
from pathlib import Path
import time
import warnings

import numpy as np
import torch

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.inference.bundle import load_bundle
from pose6d_ros.core.inference.onnx_network import INPUT_NAME, OUTPUTS, require_onnx

DEFAULT_OPSET = 17
PARITY_TOLERANCE = 1e-3   # max abs difference, fp32


@dataclass
class ExportResult:
    """Where the model went and how closely onnxruntime reproduces PyTorch."""

    path: Path
    max_abs_diff: float
    differences: dict        # output name -> max abs difference
    output_names: tuple
    input_shape: tuple       # the sample input of the parity check
    seconds: float           # export + check
    tolerance: float = PARITY_TOLERANCE


def _export_module():
    class RawOutputs(torch.nn.Module):
        """The network with its output dict flattened to a tuple of the named tensors."""

        def __init__(self, network, names):
            super().__init__()
            self.network = network
            self.names = tuple(names)

        def forward(self, image):
            outputs = self.network(image)
            return tuple(outputs[name] for name in self.names)

    return RawOutputs


def export_onnx(bundle_path, out=None, opset=DEFAULT_OPSET, dynamic_batch=False, force=False,
                tolerance=PARITY_TOLERANCE, log=None):
    """ONNX export + onnxruntime parity check; see `export_model`."""
    start = time.perf_counter()
    bundle = load_bundle(bundle_path)   # a missing or corrupt bundle fails first, clearly
    onnx, onnxruntime = require_onnx()
    if not isinstance(opset, int) or not 7 <= opset <= 25:
        raise Pose6dError(f'--opset must be an ONNX opset between 7 and 25; got {opset!r}')
    out = Path(out) if out is not None else Path(bundle_path) / 'model.onnx'
    if out.exists() and not force:
        raise Pose6dError(f'{out} already exists; pass --force to overwrite it')
    if out.exists() and out.is_dir():
        raise Pose6dError(f'{out} is a folder; expected a file name such as model.onnx')
    names = OUTPUTS[bundle.method]
    network = bundle.build_network()                 # float32, on the CPU
    wrapper = _export_module()(network, names).eval()  # eval: BN statistics, no dropout
    assert not any(m.training for m in wrapper.modules())
    width, height = bundle.input_size
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2 if dynamic_batch else 1, 3, height, width, generator=generator)
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {name: {0: 'batch'} for name in (INPUT_NAME, *names)}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f'.{out.name}.{os.getpid()}.tmp')
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter warns about its own deprecation and about traced
            # shape arithmetic (fixed by the traced input size, which is what we want).
            warnings.simplefilter('ignore')
            with torch.no_grad():
                torch.onnx.export(wrapper, (sample,), str(tmp), dynamo=False,
                                  input_names=[INPUT_NAME], output_names=list(names),
                                  opset_version=opset, dynamic_axes=dynamic_axes,
                                  do_constant_folding=True)
        model = onnx.load(str(tmp))
        _add_metadata(model, bundle, names)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        differences = _parity(onnxruntime, tmp, wrapper, sample, names)
        worst = max(differences.values())
        if log is not None:
            log('parity with PyTorch (max abs difference): ' + ', '.join(
                f'{name} {value:.2e}' for name, value in differences.items()))
        if not worst < tolerance:
            raise Pose6dError(f'ONNX parity check failed: max abs difference {worst:.3e} >= '
                              f'{tolerance:g} ({differences}); {out} was not written')
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(out, float(worst), differences, names, tuple(sample.shape),
                        time.perf_counter() - start, tolerance)


def _parity(onnxruntime, path, wrapper, sample, names):
    """Max abs difference per output between onnxruntime (CPU) and PyTorch on `sample`."""
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    got = session.run(list(names), {INPUT_NAME: sample.numpy()})
    with torch.no_grad():
        expected = wrapper(sample)
    differences = {}
    for name, a, b in zip(names, got, expected):
        b = b.numpy()
        if a.shape != b.shape:
            raise Pose6dError(f'ONNX output {name} has shape {a.shape}; PyTorch gives {b.shape}')
        differences[name] = float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0
    return differences


def _add_metadata(model, bundle, names):
    card = bundle.card
    values = {
        'pose6d.format': 'pose6d-onnx/1',
        'pose6d.method': bundle.method,
        'pose6d.classes': json.dumps(card['classes']),
        'pose6d.input_size': json.dumps(list(bundle.input_size)),
        'pose6d.normalisation': json.dumps(card['normalisation']),
        'pose6d.network': json.dumps(card['network']),
        'pose6d.decoder': json.dumps(card.get('decoder') or {}),
        'pose6d.outputs': json.dumps(list(names)),
        'pose6d.weights_sha256': bundle.weights_sha256(),
    }
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = 'pose6d_ros'
