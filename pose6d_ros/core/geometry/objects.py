"""Known objects: name, ids, mesh, the 9 keypoints, diameter and symmetries, in metres.

An object set is loaded from a YAML file (our format, below) or from a BOP
`models_info.json` (millimetres, converted once here). Class ids are the 0-based position
in the set and are what the networks predict; object ids are the dataset's own ids.

YAML format::

    objects:
      - name: ape
        id: 1                          # dataset object id (BOP obj_id)
        mesh: models/obj_000001.ply    # PLY or OBJ, relative to this file
        scale: 0.001                   # mesh units -> metres (default 1.0)
        diameter: 0.102099             # metres; computed from the mesh when absent
        keypoints: [[x, y, z], ...]    # 9 points, metres; computed from the mesh when absent
        symmetries_discrete: [[16 numbers, row-major 4x4, translation in metres], ...]
        symmetries_continuous: [{axis: [0, 0, 1], offset: [0, 0, 0]}]   # offset in metres
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
import json
import logging
import logging.handlers
import os
from pathlib import Path

import numpy as np
from scipy.spatial.distance import pdist
import trimesh
import yaml

from pose6d_ros.core.config_fields import load_yaml
from pose6d_ros.core.errors import ObjectModelError
from pose6d_ros.core.geometry.ply import check_ply_body, ply_layout, truncated
from pose6d_ros.core.geometry.poses import box_keypoints, NUM_KEYPOINTS, Pose

MESH_SUFFIXES = ('.ply', '.obj')
# Plausible object diameters in metres: outside them the units are almost surely wrong (a mesh
# in millimetres read as metres is 1000 times too large and puts the camera 1000 times away).
MIN_DIAMETER = 0.005
MAX_DIAMETER = 3.0
_YAML_KEYS = {'name', 'id', 'mesh', 'scale', 'diameter', 'keypoints',
              'symmetries_discrete', 'symmetries_continuous'}


@dataclass(frozen=True)
class Symmetries:
    """Symmetry transforms of an object (besides the identity), in metres.

    discrete: 4x4 transforms S with the object looking the same under x -> S x.
    continuous: (axis, offset) pairs: rotation by any angle about `axis` through `offset`.
    """

    discrete: tuple = ()
    continuous: tuple = ()

    @property
    def is_symmetric(self):
        return bool(self.discrete or self.continuous)

    def discrete_poses(self):
        """The identity followed by every discrete symmetry, as Poses."""
        return [Pose.identity()] + [Pose.from_matrix(S) for S in self.discrete]

    def to_dict(self):
        data = {}
        if self.discrete:
            data['symmetries_discrete'] = [np.asarray(S).ravel().tolist() for S in self.discrete]
        if self.continuous:
            data['symmetries_continuous'] = [
                {'axis': np.asarray(a).tolist(), 'offset': np.asarray(o).tolist()}
                for a, o in self.continuous]
        return data

    @classmethod
    def from_dict(cls, data, translation_scale=1.0, where='object'):
        """Read BOP-style `symmetries_discrete` / `symmetries_continuous` entries."""
        discrete = []
        for i, values in enumerate(data.get('symmetries_discrete') or []):
            S = _float_array(values, f'{where}.symmetries_discrete[{i}]', size=16).reshape(4, 4)
            S[:3, 3] *= translation_scale
            if not (Pose.from_matrix(S).is_valid(atol=1e-4)
                    and np.allclose(S[3], [0.0, 0.0, 0.0, 1.0], atol=1e-4)):
                raise ObjectModelError(f'{where}.symmetries_discrete[{i}] is not a rigid '
                                       'transform (expected a rotation with det +1 and last '
                                       'row [0, 0, 0, 1])')
            discrete.append(S)
        continuous = []
        for i, entry in enumerate(data.get('symmetries_continuous') or []):
            if not isinstance(entry, dict) or 'axis' not in entry:
                raise ObjectModelError(f'{where}.symmetries_continuous[{i}] must be a mapping '
                                       'with "axis" (and optional "offset")')
            axis = _float_array(entry['axis'], f'{where}.symmetries_continuous[{i}].axis', size=3)
            if np.linalg.norm(axis) < 1e-9:
                raise ObjectModelError(f'{where}.symmetries_continuous[{i}].axis is zero')
            offset = _float_array(entry.get('offset', [0, 0, 0]),
                                  f'{where}.symmetries_continuous[{i}].offset', size=3)
            continuous.append((axis / np.linalg.norm(axis), offset * translation_scale))
        return cls(tuple(discrete), tuple(continuous))


@dataclass
class ObjectModel:
    """One known rigid object. Geometry is in metres, in the object frame of its mesh."""

    name: str
    object_id: int
    keypoints: np.ndarray            # (9, 3): 8 box corners (geometry.py order) + centre
    diameter: float                  # largest distance between two surface points
    symmetries: Symmetries = field(default_factory=Symmetries)
    mesh_path: Path | None = None
    scale: float = 1.0               # mesh file units -> metres
    class_id: int = 0                # position in its ObjectSet (the network's class index)
    _mesh: object = field(default=None, repr=False, compare=False)

    @classmethod
    def from_mesh(cls, name, object_id, mesh_path, scale=1.0, symmetries=None, class_id=0):
        """Load the mesh and compute the keypoints and diameter from it."""
        obj = cls(name, int(object_id), np.zeros((NUM_KEYPOINTS, 3)), 0.0,
                  symmetries or Symmetries(), Path(mesh_path), float(scale), class_id)
        vertices = np.asarray(obj.load_mesh().vertices)
        obj.keypoints = box_keypoints(vertices.min(axis=0), vertices.max(axis=0))
        obj.diameter = mesh_diameter(obj.load_mesh())
        return obj

    @property
    def box_size(self):
        """Size (x, y, z) of the tight box in metres."""
        return self.keypoints[:8].max(axis=0) - self.keypoints[:8].min(axis=0)

    @property
    def uses_add_s(self):
        """Symmetric objects are scored with ADD-S, the others with ADD."""
        return self.symmetries.is_symmetric

    def load_mesh(self):
        """The mesh as a trimesh.Trimesh in metres (loaded once, then cached)."""
        if self._mesh is None:
            if self.mesh_path is None:
                raise ObjectModelError(f'object {self.name!r} has no mesh file')
            self._mesh = load_mesh(self.mesh_path, self.scale)
        return self._mesh

    def model_points(self, max_points=None, seed=0):
        """Mesh vertices in metres (N, 3), subsampled to at most max_points, for metrics."""
        points = np.asarray(self.load_mesh().vertices, dtype=np.float64)
        if max_points is not None and len(points) > max_points:
            idx = np.random.default_rng(seed).choice(len(points), max_points, replace=False)
            points = points[np.sort(idx)]
        return points

    def to_dict(self, relative_to=None):
        """The YAML mapping of this object (mesh path relative to `relative_to` when given)."""
        data = {'name': self.name, 'id': self.object_id}
        if self.mesh_path is not None:
            mesh = Path(self.mesh_path)
            if relative_to is not None:
                mesh = Path(_relpath(mesh, Path(relative_to)))
            data['mesh'] = mesh.as_posix()
            data['scale'] = self.scale
        data['diameter'] = float(self.diameter)
        data['keypoints'] = np.round(self.keypoints, 9).tolist()
        data.update(self.symmetries.to_dict())
        return data


class ObjectSet:
    """An ordered set of objects; an object's class id is its position."""

    def __init__(self, objects):
        self.objects = list(objects)
        names, ids = set(), set()
        for index, obj in enumerate(self.objects):
            if obj.name in names:
                raise ObjectModelError(f'object name {obj.name!r} appears twice; '
                                       'names must be unique')
            if obj.object_id in ids:
                raise ObjectModelError(f'object id {obj.object_id} appears twice; '
                                       'ids must be unique')
            names.add(obj.name)
            ids.add(obj.object_id)
            obj.class_id = index

    def __len__(self):
        return len(self.objects)

    def __iter__(self):
        return iter(self.objects)

    def __getitem__(self, class_id):
        return self.objects[class_id]

    @property
    def names(self):
        return [obj.name for obj in self.objects]

    def by_name(self, name):
        """The object called `name`; a clear error naming the known ones otherwise."""
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise ObjectModelError(f'unknown object name {name!r}; this object set has '
                               f'{", ".join(self.names) or "no objects"}')

    def by_id(self, object_id):
        """The object with dataset id `object_id`; a clear error naming the known ids otherwise."""
        for obj in self.objects:
            if obj.object_id == int(object_id):
                return obj
        raise ObjectModelError(f'unknown object id {object_id}; this object set has ids '
                               f'{", ".join(str(o.object_id) for o in self.objects) or "none"}')

    # --- files --------------------------------------------------------------------------------

    @classmethod
    def load(cls, path):
        """Load an objects YAML file, a BOP models_info.json, or a folder holding one."""
        path = Path(path)
        if path.is_dir():
            if (path / 'models_info.json').is_file():
                return cls.from_models_info(path / 'models_info.json')
            if (path / 'models' / 'models_info.json').is_file():
                return cls.from_models_info(path / 'models' / 'models_info.json')
            raise ObjectModelError(f'folder {path} holds no models_info.json; expected an objects '
                                   'YAML file or a BOP models folder')
        if not path.is_file():
            raise ObjectModelError(f'object set file not found: {path}')
        if path.suffix == '.json':
            return cls.from_models_info(path)
        return cls.from_yaml(path)

    @classmethod
    def from_yaml(cls, path):
        """Load our objects YAML format (see the module docstring)."""
        path = Path(path)
        data = load_yaml(path, 'object set', ObjectModelError)
        if not isinstance(data, dict) or not isinstance(data.get('objects'), list):
            raise ObjectModelError(f'{path}: expected a mapping with an "objects" list')
        if not data['objects']:
            raise ObjectModelError(f'{path}: the "objects" list is empty')
        return cls([_object_from_entry(entry, f'{path}: objects[{i}]', path.parent)
                    for i, entry in enumerate(data['objects'])])

    @classmethod
    def from_models_info(cls, path, names=None):
        """Load a BOP models_info.json (mm); meshes are `obj_XXXXXX.ply` beside it when present.

        names: optional {object_id: name}; the default name is `obj_XXXXXX`.
        """
        path = Path(path)
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ObjectModelError(f'cannot read {path}: {exc}') from None
        if not isinstance(info, dict) or not info:
            raise ObjectModelError(f'{path}: expected a non-empty mapping of object id -> info')
        names = names or {}
        objects = []
        for key in sorted(info, key=lambda k: int(k) if str(k).isdigit() else -1):
            where = f'{path}: object {key}'
            if not str(key).isdigit():
                raise ObjectModelError(f'{where}: object ids must be integers')
            entry = info[key]
            object_id = int(key)
            mesh_path = path.parent / f'obj_{object_id:06d}.ply'
            symmetries = Symmetries.from_dict(entry, translation_scale=1e-3, where=where)
            name = names.get(object_id, f'obj_{object_id:06d}')
            if {'min_x', 'size_x', 'diameter'} <= set(entry):
                box_min = _float_array([entry[f'min_{a}'] for a in 'xyz'], where, size=3) * 1e-3
                size = _float_array([entry[f'size_{a}'] for a in 'xyz'], where, size=3) * 1e-3
                diameter = _positive(entry['diameter'], f'{where}.diameter') * 1e-3
                objects.append(ObjectModel(
                    name, object_id, box_keypoints(box_min, box_min + size), diameter,
                    symmetries, mesh_path if mesh_path.is_file() else None, 1e-3))
            else:
                objects.append(ObjectModel.from_mesh(name, object_id, mesh_path, 1e-3, symmetries))
            _check_size(objects[-1], path, 'BOP models_info.json and its meshes hold '
                        'millimetres; check that they are in millimetres')
        return cls(objects)

    def to_yaml(self, path):
        """Write the set as our YAML format, mesh paths relative to the file's folder."""
        path = Path(path)
        data = {'objects': [obj.to_dict(relative_to=path.parent) for obj in self.objects]}
        path.write_text(yaml.safe_dump(data, sort_keys=False))


