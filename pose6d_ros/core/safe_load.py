"""Reading torch files that a user may have been handed, without letting them run code.

A `.pt` / `.pth` file is a pickle, and unpickling can call any Python function. Every torch
file the package reads (checkpoints, bundle weights, ImageNet weights) goes through
`torch_load`, which uses torch's weights-only unpickler: tensors, plain containers and
numbers only. A refusal is one `Pose6dError` that names the file and what was expected, and
never suggests the unsafe loader. `.safetensors` files (a format that cannot carry code, as
model hubs ship weights) are read by `read_safetensors`.
"""

from __future__ import annotations

import json
from pathlib import Path
import pickle
import struct
import warnings

import numpy as np
import torch

from pose6d_ros.core.errors import Pose6dError


def torch_load(path, name: str, expected: str, context: str = '', map_location='cpu'):
    """The contents of the torch file `path`, loaded weights-only.

    Messages read `{context}cannot read {name} (...); expected {expected}`: `name` is how the
    file is called ('weights.pt', 'pretrained weights FILE'), `context` what it belongs to.
    """
    path = Path(path)
    if not path.is_file():
        raise Pose6dError(f'{context}{name} not found; expected {expected}')
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not for users
            warnings.simplefilter('ignore')
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # torch cannot always tell corruption from a forbidden object (a protocol-4 pickle
        # fails on its first opcode either way), so one message covers both.
        raise Pose6dError(f'{context}refused {name}: it is not a plain file of tensors (it is '
                          'corrupt, or holds Python objects, which are never loaded as they '
                          f'could run code); expected {expected}') from None
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        if 'weights_only' in reason:  # torch's advice names the unsafe loader
            reason = type(exc).__name__
    raise Pose6dError(f'{context}cannot read {name} ({reason}); expected {expected}')


# safetensors dtype names -> numpy (bfloat16 has no numpy type: read as int16 and reinterpreted)
_SAFETENSORS_DTYPES = {'F64': np.float64, 'F32': np.float32, 'F16': np.float16,
                       'BF16': np.int16, 'I64': np.int64, 'I32': np.int32, 'I16': np.int16,
                       'I8': np.int8, 'U8': np.uint8, 'BOOL': np.bool_}


def read_safetensors(path, name: str, expected: str) -> dict:
    """The tensors of a `.safetensors` file: an 8-byte header length, a JSON header, raw data.

    Written here (the format is a few lines) rather than adding a dependency; a malformed file
    is one Pose6dError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise Pose6dError(f'{name} not found; expected {expected}')
    data = path.read_bytes()
    try:
        (length,) = struct.unpack('<Q', data[:8])
        header = json.loads(data[8:8 + length])
        body = memoryview(data)[8 + length:]
        tensors = {}
        for key, entry in header.items():
            if key == '__metadata__':
                continue
            start, end = entry['data_offsets']
            array = np.frombuffer(body[start:end], dtype=_SAFETENSORS_DTYPES[entry['dtype']])
            tensor = torch.from_numpy(array.copy()).reshape(entry['shape'])
            tensors[key] = tensor.view(torch.bfloat16) if entry['dtype'] == 'BF16' else tensor
    except (struct.error, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise Pose6dError(f'cannot read {name} (not a valid safetensors file: '
                          f'{type(exc).__name__}); expected {expected}') from None
    return tensors
