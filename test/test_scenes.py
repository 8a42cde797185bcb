"""Scene sampler: viewpoints, distances, placement, labels of hidden and out-of-image objects."""

import numpy as np
import pytest
import trimesh

from pose6d_ros.core.data.render import Lighting, Material, MeshData, Renderer
from pose6d_ros.core.data.scenes import (
    add_object_meshes,
    distance_range,
    Instance,
    LightingConfig,
    render_scene,
    sample_scene,
    Scene,
    SceneConfig,
    Shape,
    silhouette_points,
)
from pose6d_ros.core.errors import ObjectModelError, Pose6dError
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.objects import ObjectSet

CAMERA = CameraModel.from_intrinsics(100.0, 100.0, 47.5, 35.5, 96, 72)


@pytest.fixture(scope='module')
def objects(tmp_path_factory):
    folder = tmp_path_factory.mktemp('meshes')
    entries = []
    # Boxes off the object origin, so the box centre (keypoint 8) is not the origin.
    for object_id, size, offset in ((3, (0.10, 0.07, 0.05), (0.01, 0.0, 0.02)),
                                    (7, (0.05, 0.05, 0.09), (0.0, -0.01, 0.0))):
        mesh = trimesh.creation.box(size)
        mesh.apply_translation(offset)
        mesh.export(folder / f'box{object_id}.ply')
        entries.append(f'  - {{name: box{object_id}, id: {object_id}, mesh: box{object_id}.ply}}')
    (folder / 'objects.yaml').write_text('objects:\n' + '\n'.join(entries) + '\n')
    return ObjectSet.load(folder / 'objects.yaml')


@pytest.fixture(scope='module')
def renderer(objects):
    try:
        r = Renderer(CAMERA.width, CAMERA.height)
    except RuntimeError as exc:
        pytest.skip(f'no OpenGL context on this machine: {exc}')
    add_object_meshes(r, objects)
    yield r
    r.close()


def _camera_in_object_frame(instance):
    return -instance.R.T @ instance.t


def _many_instances(objects, config, count=60):
    instances = []
    for seed in range(count):
        scene = sample_scene(np.random.default_rng(seed), objects, CAMERA, config)
        instances += scene.instances
    return instances


# --- sampling ---------------------------------------------------------------------------------