# --- meshes -----------------------------------------------------------------------------------


def load_mesh(path, scale=1.0):
    """Load a PLY/OBJ triangle mesh (vertex colours and textures kept), scaled to metres."""
    path = Path(path)
    if not path.is_file():
        raise ObjectModelError(f'mesh file not found: {path}')
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise ObjectModelError(f'mesh {path} has an unsupported format; expected PLY or OBJ')
    if path.stat().st_size == 0:
        raise ObjectModelError(f'mesh file {path} is empty')
    layout = ply_layout(path) if path.suffix.lower() == '.ply' else None
    if layout is not None:
        check_ply_body(path, layout)
    try:
        with _trimesh_log_held():
            mesh = trimesh.load(path, force='mesh', process=False)
    except Exception as exc:  # trimesh raises many types for a malformed file
        if layout is not None:  # a valid header: the body is what trimesh cannot read
            raise truncated(path, layout, f'they cannot be read: {exc}') from None
        raise ObjectModelError(f'cannot read mesh {path}: {exc}') from None
    no_faces = f'mesh {path} has no faces (a point cloud?); expected a triangle mesh'
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.vertices) == 0:
        if _is_point_cloud(trimesh, path):  # force='mesh' drops a point cloud's vertices
            raise ObjectModelError(no_faces)
        raise ObjectModelError(f'mesh {path} has no vertices; expected a triangle mesh')
    if len(mesh.faces) == 0:
        raise ObjectModelError(no_faces)
    if not np.isfinite(mesh.vertices).all():
        raise ObjectModelError(f'mesh {path} has NaN or infinite vertex coordinates')
    if scale != 1.0:
        mesh.apply_scale(scale)
    return mesh


