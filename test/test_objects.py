"""Object sets from YAML and BOP models_info.json, meshes, and every bad input's message."""

import json
import logging
import re

import numpy as np
import pytest
import trimesh
import yaml

from pose6d_ros.core.errors import ObjectModelError, Pose6dError
from pose6d_ros.core.geometry.objects import load_mesh, ObjectModel, ObjectSet, Symmetries
from pose6d_ros.core.geometry.poses import box_keypoints

# A box in millimetres, off-centre so that every corner has distinct coordinates.
EXTENTS_MM = np.array([80.0, 50.0, 30.0])
OFFSET_MM = np.array([5.0, -10.0, 20.0])
BOX_MIN_M = (OFFSET_MM - EXTENTS_MM / 2) * 1e-3
BOX_MAX_M = (OFFSET_MM + EXTENTS_MM / 2) * 1e-3
DIAGONAL_M = float(np.linalg.norm(EXTENTS_MM)) * 1e-3
# 180 degrees about z through (0, 0, 10 mm)
FLIP_Z_MM = [-1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1, 10, 0, 0, 0, 1]


def box_mesh(extents=EXTENTS_MM, offset=OFFSET_MM):
    mesh = trimesh.creation.box(extents=extents)
    mesh.apply_translation(offset)
    colours = np.tile(np.array([[200, 30, 40, 255]], dtype=np.uint8), (len(mesh.vertices), 1))
    colours[0] = [10, 220, 30, 255]
    mesh.visual.vertex_colors = colours
    return mesh


def write_mesh(path, mesh=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    (mesh if mesh is not None else box_mesh()).export(path)
    return path


def write_yaml(path, objects):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({'objects': objects}, sort_keys=False))
    return path


def plain_entry(name, object_id, **extra):
    """A YAML entry that needs no mesh (keypoints and diameter given)."""
    entry = {'name': name, 'id': object_id, 'diameter': 0.1,
             'keypoints': box_keypoints([-0.01] * 3, [0.01] * 3).tolist()}
    entry.update(extra)
    return entry


@pytest.fixture
def yaml_set_path(tmp_path):
    write_mesh(tmp_path / 'sets' / 'models' / 'box.ply')
    write_mesh(tmp_path / 'sets' / 'models' / 'small.ply', box_mesh([20.0, 20.0, 40.0], [0, 0, 0]))
    return write_yaml(tmp_path / 'sets' / 'objects.yaml', [
        {'name': 'box', 'id': 7, 'mesh': 'models/box.ply', 'scale': 0.001},
        {'name': 'can', 'id': 3, 'mesh': 'models/small.ply', 'scale': 0.001,
         'symmetries_discrete': [[-1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0.002, 0, 0, 0, 1]],
         'symmetries_continuous': [{'axis': [0, 0, 2], 'offset': [0, 0, 0.001]}]},
    ])


# --- YAML object sets -------------------------------------------------------------------------


def test_yaml_set_loads_keypoints_diameter_and_class_ids(yaml_set_path, tmp_path, monkeypatch):
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # mesh paths are relative to the YAML file, not the cwd
    objects = ObjectSet.load(yaml_set_path)
    assert len(objects) == 2 and objects.names == ['box', 'can']
    box = objects.by_name('box')
    assert (box.class_id, box.object_id) == (0, 7)
    assert objects.by_id(3).class_id == 1 and objects[1].name == 'can'
    assert box.mesh_path == yaml_set_path.parent / 'models' / 'box.ply'
    expected = [
        [BOX_MIN_M[0], BOX_MIN_M[1], BOX_MIN_M[2]],
        [BOX_MIN_M[0], BOX_MIN_M[1], BOX_MAX_M[2]],
        [BOX_MIN_M[0], BOX_MAX_M[1], BOX_MIN_M[2]],
        [BOX_MIN_M[0], BOX_MAX_M[1], BOX_MAX_M[2]],
        [BOX_MAX_M[0], BOX_MIN_M[1], BOX_MIN_M[2]],
        [BOX_MAX_M[0], BOX_MIN_M[1], BOX_MAX_M[2]],
        [BOX_MAX_M[0], BOX_MAX_M[1], BOX_MIN_M[2]],
        [BOX_MAX_M[0], BOX_MAX_M[1], BOX_MAX_M[2]],
        OFFSET_MM * 1e-3,
    ]
    assert np.allclose(box.keypoints, expected, atol=1e-9)
    assert box.diameter == pytest.approx(DIAGONAL_M, abs=1e-9)
    assert np.allclose(box.box_size, EXTENTS_MM * 1e-3)
    assert not box.uses_add_s
    can = objects.by_name('can')
    assert can.uses_add_s
    assert can.diameter == pytest.approx(np.linalg.norm([0.02, 0.02, 0.04]), abs=1e-9)
    (axis, offset), = can.symmetries.continuous
    assert np.allclose(axis, [0, 0, 1]) and np.allclose(offset, [0, 0, 0.001])
    assert np.allclose(can.symmetries.discrete[0][:3, 3], [0, 0, 0.002])
    assert np.allclose(box.model_points().min(axis=0), BOX_MIN_M)
    assert len(box.model_points(max_points=3)) == 3