def test_upper_hemisphere_puts_the_camera_above_the_object_plane(objects):
    config = SceneConfig(view='upper_hemisphere', elevation_deg=(10.0, 60.0), occluders=(0, 0),
                         distractors=(0, 0))
    instances = _many_instances(objects, config)
    assert len(instances) > 60
    for instance in instances:
        centre = objects[instance.class_id].keypoints[8]
        direction = _camera_in_object_frame(instance) - centre
        elevation = np.degrees(np.arcsin(direction[2] / np.linalg.norm(direction)))
        assert 10.0 - 1e-6 <= elevation <= 60.0 + 1e-6
        assert np.allclose(instance.R @ instance.R.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(instance.R) > 0


def test_elevation_sampling_by_angle_sees_the_top_as_often_as_the_sides():
    from pose6d_ros.core.data.scenes import _view_direction

    def share_above_70(sampling):
        config = SceneConfig(view='upper_hemisphere', elevation_deg=(5.0, 85.0),
                             elevation_sampling=sampling)
        rng = np.random.default_rng(0)
        z = np.array([_view_direction(rng, config)[2] for _ in range(4000)])
        assert np.all((z >= np.sin(np.radians(5.0)) - 1e-9) & (z <= np.sin(np.radians(85.0))))
        return np.mean(z > np.sin(np.radians(70.0)))

    # Uniform in angle: 15 of 80 degrees (19%); uniform over the area: 6% of the band.
    assert abs(share_above_70('angle') - 15.0 / 80.0) < 0.03
    assert abs(share_above_70('area') - (np.sin(np.radians(85)) - np.sin(np.radians(70)))
               / (np.sin(np.radians(85)) - np.sin(np.radians(5)))) < 0.02


def test_sphere_views_come_from_below_too(objects):
    config = SceneConfig(occluders=(0, 0), distractors=(0, 0))
    below = [inst for inst in _many_instances(objects, config)
             if (_camera_in_object_frame(inst) - objects[inst.class_id].keypoints[8])[2] < 0]
    assert below


@pytest.mark.parametrize('config', [SceneConfig(object_size=(0.3, 0.6)),
                                    SceneConfig(distance=(0.4, 0.9))])
def test_distances_stay_in_the_configured_range(objects, config):
    for instance in _many_instances(objects, config):
        obj = objects[instance.class_id]
        near, far = distance_range(obj, CAMERA, config)
        distance = np.linalg.norm(instance.R @ obj.keypoints[8] + instance.t)
        assert near - 1e-9 <= distance <= far + 1e-9
        # The object's centre projects inside the image, margin included.
        u, v = CAMERA.project((instance.R @ obj.keypoints[8] + instance.t)[None])[0]
        assert 0.1 * 96 - 0.5 - 1e-6 <= u <= 0.9 * 96 - 0.5 + 1e-6
        assert 0.1 * 72 - 0.5 - 1e-6 <= v <= 0.9 * 72 - 0.5 + 1e-6
    if config.distance is None:  # the size range maps to distances through f and diameter
        obj = objects[0]
        near, far = distance_range(obj, CAMERA, config)
        assert np.isclose(near, 100.0 * obj.diameter / (0.6 * 72))
        assert np.isclose(far, 100.0 * obj.diameter / (0.3 * 72))


def test_sampling_is_deterministic_and_objects_do_not_intersect(objects):
    config = SceneConfig(objects_per_image=(2, 2), instances_per_object=(1, 2),
                         occluders=(1, 2), distractors=(1, 2))
    a = sample_scene(np.random.default_rng(11), objects, CAMERA, config)
    b = sample_scene(np.random.default_rng(11), objects, CAMERA, config)
    assert len(a.instances) == len(b.instances) and len(a.shapes) == len(b.shapes)
    for x, y in zip(a.instances, b.instances):
        assert x.class_id == y.class_id and np.array_equal(x.R, y.R) and np.array_equal(x.t, y.t)
    for x, y in zip(a.shapes, b.shapes):
        assert np.array_equal(x.mesh.vertices, y.mesh.vertices) and np.array_equal(x.t, y.t)
    for seed in range(30):
        scene = sample_scene(np.random.default_rng(seed), objects, CAMERA, config)
        spheres = []
        for inst in scene.instances:
            obj = objects[inst.class_id]
            centre = inst.R @ obj.keypoints[8] + inst.t
            radius = np.linalg.norm(silhouette_points(obj) - obj.keypoints[8], axis=1).max()
            spheres.append((centre, radius))
        for i, (c1, r1) in enumerate(spheres):
            for c2, r2 in spheres[:i]:
                assert np.linalg.norm(c1 - c2) >= r1 + r2 - 1e-9


def test_occluders_lie_between_the_camera_and_an_object(objects):
    config = SceneConfig(occluders=(2, 2), distractors=(0, 0))
    found = 0
    for seed in range(20):
        scene = sample_scene(np.random.default_rng(seed), objects, CAMERA, config)
        far = max(np.linalg.norm(inst.R @ objects[inst.class_id].keypoints[8] + inst.t)
                  for inst in scene.instances)
        for shape in scene.shapes:
            assert shape.role == 'occluder' and shape.kind in ('box', 'sphere', 'cylinder')
            assert np.linalg.norm(shape.t) < far
            found += 1
    assert found > 20


def test_object_ids_choose_objects_and_unknown_ids_are_named(objects):
    config = SceneConfig(object_ids=(7,), objects_per_image=(2, 2))
    for inst in _many_instances(objects, config, count=10):
        assert objects[inst.class_id].object_id == 7
    with pytest.raises(ObjectModelError, match='unknown object id 99; .* ids 3, 7'):
        sample_scene(np.random.default_rng(0), objects, CAMERA, SceneConfig(object_ids=(99,)))


@pytest.mark.parametrize('data, message', [
    ({'view': 'below'}, 'scene.view must be one of sphere, upper_hemisphere'),
    ({'elevation_sampling': 'cosine'}, 'scene.elevation_sampling must be one of area, angle'),
    ({'objects_per_image': [3, 1]}, 'scene.objects_per_image'),
    ({'object_size': [0.0, 0.5]}, 'scene.object_size'),
    ({'occluder': [1, 2]}, 'unknown key.*occluder'),
    ({'negative_share': 1.5}, r'scene.negative_share must lie within \[0.0, 1.0\]'),
    ({'negative_shapes': [-1, 2]}, 'scene.negative_shapes must hold integers >= 0'),
    ({'albedo_contrast': [1.5, 1.0]}, 'scene.albedo_contrast must be .min, max. with min'),
    ({'albedo_saturation': 'more'}, 'scene.albedo_saturation must be a .min, max. pair'),
])
def test_bad_scene_config_is_named(data, message):
    with pytest.raises(Pose6dError, match=message):
        SceneConfig.from_dict(data)


# --- labels -----------------------------------------------------------------------------------


def _scene(objects, instances, shapes=(), config=None):
    points = [silhouette_points(objects[i.class_id]) for i in instances]
    return Scene(list(instances), list(shapes), Lighting(), [objects[i.class_id].object_id
                                                             for i in instances], points,
                 config or SceneConfig())


def _facing(t):
    return Instance(0, np.eye(3), np.asarray(t, dtype=float))


def test_instances_outside_the_image_or_hidden_are_not_labelled(objects, renderer):
    wall = MeshData.from_trimesh(trimesh.creation.box((0.3, 0.3, 0.01)))
    hidden_right = Shape('box', 'occluder', wall, np.eye(3), np.array([0.17, 0.0, 0.25]))
    scene = _scene(objects, [
        _facing([-0.12, 0.0, 0.6]),   # visible, left half of the image
        _facing([3.0, 0.0, 0.6]),     # far outside the image
        _facing([0.12, 0.0, 0.6]),    # right half: behind the wall
        _facing([0.0, 0.0, -0.6]),    # behind the camera
    ], [hidden_right])
    rgb, depth, ids, labels = render_scene(renderer, scene, CAMERA)
    assert [label.instance for label in labels] == [0]
    assert (ids == 4).any() and not (ids == 2).any() and not (ids == 1).any()
    label = labels[0]
    assert label.visible_pixels == label.mask.sum() == (ids == 0).sum()
    assert label.visib_fract == pytest.approx(1.0)
    assert label.object_id == 3 and label.class_id == 0
    ys, xs = np.nonzero(label.mask)
    assert np.array_equal(label.box_visib, [xs.min(), ys.min(), xs.max(), ys.max()])
    # The full box bounds the silhouette (built from the mesh projection, not the mask).
    assert label.box_full[0] <= xs.min() + 0.5 and label.box_full[2] >= xs.max() - 0.5
    assert rgb.shape == (72, 96, 3) and depth.shape == (72, 96)
    assert (depth[label.mask] > 0.5).all()


def test_partly_hidden_and_truncated_instances_report_their_visible_fraction(objects, renderer):
    half_wall = MeshData.from_trimesh(trimesh.creation.box((0.025, 0.2, 0.01)))
    covering = Shape('box', 'occluder', half_wall, np.eye(3), np.array([0.0, 0.0, 0.3]))
    covered = render_scene(renderer, _scene(objects, [_facing([0.0, 0.0, 0.6])],
                                            [covering]), CAMERA)[3]
    assert len(covered) == 1 and 0.2 < covered[0].visib_fract < 0.8
    assert covered[0].full_pixel_count > covered[0].visible_pixels
    # Half of the object beyond the left border: about half visible, as BOP counts it.
    left = (0.0 - CAMERA.cx) / CAMERA.fx * 0.6 - 0.01  # object x-centre is at +0.01
    truncated = render_scene(renderer, _scene(objects, [_facing([left, 0.0, 0.58])]),
                             CAMERA)[3]
    assert len(truncated) == 1 and 0.35 < truncated[0].visib_fract < 0.65
    assert truncated[0].box_full[0] < -5  # the full box leaves the image


def test_thresholds_drop_barely_visible_instances(objects, renderer):
    strict = SceneConfig(min_visible_pixels=10_000)
    labels = render_scene(renderer, _scene(objects, [_facing([0.0, 0.0, 0.6])], config=strict),
                          CAMERA)[3]
    assert labels == []


def test_sampled_scenes_render_with_labels(objects, renderer):
    config = SceneConfig(objects_per_image=(2, 2), occluders=(1, 1), distractors=(1, 1))
    labelled = 0
    for seed in range(5):
        scene = sample_scene(np.random.default_rng(seed), objects, CAMERA, config)
        rgb, _, ids, labels = render_scene(renderer, scene, CAMERA)
        for label in labels:
            assert label.visible_pixels >= config.min_visible_pixels
            assert config.min_visible_fraction <= label.visib_fract <= 1.0
            assert np.array_equal(label.mask, ids == label.instance)
        labelled += len(labels)
        assert (rgb[ids >= 0].sum(axis=1) > 0).any()
    assert labelled >= 5


# --- negatives --------------------------------------------------------------------------------


def test_negative_scenes_hold_no_object_and_come_in_the_configured_share(objects):
    config = SceneConfig(negative_share=0.3, negative_shapes=(2, 4))
    scenes = [sample_scene(np.random.default_rng(seed), objects, CAMERA, config)
              for seed in range(200)]
    negatives = [scene for scene in scenes if not scene.instances]
    assert 0.2 <= len(negatives) / len(scenes) <= 0.4
    for scene in negatives:
        assert scene.object_ids == [] and scene.silhouette_points == []
        assert 1 <= len(scene.shapes) <= 4 and {s.role for s in scene.shapes} == {'distractor'}
    kinds = {shape.kind for scene in negatives for shape in scene.shapes}
    assert kinds == {'box', 'sphere', 'cylinder', 'polyhedron'}  # other shapes than the objects'


def test_without_negatives_the_scenes_and_settings_are_those_of_earlier_versions(objects):
    """A negative_share of 0 draws nothing more from the generator and records no setting.

    So a dataset made before negatives existed is made (and continued) identically.
    """
    plain = sample_scene(np.random.default_rng(5), objects, CAMERA, SceneConfig())
    rng = np.random.default_rng(5)
    again = sample_scene(rng, objects, CAMERA, SceneConfig(negative_share=0.0))
    assert [i.t.tolist() for i in plain.instances] == [i.t.tolist() for i in again.instances]
    state = np.random.default_rng(5)
    sample_scene(state, objects, CAMERA, SceneConfig())
    assert rng.bit_generator.state == state.bit_generator.state
    assert 'negative_share' not in SceneConfig().to_dict()
    with_negatives = SceneConfig(negative_share=0.25).to_dict()
    assert with_negatives['negative_share'] == 0.25
    assert SceneConfig.from_dict(with_negatives) == SceneConfig(negative_share=0.25)


def test_a_negative_scene_renders_shapes_and_no_label(objects, renderer):
    config = SceneConfig(negative_share=1.0, negative_shapes=(3, 3))
    for seed in range(3):
        scene = sample_scene(np.random.default_rng(seed), objects, CAMERA, config)
        rgb, _, ids, labels = render_scene(renderer, scene, CAMERA)
        assert labels == [] and not scene.instances
        assert (ids >= 0).any() and ids.max() < len(scene.shapes)  # only shapes are drawn
        assert (rgb[ids >= 0].sum(axis=1) > 0).any()


# --- lighting and colours ---------------------------------------------------------------------


def test_default_lighting_config_draws_the_lighting_of_earlier_versions():
    """Lighting.random is what scenes drew before LightingConfig.

    The same lights from the same numbers, leaving the generator where it left it.
    """
    for seed in range(20):
        old, new = np.random.default_rng(seed), np.random.default_rng(seed)
        assert LightingConfig().sample(new) == Lighting.random(old)
        assert new.bit_generator.state == old.bit_generator.state


def test_lighting_config_draws_coloured_lights_within_a_tilted_cone():
    config = LightingConfig(lights=(3, 3), kelvin=(2700, 2700), ambient_kelvin=(9000, 9000),
                            fill=(0.2, 0.5), cone_deg=20.0, axis_tilt_deg=(60.0, 60.0))
    axis = np.array([0.0, np.sin(np.radians(60)), np.cos(np.radians(60))])  # from the top
    for seed in range(20):
        lighting = config.sample(np.random.default_rng(seed))
        assert len(lighting.extra_lights) == 2
        directions = [lighting.direction] + [light.direction for light in lighting.extra_lights]
        for direction in directions:
            assert np.degrees(np.arccos(np.clip(np.dot(direction, axis), -1, 1))) <= 20.0 + 1e-6
        assert lighting.color[0] > lighting.color[1] > lighting.color[2]   # warm key light
        assert all(light.color == lighting.color for light in lighting.extra_lights)
        assert lighting.ambient_color[2] > lighting.ambient_color[0]       # cool ambient
        for light in lighting.extra_lights:
            share = light.intensity / lighting.diffuse
            assert 0.2 - 1e-9 <= share <= 0.5 + 1e-9
            assert light.specular == pytest.approx(lighting.specular * share)
    counts = {len(LightingConfig(lights=(1, 3)).sample(np.random.default_rng(s)).extra_lights)
              for s in range(40)}
    assert counts == {0, 1, 2}


@pytest.mark.parametrize('data, message', [
    ({'lights': [1, 4]}, r'lighting.lights must lie within \[1, 3\]'),
    ({'lights': [0, 2]}, 'lighting.lights must hold integers >= 1'),
    ({'kelvin': [500, 3000]}, r'lighting.kelvin must lie within \[1000.0, 40000.0\]'),
    ({'cone_deg': -5}, 'lighting.cone_deg'),
    ({'background_tint': 2}, 'lighting.background_tint'),
    ({'colour': [1, 1]}, 'lighting has unknown key.*colour'),
])
def test_bad_lighting_config_is_named(data, message):
    with pytest.raises(Pose6dError, match=message):
        LightingConfig.from_dict(data)


def test_albedo_changes_are_drawn_per_instance_and_only_when_configured(objects):
    config = SceneConfig(objects_per_image=(2, 2), albedo_contrast=(1.2, 2.0),
                         albedo_saturation=(0.5, 0.9))
    for seed in range(10):
        scene = sample_scene(np.random.default_rng(seed), objects, CAMERA, config)
        assert len(scene.materials) == len(scene.instances)
        for material in scene.materials:
            assert 1.2 <= material.contrast <= 2.0 and 0.5 <= material.saturation <= 0.9
        plain = sample_scene(np.random.default_rng(seed), objects, CAMERA,
                             SceneConfig(objects_per_image=(2, 2)))
        assert plain.materials is None  # drawn after everything else: the same scene
        assert [i.t.tolist() for i in plain.instances] == [i.t.tolist() for i in
                                                           scene.instances]
    assert 'albedo_contrast' not in SceneConfig().to_dict()
    assert SceneConfig.from_dict(config.to_dict()) == config


def test_render_scene_applies_the_materials_to_the_objects(objects, renderer):
    flat = Lighting(ambient=1.0, diffuse=0.0, specular=0.0)
    scene = _scene(objects, [_facing([0.0, 0.0, 0.5])])
    scene.lighting = flat
    mesh = MeshData.from_trimesh(objects[0].load_mesh())
    mesh.colors = np.random.default_rng(0).uniform(0.2, 0.9, (len(mesh.vertices), 3))
    renderer.add_mesh(0, mesh)
    try:
        rgb, _, ids, _ = render_scene(renderer, scene, CAMERA)
        scene.materials = [Material(contrast=0.0)]   # every colour becomes the mean colour
        flattened, _, _, _ = render_scene(renderer, scene, CAMERA)
    finally:
        add_object_meshes(renderer, objects)
    inside = ids == 0
    assert rgb[inside].std(axis=0).min() > 5.0
    assert np.abs(flattened[inside] - 255 * mesh.colors.mean(axis=0)).max() <= 1.0