@contextlib.contextmanager
def _trimesh_log_held():
    """Hold trimesh's log records while it reads a file, and let them out only if it succeeds.

    Before it fails on a corrupt file trimesh logs stray lines ("unable to convert colors!")
    that the one-line error replaces.
    """
    logger = logging.getLogger('trimesh')
    held = logging.handlers.BufferingHandler(capacity=10_000)
    propagate = logger.propagate
    logger.addHandler(held)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(held)
        logger.propagate = propagate
    for record in held.buffer:  # the read succeeded: its warnings are worth seeing
        logger.handle(record)


def _is_point_cloud(trimesh, path):
    try:
        with _trimesh_log_held():
            loaded = trimesh.load(path, process=False)
    except Exception:  # trimesh raises many types for a malformed file
        return False
    return isinstance(loaded, trimesh.PointCloud) and len(loaded.vertices) > 0


def mesh_diameter(mesh):
    """Largest distance between two vertices (computed on the convex hull, so it stays fast)."""
    points = np.asarray(mesh.vertices, dtype=np.float64)
    if len(points) > 64:
        try:
            points = np.asarray(mesh.convex_hull.vertices)
        except Exception:  # degenerate (flat) meshes have no hull; fall back to all vertices
            pass
    return float(pdist(points).max()) if len(points) > 1 else 0.0