def test_yaml_diameter_overrides_the_mesh(tmp_path):
    write_mesh(tmp_path / 'box.ply')
    path = write_yaml(tmp_path / 'o.yaml', [{'name': 'box', 'id': 1, 'mesh': 'box.ply',
                                             'scale': 0.001, 'diameter': 0.5}])
    obj = ObjectSet.load(path)[0]
    assert obj.diameter == 0.5
    assert np.allclose(obj.keypoints[0], BOX_MIN_M)


def test_yaml_round_trip(yaml_set_path, tmp_path):
    objects = ObjectSet.from_yaml(yaml_set_path)
    out = tmp_path / 'exported' / 'again.yaml'
    out.parent.mkdir()
    objects.to_yaml(out)
    again = ObjectSet.from_yaml(out)
    assert again.names == objects.names
    for a, b in zip(objects, again):
        assert a.object_id == b.object_id and a.class_id == b.class_id
        assert np.allclose(a.keypoints, b.keypoints, atol=1e-9)
        assert a.diameter == pytest.approx(b.diameter, abs=1e-12)
        assert a.scale == b.scale
        assert b.mesh_path.resolve() == a.mesh_path.resolve()
        assert len(a.symmetries.discrete) == len(b.symmetries.discrete)
        for s_a, s_b in zip(a.symmetries.discrete, b.symmetries.discrete):
            assert np.allclose(s_a, s_b)
        assert len(a.symmetries.continuous) == len(b.symmetries.continuous)
        for (axis_a, offset_a), (axis_b, offset_b) in zip(a.symmetries.continuous,
                                                          b.symmetries.continuous):
            assert np.allclose(axis_a, axis_b) and np.allclose(offset_a, offset_b)
        assert np.allclose(b.load_mesh().vertices, a.load_mesh().vertices)
    assert 'models/box.ply' in out.read_text().replace('\\', '/')


# --- BOP models_info.json ---------------------------------------------------------------------


def write_models_info(folder):
    folder.mkdir(parents=True, exist_ok=True)
    box_min_mm = OFFSET_MM - EXTENTS_MM / 2
    info = {
        '1': {'diameter': float(np.linalg.norm(EXTENTS_MM)),
              'min_x': box_min_mm[0], 'min_y': box_min_mm[1], 'min_z': box_min_mm[2],
              'size_x': EXTENTS_MM[0], 'size_y': EXTENTS_MM[1], 'size_z': EXTENTS_MM[2],
              'symmetries_discrete': [FLIP_Z_MM]},
        '2': {'diameter': 120.0, 'min_x': -30.0, 'min_y': -30.0, 'min_z': -50.0,
              'size_x': 60.0, 'size_y': 60.0, 'size_z': 100.0,
              'symmetries_continuous': [{'axis': [0, 0, 1], 'offset': [0, 0, 5]}]},
        '10': {'diameter': 50.0, 'min_x': -10.0, 'min_y': -10.0, 'min_z': -10.0,
               'size_x': 20.0, 'size_y': 20.0, 'size_z': 20.0},
    }
    path = folder / 'models_info.json'
    path.write_text(json.dumps(info))
    write_mesh(folder / 'obj_000001.ply')
    return path


