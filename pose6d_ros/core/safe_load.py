"""Reading torch files that a user may have been handed, without letting them run code.

A `.pt` / `.pth` file is a pickle, and unpickling can call any Python function. Every torch
file the package reads (checkpoints, bundle weights, ImageNet weights) goes through
`torch_load`, which uses torch's weights-only unpickler: tensors, plain containers and
numbers only. A refusal is one `Pose6dError` that names the file and what was expected, and
never suggests the unsafe loader.
"""

from __future__ import annotations

from pathlib import Path
import pickle
import warnings

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
