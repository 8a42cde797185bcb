"""A bundle's network run by onnxruntime on the CPU, in place of the PyTorch module.

`pose6d export` writes the ONNX file (fp32, or int8 with `--format onnx-int8`); the
estimator runs it when given `EstimatorConfig(onnx=FILE)`. Only the network changes:
letterbox, decoding and PnP are the same code as with PyTorch. On a CPU without a GPU the
int8 file is the fast path (`pose6d bench --onnx FILE` measures it beside the PyTorch
references).

Threads: onnxruntime's own pool runs the network on `threads` CPUs, and its threads sleep
between runs instead of spinning (`session_options`). A spinning pool takes the cores from the
Python and torch code around the network: on a shared 2-core machine the letterbox and the
decoding took 30-60 ms a frame instead of 1-2, and the network itself twice as long. The
estimator runs its own torch stages on one thread for the same reason (estimator.py).

The file must come from the same bundle: its `pose6d.*` metadata (onnx_export.py) is compared with
the bundle's card and the digest of its weights file, and a file from another model (or from
earlier weights of this one) is refused before any frame is run. A relative path that is not
found from the working directory is looked up in the bundle folder, so `model_int8.onnx`
names the bundle's own export.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.nets.corners_anchors import CornersConfig, make_anchors

# The graph's input and the outputs per method (onnx_export.py writes them).
INPUT_NAME = 'image'
OUTPUTS = {'keypoints': ('belief', 'vectors'), 'corners': ('scores', 'boxes', 'corners')}
INSTALL_HINT = 'pip install -e ".[export]"'
# card keys compared with the file's `pose6d.<key>` metadata
CHECKED_KEYS = ('method', 'classes', 'input_size', 'normalisation', 'network')


def require_onnx():
    """(onnx, onnxruntime), or a Pose6dError saying how to install them."""
    try:  # deferred: the optional `export` extra, needed only for ONNX files
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise Pose6dError(f'ONNX export needs the onnx and onnxruntime packages ({exc}); '
                          f'install them with: {INSTALL_HINT}') from None
    return onnx, onnxruntime


class OnnxNetwork:
    """Callable like the PyTorch network: (B, 3, H, W) float tensor -> dict of tensors.

    The outputs are the method's raw tensors (OUTPUTS); the corners network's anchors,
    which are not in the graph, are added from the bundle's network.
    """

    def __init__(self, path, bundle, threads=1):
        _onnx, onnxruntime = require_onnx()
        self.path = resolve_onnx_path(path, bundle.path)
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), session_options(onnxruntime, threads),
                providers=['CPUExecutionProvider'])
        except Exception as exc:  # onnxruntime raises its own types for a bad file
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise Pose6dError(f'{self.path} is not a readable ONNX model ({first_line})') from None
        self.metadata = self.session.get_modelmeta().custom_metadata_map
        check_matches_bundle(self.metadata, bundle, self.path)
        self.precision = self.metadata.get('pose6d.precision', 'float32')
        self.input_name = INPUT_NAME
        self.output_names = tuple(OUTPUTS[bundle.method])
        shape = self.session.get_inputs()[0].shape
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.anchors = None
        if bundle.method == 'corners':  # not in the graph: rebuilt from the config

            width, height = bundle.input_size
            self.anchors = make_anchors(CornersConfig.from_dict(bundle.card['network']),
                                        height, width)

    def __call__(self, tensor):
        images = tensor.detach().cpu().float().contiguous().numpy()
        if self.fixed_batch == 1 and images.shape[0] != 1:  # a batch-1 file: image by image
            parts = [self._run(images[i:i + 1]) for i in range(images.shape[0])]
            arrays = [np.concatenate(columns) for columns in zip(*parts)]
        else:
            arrays = self._run(images)
        outputs = dict(zip(self.output_names, map(_as_pytorch_output, arrays)))
        if self.anchors is not None:
            outputs['anchors'] = self.anchors
        return outputs

    def _run(self, images):
        return self.session.run(list(self.output_names), {self.input_name: images})

    def __repr__(self):
        return f'OnnxNetwork({str(self.path)!r}, {self.precision})'


def session_options(onnxruntime, threads):
    """The onnxruntime options: `threads` CPU threads in one sequential pool that never spins."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # Idle threads sleep at once: spinning ones would take the cores from the letterbox and the
    # decoding between two runs (see the module docstring).
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    options.log_severity_level = 3   # errors only: no optimiser chatter on stderr
    return options


def _as_pytorch_output(array):
    """An output array as a tensor; maps (4-D) channels-last, as the PyTorch network gives them.

    The peak search of the keypoints decoder is about twice as fast on that layout.
    """
    tensor = torch.from_numpy(array)
    return tensor.contiguous(memory_format=torch.channels_last) if tensor.dim() == 4 else tensor


def resolve_onnx_path(path, bundle_path):
    """The ONNX file: `path` as given, else (when relative) inside the bundle folder."""
    path = Path(path)
    if path.is_file():
        return path
    candidates = [path.absolute()]
    if not path.is_absolute() and bundle_path is not None:
        in_bundle = Path(bundle_path) / path
        if in_bundle.is_file():
            return in_bundle
        candidates.append(in_bundle.absolute())
    raise Pose6dError(f'ONNX model not found: {" nor ".join(map(str, candidates))} (write one '
                      'with `pose6d export --model BUNDLE --format onnx-int8`)')


def check_matches_bundle(metadata, bundle, path):
    """Pose6dError unless the ONNX metadata describes the bundle's own network and weights."""
    card = bundle.card
    if metadata.get('pose6d.format') != 'pose6d-onnx/1':
        raise Pose6dError(f'{path} was not written by `pose6d export` (no pose6d metadata); '
                          'export it again from the bundle')
    for key in CHECKED_KEYS:
        try:
            text = metadata[f'pose6d.{key}']
            value = text if key == 'method' else json.loads(text)
        except (KeyError, ValueError):
            raise Pose6dError(f'{path} lacks readable pose6d.{key} metadata; export it again '
                              'from the bundle') from None
        expected = card[key] if key != 'input_size' else list(card[key])
        if _plain(value) != _plain(expected):
            raise Pose6dError(f'{path} is not an export of this bundle: its {key} is '
                              f"{value!r} but the bundle's card has {expected!r}")
    digest = metadata.get('pose6d.weights_sha256')
    if digest != bundle.weights_sha256():
        raise Pose6dError(f'{path} was exported from other weights than {bundle.path}'
                          f'/weights.pt (retrained or replaced since?); export it again: '
                          f'pose6d export --model {bundle.path} --format onnx-int8 --force')


def _plain(value):
    """A value as JSON would give it back (tuples -> lists), for comparison."""
    return json.loads(json.dumps(value))
