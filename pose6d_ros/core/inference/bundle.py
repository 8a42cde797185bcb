"""Model bundles: one directory holding everything needed to rebuild and run a model.

Layout::

    <bundle>/
      card.yaml      method, network config, decoder config, input size, normalisation,
                     classes, training summary, metrics (human-readable, the model card);
                     optionally min_score (the model's default threshold), calibration (raw
                     score -> precision, calibration.py) and false_positives (per set of
                     images without the objects: the share with a detection)
      weights.pt     the network's state_dict (torch.save; loaded with weights_only=True)
      objects.yaml   the object set: names, ids, keypoints, diameters, symmetries, meshes
      meshes/        copies of the meshes (at most 4 MB each), referenced by objects.yaml

`load_bundle(path)` needs nothing else. A bundle is written to a temporary folder beside its
destination and renamed into place, so a crash never leaves half a bundle.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
import hashlib
from pathlib import Path
import shutil
import sys

import torch
import yaml

from pose6d_ros.core.config_fields import load_yaml
from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.files import make_temp_dir, write_atomic
from pose6d_ros.core.geometry.mesh_copy import copy_mesh
from pose6d_ros.core.geometry.objects import ObjectSet
from pose6d_ros.core.inference.score_calibration import ScoreCalibration
from pose6d_ros.core.nets.pretrained import IMAGENET_NORMALISATION  # noqa: F401 (re-exported)
from pose6d_ros.core.nets.registry import build_network, METHODS
from pose6d_ros.core.safe_load import torch_load

BUNDLE_FORMAT = 'pose6d-bundle/1'
CARD = 'card.yaml'
WEIGHTS = 'weights.pt'
OBJECTS = 'objects.yaml'
# The model in models/ that `pose6d demo` and the node use when given none.
DEFAULT_MODEL = 'demo_box_keypoints'


class BundleError(Pose6dError):
    """A model bundle that is missing, corrupt, or does not match itself."""


@dataclass
class Bundle:
    """A loaded bundle: its card, its object set and its weights (on the CPU)."""

    path: Path
    card: dict
    objects: ObjectSet
    state_dict: dict = field(repr=False)

    @property
    def method(self):
        return self.card['method']

    @property
    def input_size(self):
        """(width, height) of the network input."""
        return tuple(self.card['input_size'])

    @property
    def calibration(self):
        """The card's ScoreCalibration (raw score -> precision), None without one."""
        section = self.card.get('calibration')
        return None if section is None else ScoreCalibration.from_dict(section)

    @property
    def min_score(self):
        """The card's default score threshold (`pose6d calibrate-scores`), None without one."""
        value = self.card.get('min_score')
        return None if value is None else float(value)

    def weights_sha256(self):
        """SHA-256 of the weights file: ties an export to these weights."""
        return hashlib.sha256((Path(self.path) / WEIGHTS).read_bytes()).hexdigest()

    def build_network(self):
        """The network with its weights loaded, in eval mode, on the CPU."""
        network = build_network(self.method, self.card['network'])
        try:
            network.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise BundleError(f'bundle {self.path}: weights do not match the network described in '
                              f'{CARD} ({first})') from None
        return network.float().eval()