def check_models_info_set(objects, folder):
    assert objects.names == ['obj_000001', 'obj_000002', 'obj_000010']
    assert [o.object_id for o in objects] == [1, 2, 10]
    assert [o.class_id for o in objects] == [0, 1, 2]
    first, second, third = objects
    assert np.allclose(first.keypoints, box_keypoints(BOX_MIN_M, BOX_MAX_M), atol=1e-12)
    assert first.diameter == pytest.approx(DIAGONAL_M, abs=1e-12)
    (S,) = first.symmetries.discrete
    assert np.allclose(S[:3, :3], np.diag([-1.0, -1.0, 1.0]))
    assert np.allclose(S[:3, 3], [0.0, 0.0, 0.01])  # 10 mm -> metres
    (axis, offset), = second.symmetries.continuous
    assert np.allclose(axis, [0, 0, 1]) and np.allclose(offset, [0, 0, 0.005])
    assert second.diameter == pytest.approx(0.12)
    assert np.allclose(second.box_size, [0.06, 0.06, 0.1])
    assert [o.uses_add_s for o in objects] == [True, True, False]
    # the mesh beside the json is found and read in metres; the others have none
    assert first.mesh_path == folder / 'obj_000001.ply'
    assert np.allclose(first.load_mesh().bounds, [BOX_MIN_M, BOX_MAX_M])
    assert second.mesh_path is None and third.mesh_path is None
    with pytest.raises(ObjectModelError, match=r"object 'obj_000002' has no mesh file"):
        second.load_mesh()


def test_models_info_by_json_path(tmp_path):
    path = write_models_info(tmp_path / 'bop')
    check_models_info_set(ObjectSet.load(path), path.parent)


def test_models_info_by_folder(tmp_path):
    path = write_models_info(tmp_path / 'bop')
    check_models_info_set(ObjectSet.load(tmp_path / 'bop'), path.parent)


def test_models_info_by_dataset_folder(tmp_path):
    path = write_models_info(tmp_path / 'lm' / 'models')
    check_models_info_set(ObjectSet.load(tmp_path / 'lm'), path.parent)


def test_models_info_names_and_mesh_only_entries(tmp_path):
    folder = tmp_path / 'bop'
    folder.mkdir()
    (folder / 'models_info.json').write_text(json.dumps({'4': {}}))
    write_mesh(folder / 'obj_000004.ply')
    (obj,) = ObjectSet.from_models_info(folder / 'models_info.json', names={4: 'box'})
    assert obj.name == 'box' and obj.object_id == 4
    assert np.allclose(obj.keypoints, box_keypoints(BOX_MIN_M, BOX_MAX_M), atol=1e-9)
    assert obj.diameter == pytest.approx(DIAGONAL_M, abs=1e-9)


# --- meshes -----------------------------------------------------------------------------------


def test_ply_keeps_vertex_colours_and_scales(tmp_path):
    mesh = box_mesh()
    path = write_mesh(tmp_path / 'box.ply', mesh)
    loaded = load_mesh(path, 0.001)
    assert len(loaded.faces) == 12
    assert np.array_equal(loaded.visual.vertex_colors, mesh.visual.vertex_colors)
    assert np.allclose(loaded.vertices, mesh.vertices * 1e-3)


def test_obj_loads(tmp_path):
    path = write_mesh(tmp_path / 'box.obj')
    loaded = load_mesh(path, 0.001)
    assert len(loaded.faces) == 12
    assert np.allclose(loaded.bounds, [BOX_MIN_M, BOX_MAX_M])
    obj = ObjectModel.from_mesh('box', 1, path, scale=0.001)
    assert obj.diameter == pytest.approx(DIAGONAL_M, abs=1e-9)
    assert obj.load_mesh() is obj.load_mesh()  # cached


# --- bad input --------------------------------------------------------------------------------


def load_single(tmp_path, **entry):
    data = {'name': 'box', 'id': 1}
    data.update(entry)
    return ObjectSet.load(write_yaml(tmp_path / 'objects.yaml', [data]))


def test_missing_mesh_file(tmp_path):
    with pytest.raises(ObjectModelError, match=r'mesh file not found: .*nope\.ply'):
        load_single(tmp_path, mesh='nope.ply')


def test_empty_mesh_file(tmp_path):
    (tmp_path / 'empty.ply').write_bytes(b'')
    with pytest.raises(ObjectModelError, match=r'mesh file .*empty\.ply is empty'):
        load_single(tmp_path, mesh='empty.ply')