# --- helpers ----------------------------------------------------------------------------------


def _object_from_entry(entry, where, base_dir):
    if not isinstance(entry, dict):
        raise ObjectModelError(f'{where} must be a mapping; got {type(entry).__name__}')
    unknown = set(entry) - _YAML_KEYS
    if unknown:
        raise ObjectModelError(f'{where} has unknown key(s) {", ".join(sorted(unknown))}; '
                               f'expected {", ".join(sorted(_YAML_KEYS))}')
    for key in ('name', 'id'):
        if key not in entry:
            raise ObjectModelError(f'{where} needs a {key!r}')
    name = entry['name']
    if not isinstance(name, str) or not name.strip():
        raise ObjectModelError(f'{where}.name must be a non-empty string; got {name!r}')
    if isinstance(entry['id'], bool) or not isinstance(entry['id'], int) or entry['id'] < 0:
        raise ObjectModelError(f'{where}.id must be a non-negative integer; got {entry["id"]!r}')
    scale = _positive(entry.get('scale', 1.0), f'{where}.scale')
    symmetries = Symmetries.from_dict(entry, where=where)
    mesh_path = None
    if entry.get('mesh') is not None:
        mesh_path = Path(entry['mesh'])
        if not mesh_path.is_absolute():
            mesh_path = base_dir / mesh_path
    if 'keypoints' in entry and 'diameter' in entry:
        keypoints = _float_array(entry['keypoints'], f'{where}.keypoints', size=27).reshape(9, 3)
        diameter = _positive(entry['diameter'], f'{where}.diameter')
        obj = ObjectModel(name, entry['id'], keypoints, diameter, symmetries, mesh_path, scale)
    elif mesh_path is None:
        raise ObjectModelError(f'{where} needs a "mesh" (or both "keypoints" and "diameter")')
    else:
        obj = ObjectModel.from_mesh(name, entry['id'], mesh_path, scale, symmetries)
        if 'diameter' in entry:
            obj.diameter = _positive(entry['diameter'], f'{where}.diameter')
    _check_size(obj, where, _yaml_size_fix(obj, 'diameter' in entry))
    return obj