def save_bundle(path, method, network_config, state_dict, objects, input_size,
                decoder=None, normalisation=None, training=None, metrics=None,
                half_precision=False, copy_meshes=False, force=False):
    """Write a bundle directory atomically; returns its path.

    half_precision stores floating-point weights as float16 (half the size; they are loaded
    back as float32). copy_meshes copies every object's mesh into `meshes/` (a large one as a
    smaller binary PLY, geometry/mesh_copy.py), so the bundle still loads, draws and scores
    wherever it is copied; without it objects.yaml points at the meshes where they are.
    """
    path = Path(path)
    if path.exists() and not force:
        raise BundleError(f'{path} already exists; pass force to overwrite it')
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = make_temp_dir(path.parent, f'.{path.name}.')
    try:
        weights = {k: (v.detach().cpu().half() if half_precision and v.is_floating_point()
                       else v.detach().cpu()) for k, v in state_dict.items()}
        torch.save(weights, staging / WEIGHTS)
        objects = _objects_for_bundle(objects, staging, copy_meshes)
        objects.to_yaml(staging / OBJECTS)
        card = {
            'format': BUNDLE_FORMAT,
            'method': method,
            'classes': objects.names,
            'input_size': [int(input_size[0]), int(input_size[1])],
            'normalisation': normalisation or IMAGENET_NORMALISATION,
            'network': network_config,
            'decoder': decoder or {},
            'weights': WEIGHTS,
            'weights_dtype': 'float16' if half_precision else 'float32',
            'training': training or {},
            'metrics': metrics or {},
        }
        (staging / CARD).write_text(yaml.safe_dump(_plain(card), sort_keys=False))
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def load_bundle(path):
    """Read and check a bundle; raises BundleError naming what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f'model bundle not found: {path} (expected a folder with {CARD}, '
                          f'{WEIGHTS} and {OBJECTS})')
    for name in (CARD, WEIGHTS, OBJECTS):
        if not (path / name).is_file():
            raise BundleError(f'bundle {path} has no {name}; is it a pose6d model bundle?')
    card = load_yaml(path / CARD, 'bundle card', BundleError)
    _check_card(card, path)
    objects = ObjectSet.from_yaml(path / OBJECTS)
    if objects.names != card['classes']:
        raise BundleError(f'bundle {path}: classes in {CARD} ({", ".join(card["classes"])}) do '
                          f'not match {OBJECTS} ({", ".join(objects.names)})')
    try:
        state_dict = torch_load(path / WEIGHTS, WEIGHTS, 'a state dict of tensors',
                                context=f'bundle {path}: ')
    except Pose6dError as exc:
        raise BundleError(str(exc)) from None
    if not isinstance(state_dict, dict):
        raise BundleError(f'bundle {path}: {WEIGHTS} does not hold a state_dict')
    state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    return Bundle(path, card, objects, state_dict)


def _check_card(card, path):
    if not isinstance(card, dict):
        raise BundleError(f'bundle {path}: {CARD} must hold a mapping')
    if card.get('format') != BUNDLE_FORMAT:
        raise BundleError(f'bundle {path}: unsupported format {card.get("format")!r}; '
                          f'expected {BUNDLE_FORMAT!r}')

    if card.get('method') not in METHODS:
        raise BundleError(f'bundle {path}: unknown method {card.get("method")!r}; expected one '
                          f'of {", ".join(METHODS)}')
    size = card.get('input_size')
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(v, int) and v > 0 for v in size)):
        raise BundleError(f'bundle {path}: input_size must be [width, height] in pixels; '
                          f'got {size!r}')
    norm = card.get('normalisation')
    if (not isinstance(norm, dict) or len(norm.get('mean', [])) != 3
            or len(norm.get('std', [])) != 3 or not all(s > 0 for s in norm['std'])):
        raise BundleError(f'bundle {path}: normalisation must have 3 means and 3 positive stds')
    if not isinstance(card.get('classes'), list) or not card['classes']:
        raise BundleError(f'bundle {path}: classes must be a non-empty list of object names')
    if not isinstance(card.get('network'), dict):
        raise BundleError(f'bundle {path}: network must be a mapping (the network config)')
    min_score = card.get('min_score')
    if min_score is not None and (isinstance(min_score, bool)
                                  or not isinstance(min_score, (int, float))
                                  or not 0.0 <= min_score <= 1.0):
        raise BundleError(f'bundle {path}: min_score must be a number in [0, 1] (the default '
                          f'score threshold); got {min_score!r}')
    if card.get('calibration') is not None:
        try:
            ScoreCalibration.from_dict(card['calibration'], f'{CARD} calibration')
        except Pose6dError as exc:
            raise BundleError(f'bundle {path}: {exc}') from None


def update_card(path, updates):
    """Set top-level entries of a bundle's card.yaml ({key: value}; None removes the key).

    Atomically: a reader sees the old card or the new one, never half of it.

    The result must still be a valid card; the rest of the card is kept as it was (in its
    order). Returns the new card.
    """
    path = Path(path)
    card_path = path / CARD
    if not card_path.is_file():
        raise BundleError(f'bundle {path} has no {CARD}; is it a pose6d model bundle?')
    card = load_yaml(card_path, 'bundle card', BundleError)
    _check_card(card, path)
    for key, value in updates.items():
        if value is None:
            card.pop(key, None)
        else:
            card[key] = _plain(value)
    _check_card(card, path)
    write_atomic(card_path, yaml.safe_dump(card, sort_keys=False).encode(), sync=True)
    return card


def _objects_for_bundle(objects, staging, copy_meshes):
    """The object set with mesh paths the bundle can keep (copied, or left where they are)."""
    if not copy_meshes:
        return objects
    (staging / 'meshes').mkdir()
    copies = []
    for obj in objects:
        obj = copy.copy(obj)  # the caller's set keeps its own paths
        if obj.mesh_path is not None and Path(obj.mesh_path).is_file():
            obj.mesh_path, obj.scale, _ = copy_mesh(obj, staging / 'meshes')
        copies.append(obj)
    return ObjectSet(copies)


def _plain(value):
    """YAML-safe copy: tuples -> lists, numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, 'item') and callable(value.item):
        return value.item()
    return value


def default_model():
    """The bundled default (demo) model: models/ of the source tree or of the installed package."""
    candidates = [Path(__file__).resolve().parents[3] / 'models' / DEFAULT_MODEL,
                  Path(sys.prefix) / 'share' / 'pose6d_ros' / 'models' / DEFAULT_MODEL]
    for path in candidates:
        if (path / 'card.yaml').is_file():
            return path
    raise Pose6dError('the bundled demo model was not found (looked in '
                      f'{", ".join(str(p) for p in candidates)}); pass --model BUNDLE')