def test_point_cloud_is_not_a_mesh(tmp_path):
    cloud = trimesh.PointCloud(np.random.default_rng(0).uniform(-1, 1, (50, 3)))
    cloud.export(tmp_path / 'cloud.ply')
    with pytest.raises(ObjectModelError, match=r'cloud\.ply has no faces \(a point cloud\?\); '
                                               r'expected a triangle mesh'):
        load_single(tmp_path, mesh='cloud.ply')


def test_mesh_without_vertices(tmp_path):
    (tmp_path / 'nothing.ply').write_text(
        'ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n'
        'property float z\nend_header\n')
    with pytest.raises(ObjectModelError, match=r'nothing\.ply has no vertices'):
        load_mesh(tmp_path / 'nothing.ply')


def test_unsupported_mesh_suffix(tmp_path):
    write_mesh(tmp_path / 'box.stl')
    with pytest.raises(ObjectModelError, match=r'box\.stl has an unsupported format; '
                                               r'expected PLY or OBJ'):
        load_single(tmp_path, mesh='box.stl')


@pytest.mark.parametrize('entry, match', [
    (plain_entry('box', 1, colour='red'),
     r'objects\[0\] has unknown key\(s\) colour; expected diameter, id, keypoints, mesh'),
    (plain_entry('box', 1, scale='mm'), r'objects\[0\]\.scale must be a positive number; '
                                        r"got 'mm'"),
    (plain_entry('box', 1, scale=0), r'scale must be a positive number; got 0'),
    (plain_entry('box', 1, scale=True), r'scale must be a positive number; got True'),
    (plain_entry('box', -1), r'objects\[0\]\.id must be a non-negative integer; got -1'),
    (plain_entry('box', '1'), r"id must be a non-negative integer; got '1'"),
    (plain_entry('', 1), r"name must be a non-empty string; got ''"),
    ({'name': 'box'}, r"objects\[0\] needs a 'id'"),
    ({'name': 'box', 'id': 1}, r'needs a "mesh" \(or both "keypoints" and "diameter"\)'),
    (plain_entry('box', 1, keypoints=[[0, 0, 0]] * 8), r'keypoints must have 27 numbers; got 24'),
    (plain_entry('box', 1, diameter=-0.1), r'diameter must be a positive number; got -0.1'),
    (plain_entry('box', 1, symmetries_discrete=[np.diag([2.0, 1, 1, 1]).ravel().tolist()]),
     r'symmetries_discrete\[0\] is not a rigid transform'),
    (plain_entry('box', 1, symmetries_discrete=[np.diag([1.0, 1, -1, 1]).ravel().tolist()]),
     r'symmetries_discrete\[0\] is not a rigid transform \(expected a rotation with det \+1'),
    (plain_entry('box', 1, symmetries_discrete=[[1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 2]]),
     r'symmetries_discrete\[0\] is not a rigid transform .*last row \[0, 0, 0, 1\]\)'),
    (plain_entry('box', 1, symmetries_discrete=[[1, 0, 0]]),
     r'symmetries_discrete\[0\] must have 16 numbers; got 3'),
    (plain_entry('box', 1, symmetries_continuous=[{'axis': [0, 0, 0]}]),
     r'symmetries_continuous\[0\]\.axis is zero'),
    (plain_entry('box', 1, symmetries_continuous=[[0, 0, 1]]),
     r'symmetries_continuous\[0\] must be a mapping with "axis"'),
    ('box', r'objects\[0\] must be a mapping; got str'),
])
def test_bad_yaml_entry(tmp_path, entry, match):
    with pytest.raises(ObjectModelError, match=match):
        ObjectSet.load(write_yaml(tmp_path / 'objects.yaml', [entry]))


def test_duplicate_names_and_ids(tmp_path):
    with pytest.raises(ObjectModelError, match=r"object name 'ape' appears twice; names must "
                                               r'be unique'):
        ObjectSet.load(write_yaml(tmp_path / 'a.yaml',
                                  [plain_entry('ape', 1), plain_entry('ape', 2)]))
    with pytest.raises(ObjectModelError, match=r'object id 5 appears twice; ids must be unique'):
        ObjectSet.load(write_yaml(tmp_path / 'b.yaml',
                                  [plain_entry('ape', 5), plain_entry('duck', 5)]))