def _check_size(obj, where, fix):
    """Raise ObjectModelError naming the object, its diameter and `fix` if its size is odd."""
    if not MIN_DIAMETER <= obj.diameter <= MAX_DIAMETER:
        raise ObjectModelError(
            f'{where}: object {obj.name!r} has a diameter of {_length(obj.diameter)}; expected '
            f'{_length(MIN_DIAMETER)} to {_length(MAX_DIAMETER)} (geometry is in metres): {fix}')


def _yaml_size_fix(obj, diameter_given):
    """The likely fix of an implausible size read from our YAML format."""
    too_large = obj.diameter > MAX_DIAMETER
    if diameter_given:
        return 'give "diameter" in metres (0.1 for 100 mm)'
    if obj.scale == 1.0:
        if too_large:
            return ('add `scale: 0.001` if the mesh is in millimetres (`scale: 0.01` for '
                    'centimetres)')
        return 'set `scale` (mesh units -> metres) to the units of the mesh'
    if not too_large and abs(obj.scale - 1e-3) < 1e-12:
        return 'remove `scale: 0.001` if the mesh is already in metres'
    return (f'check `scale: {obj.scale:g}` (mesh units -> metres; 0.001 for a mesh in '
            'millimetres, 1 for metres)')


def _length(metres):
    """A length for messages: '102.1 m', '86.6 mm'."""
    if metres >= 1.0:
        return f'{metres:.4g} m'
    return f'{metres * 1000:.4g} mm'


def _float_array(values, where, size=None):
    try:
        array = np.array(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ObjectModelError(f'{where} must be a list of numbers; got {values!r}') from None
    if size is not None and array.size != size:
        raise ObjectModelError(f'{where} must have {size} numbers; got {array.size}')
    if not np.isfinite(array).all():
        raise ObjectModelError(f'{where} contains NaN or infinite values')
    return array


def _positive(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ObjectModelError(f'{where} must be a positive number; got {value!r}')
    return float(value)


def _relpath(path, start):
    try:
        return os.path.relpath(path.resolve(), start.resolve())
    except ValueError:  # another drive on Windows
        return str(path.resolve())