def test_unknown_id_and_name_list_the_known_ones(tmp_path):
    objects = ObjectSet.load(write_yaml(tmp_path / 'o.yaml',
                                        [plain_entry('ape', 1), plain_entry('duck', 9)]))
    assert objects.by_id(9).name == 'duck' and objects.by_name('ape').object_id == 1
    with pytest.raises(ObjectModelError, match=r'unknown object id 4; this object set has ids '
                                               r'1, 9$'):
        objects.by_id(4)
    with pytest.raises(ObjectModelError, match=r"unknown object name 'cat'; this object set "
                                               r'has ape, duck$'):
        objects.by_name('cat')


def test_empty_or_malformed_object_files(tmp_path):
    with pytest.raises(ObjectModelError, match=r'the "objects" list is empty'):
        ObjectSet.load(write_yaml(tmp_path / 'empty.yaml', []))
    (tmp_path / 'list.yaml').write_text('- a\n- b\n')
    with pytest.raises(ObjectModelError, match=r'expected a mapping with an "objects" list'):
        ObjectSet.load(tmp_path / 'list.yaml')
    (tmp_path / 'broken.yaml').write_text('objects: [\n')
    with pytest.raises(ObjectModelError, match=r'cannot read object set .*broken\.yaml'):
        ObjectSet.load(tmp_path / 'broken.yaml')
    with pytest.raises(ObjectModelError, match=r'object set file not found: .*missing\.yaml'):
        ObjectSet.load(tmp_path / 'missing.yaml')
    with pytest.raises(ObjectModelError, match=r'holds no models_info\.json'):
        ObjectSet.load(tmp_path)


@pytest.mark.parametrize('info, match', [
    ({}, r'expected a non-empty mapping of object id -> info'),
    ({'ape': {}}, r'object ape: object ids must be integers'),
    ({'1': {'diameter': 0, 'min_x': 0, 'min_y': 0, 'min_z': 0, 'size_x': 1, 'size_y': 1,
            'size_z': 1}}, r'object 1\.diameter must be a positive number; got 0'),
    ({'1': {'symmetries_discrete': [np.diag([1.0, 1.0, 1.0, 2.0]).ravel().tolist()]}},
     r'object 1\.symmetries_discrete\[0\] is not a rigid transform'),
    ({'1': {}}, r'mesh file not found: .*obj_000001\.ply'),
])
def test_bad_models_info(tmp_path, info, match):
    path = tmp_path / 'models_info.json'
    path.write_text(json.dumps(info))
    with pytest.raises(ObjectModelError, match=match):
        ObjectSet.load(path)


def test_symmetries_to_dict_round_trip():
    symmetries = Symmetries.from_dict({'symmetries_discrete': [FLIP_Z_MM],
                                       'symmetries_continuous': [{'axis': [0, 3, 0]}]},
                                      translation_scale=1e-3)
    assert symmetries.is_symmetric and not Symmetries().is_symmetric
    assert len(symmetries.discrete_poses()) == 2
    assert np.allclose(symmetries.discrete_poses()[1].t, [0, 0, 0.01])
    again = Symmetries.from_dict(symmetries.to_dict())
    assert np.allclose(again.discrete[0], symmetries.discrete[0])
    assert np.allclose(again.continuous[0][0], [0, 1, 0])
    assert np.allclose(again.continuous[0][1], [0, 0, 0])


def test_object_model_error_is_a_pose6d_error():
    assert issubclass(ObjectModelError, Pose6dError)


# --- implausible sizes (units) and truncated meshes -------------------------------------------


@pytest.mark.parametrize('entry, match', [
    ({'mesh': 'box_mm.ply'}, r"objects\[0\]: object 'box' has a diameter of 98\.99 m; expected "
                             r'5 mm to 3 m .*add `scale: 0\.001` if the mesh is in millimetres'),
    ({'mesh': 'box_m.ply', 'scale': 0.001},
     r"object 'box' has a diameter of 0\.09899 mm; .*remove `scale: 0\.001` if the mesh is "
     r'already in metres'),
    (plain_entry('box', 1, diameter=102.1), r"object 'box' has a diameter of 102\.1 m; .*give "
                                            r'"diameter" in metres'),
])
def test_implausible_sizes_are_refused_with_the_likely_fix(tmp_path, entry, match):
    write_mesh(tmp_path / 'box_mm.ply', box_mesh(EXTENTS_MM, [0, 0, 0]))
    write_mesh(tmp_path / 'box_m.ply', box_mesh(EXTENTS_MM * 1e-3, [0, 0, 0]))
    data = dict(entry)
    data.pop('name', None), data.pop('id', None)
    with pytest.raises(ObjectModelError, match=match) as error:
        load_single(tmp_path, **data)
    assert '\n' not in str(error.value)


def test_linemod_sizes_pass_and_models_info_in_metres_is_refused(tmp_path):
    # LINEMOD ape (102 mm) and a 300 mm object, in millimetres as BOP writes them.
    info = {str(i): {'diameter': d, 'min_x': -d / 4, 'min_y': -d / 4, 'min_z': -d / 4,
                     'size_x': d / 2, 'size_y': d / 2, 'size_z': d / 2}
            for i, d in ((1, 102.099), (2, 300.0))}
    path = tmp_path / 'models_info.json'
    path.write_text(json.dumps(info))
    assert [o.diameter for o in ObjectSet.load(path)] == pytest.approx([0.102099, 0.3])
    in_metres = {'1': {k: v * 1e-3 for k, v in info['1'].items()}}
    path.write_text(json.dumps(in_metres))
    with pytest.raises(ObjectModelError, match=r"models_info\.json: object 'obj_000001' has a "
                                               r'diameter of 0\.1021 mm; .*hold millimetres'):
        ObjectSet.load(path)


def _truncated_ply(tmp_path, encoding, keep):
    """A coloured box PLY (8 vertices, 12 faces) cut after `keep` bytes of its body.

    For ASCII, `keep` counts lines (a float cuts the next line part-way).
    """
    data = box_mesh().export(file_type='ply', encoding=encoding)
    body = data.index(b'end_header\n') + len(b'end_header\n')
    if encoding == 'ascii':
        lines = data[body:].splitlines(keepends=True)
        whole = int(keep)
        part = lines[whole][:int(len(lines[whole]) * (keep - whole))] if whole < keep else b''
        keep = len(b''.join(lines[:whole])) + len(part)
    path = tmp_path / f'cut_{encoding}.ply'
    path.write_bytes(data[:body + keep])
    return path


@pytest.mark.parametrize('encoding, keep, detail', [
    ('ascii', 2, r'\(20 lines of ASCII data expected, the file holds 2\)'),
    ('ascii', 2.5, r'\(20 lines of ASCII data expected, the file holds 3\)'),
    ('ascii', 15, r'\(20 lines of ASCII data expected, the file holds 15\)'),  # 7 faces of 12
    ('ascii', 19.5, r'\(its last face line is cut short\)'),
    ('binary', 100, r'\(at least 140 bytes of binary data expected, the file holds 100\)'),
    ('binary', 270, r'\(they cannot be read: '),
])
def test_truncated_ply_is_one_clear_line(tmp_path, capfd, encoding, keep, detail):
    path = _truncated_ply(tmp_path, encoding, keep)
    with pytest.raises(ObjectModelError) as error:
        load_mesh(path)
    message = str(error.value)
    assert message.startswith(f'mesh {path} is truncated or corrupt: its header declares 8 '
                              'vertices and 12 faces (')
    assert re.search(detail, message) and '\n' not in message
    assert capfd.readouterr().err == ''  # no stray "unable to convert colors!"


def test_trimesh_warnings_of_a_failed_read_are_not_printed(tmp_path, capfd, monkeypatch):
    path = write_mesh(tmp_path / 'box.ply')

    def failing_load(*args, **kwargs):
        logging.getLogger('trimesh.visual.color').warning('unable to convert colors!')
        raise ValueError('setting an array element with a sequence.')

    monkeypatch.setattr(trimesh, 'load', failing_load)
    with pytest.raises(ObjectModelError, match=r'box\.ply is truncated or corrupt: .*they cannot '
                                               r'be read: setting an array element'):
        load_mesh(path)
    assert capfd.readouterr().err == ''
