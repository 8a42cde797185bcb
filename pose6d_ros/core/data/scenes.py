"""Random scenes of known objects for synthetic training images, and their ground truth.

`sample_scene` draws object poses (viewpoint, distance, in-plane rotation, image position),
random occluder and distractor shapes, the lighting (`LightingConfig`: one to three coloured
lights) and optionally each object's colour change, from a numpy Generator only: one seed
gives one scene. `render_scene` renders it and labels the instances that are visible
enough; the others are still rendered (they occlude) but get no label.

A share of scenes (`negative_share`) holds none of the objects: only random shapes (boxes,
ellipsoids, cylinders and irregular convex polyhedra, coloured or textured) at the objects'
distances. Their images carry no ground truth and teach a network that nothing is there.

Poses are T_cam_obj in metres (README conventions); a scene is rendered with an ideal
pinhole camera of the camera's K (no distortion, as `Renderer`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import cv2
import numpy as np
from scipy.spatial import ConvexHull
from scipy.spatial.transform import Rotation

from pose6d_ros.core.config_fields import dataclass_kwargs
from pose6d_ros.core.data.augment import procedural_background
from pose6d_ros.core.data.render import (
    DirectionalLight,
    kelvin_to_rgb,
    Lighting,
    Material,
    MAX_LIGHTS,
    MeshData,
    uv_sphere,
)
from pose6d_ros.core.errors import ObjectModelError, Pose6dError
from pose6d_ros.core.geometry.poses import box_2d, random_rotation

VIEWS = ('sphere', 'upper_hemisphere')
SHAPE_KINDS = ('box', 'sphere', 'cylinder')              # occluders and distractors
NEGATIVE_SHAPE_KINDS = SHAPE_KINDS + ('polyhedron',)    # the shapes of negative scenes
ELEVATION_SAMPLING = ('area', 'angle')


@dataclass
class SceneConfig:
    """How scenes are drawn. Ranges are [min, max], inclusive; sizes are fractions of images.

    Loaded from the `scene:` section of a synth config file (`from_dict`); every field may be
    left out.
    """

    # Different objects of the set in one image (capped at the number of objects).
    objects_per_image: tuple = (1, 3)
    # Copies of each chosen object in the image.
    instances_per_object: tuple = (1, 1)
    # Draw only these object ids (dataset ids, as in the object set); None: all of them.
    object_ids: tuple | None = None
    # Viewpoints: 'sphere' (from any direction) or 'upper_hemisphere' (camera above the
    # object's x-y plane, at an elevation within `elevation_deg`, as in LINEMOD).
    view: str = 'sphere'
    elevation_deg: tuple = (0.0, 90.0)
    # How upper-hemisphere elevations are drawn: 'area' (every patch of the band equally
    # often, so views near the top are rare: above 75 degrees are 3% of a 5-85 band) or
    # 'angle' (every elevation equally often, as a camera looking down at a table sees them).
    elevation_sampling: str = 'area'
    # Size of an object in the image: its diameter spans this fraction of the shorter image
    # side; the distance follows from the focal length (distance = f * diameter / pixels).
    # A range of sizes is the papers' 0.8-1.2 scale jitter, widened to a working range.
    object_size: tuple = (0.15, 0.5)
    # Or the distance of the object's centre from the camera in metres (overrides object_size).
    distance: tuple | None = None
    # Rotation about the viewing ray, degrees (the papers' in-plane rotation jitter).
    inplane_deg: tuple = (-180.0, 180.0)
    # Object centres land at a random pixel at least this fraction of the width (height)
    # away from the left and right (top and bottom) borders.
    centre_margin: float = 0.1
    # Random shapes (boxes, spheres, cylinders; colours or procedural textures) placed between
    # the camera and an object, covering part of it.
    occluders: tuple = (0, 2)
    # Their size, as a fraction of the covered object's size in the image.
    occluder_size: tuple = (0.3, 0.7)
    # Random shapes elsewhere in the scene, at the objects' distances: clutter to ignore.
    distractors: tuple = (0, 3)
    # An instance is labelled when at least this many of its pixels are visible ...
    min_visible_pixels: int = 30
    # ... and at least this fraction of its silhouette (hidden and out-of-image parts count
    # as not visible, as BOP's visib_fract).
    min_visible_fraction: float = 0.1
    # Tries to place an object or shape without intersecting those placed before; it is
    # left out when every try fails.
    placement_tries: int = 20
    # Share of scenes that hold none of the objects (negatives: no ground truth), drawn per
    # image: a background with `negative_shapes` random shapes at the objects' distances, some
    # of them irregular polyhedra (objects of other shapes), so that a network learns that
    # nothing is there. 0 (the default) draws the objects in every scene, as before.
    negative_share: float = 0.0
    # Random shapes in a negative scene (0: the background alone).
    negative_shapes: tuple = (1, 6)
    # A change of each object's mesh colours (render.Material), drawn per instance: contrast
    # about the mesh's mean colour, then saturation, as factors. Real objects often show more
    # texture contrast than their scanned vertex colours. [1, 1] (the defaults) leaves the
    # colours as they are and draws nothing.
    albedo_contrast: tuple = (1.0, 1.0)
    albedo_saturation: tuple = (1.0, 1.0)

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raise Pose6dError naming the first field with an impossible value."""
        _int_range(self.objects_per_image, 'scene.objects_per_image', 1)
        _int_range(self.instances_per_object, 'scene.instances_per_object', 1)
        if self.object_ids is not None:
            if not isinstance(self.object_ids, (list, tuple)) or not self.object_ids or any(
                    isinstance(i, bool) or not isinstance(i, int) for i in self.object_ids):
                raise Pose6dError('scene.object_ids must be a non-empty list of integer object '
                                  f'ids (or null for all); got {self.object_ids!r}')
        if self.view not in VIEWS:
            raise Pose6dError(f'scene.view must be one of {", ".join(VIEWS)}; got {self.view!r}')
        _float_range(self.elevation_deg, 'scene.elevation_deg', -90.0, 90.0)
        if self.elevation_sampling not in ELEVATION_SAMPLING:
            raise Pose6dError('scene.elevation_sampling must be one of '
                              f'{", ".join(ELEVATION_SAMPLING)}; got {self.elevation_sampling!r}')
        _float_range(self.object_size, 'scene.object_size', 1e-3, 10.0)
        if self.distance is not None:
            _float_range(self.distance, 'scene.distance', 1e-3, 1e4)
        _float_range(self.inplane_deg, 'scene.inplane_deg', -360.0, 360.0)
        _float_range((self.centre_margin, self.centre_margin), 'scene.centre_margin', 0.0, 0.49)
        _int_range(self.occluders, 'scene.occluders', 0)
        _float_range(self.occluder_size, 'scene.occluder_size', 0.01, 10.0)
        _int_range(self.distractors, 'scene.distractors', 0)
        _int_range((self.min_visible_pixels, self.min_visible_pixels),
                   'scene.min_visible_pixels', 1)
        _float_range((self.min_visible_fraction, self.min_visible_fraction),
                     'scene.min_visible_fraction', 0.0, 1.0)
        _int_range((self.placement_tries, self.placement_tries), 'scene.placement_tries', 1)
        _float_range((self.negative_share, self.negative_share), 'scene.negative_share', 0.0,
                     1.0)
        _int_range(self.negative_shapes, 'scene.negative_shapes', 0)
        _float_range(self.albedo_contrast, 'scene.albedo_contrast', 0.0, 10.0)
        _float_range(self.albedo_saturation, 'scene.albedo_saturation', 0.0, 10.0)

    @property
    def changes_albedo(self):
        """True when objects' colours are changed (albedo_contrast or _saturation not [1, 1])."""
        return tuple(self.albedo_contrast) != (1.0, 1.0) or tuple(
            self.albedo_saturation) != (1.0, 1.0)

    @classmethod
    def from_dict(cls, data, where='scene'):
        """Build from a mapping (a config file section); unknown keys are an error."""
        return cls(**dataclass_kwargs(cls, data, where, lists_as_tuples=True))

    def to_dict(self):
        """Plain values (lists for ranges), as `from_dict` reads them.

        Without negatives the negative fields are left out, and the albedo fields when they
        change nothing: the settings a synth run records (and a rerun must match to continue
        it) are then those of runs made before these fields existed.
        """
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if not self.negative_share:
            for key in _NEGATIVE_FIELDS:
                values.pop(key)
        if not self.changes_albedo:
            for key in _ALBEDO_FIELDS:
                values.pop(key)
        return values


_NEGATIVE_FIELDS = ('negative_share', 'negative_shapes')
_ALBEDO_FIELDS = ('albedo_contrast', 'albedo_saturation')


@dataclass
class LightingConfig:
    """How the lights of a scene are drawn: the `lighting:` section of a synth config.

    Directions are those in which light travels, in the camera frame (x right, y down,
    z forward). Ranges are [min, max], inclusive. The defaults draw the lighting of earlier
    versions (`Lighting.random`: one white light within 60 degrees of the viewing direction)
    from the same random numbers, so a config without this section makes the same images.
    """

    # Directional lights per scene: a key light and up to two fill lights.
    lights: tuple = (1, 1)
    # Ambient level (light from everywhere) and the key light's diffuse intensity.
    ambient: tuple = (0.2, 0.6)
    diffuse: tuple = (0.3, 0.8)
    # Each fill light's intensity and highlight strength, as a fraction of the key light's.
    fill: tuple = (0.2, 0.6)
    # Highlights: the key light's strength and the Phong exponent (larger: smaller, sharper).
    specular: tuple = (0.0, 0.4)
    shininess: tuple = (5.0, 60.0)
    # Every light travels within `cone_deg` of one axis: the viewing direction (light from
    # about the camera), tilted by `axis_tilt_deg` towards light that comes from the top of
    # the image (ceiling lights over a table the camera looks down at), then turned about the
    # optical axis by `axis_roll_deg` (a camera held at a roll). Drawn once per scene.
    cone_deg: float = 60.0
    axis_tilt_deg: tuple = (0.0, 0.0)
    axis_roll_deg: tuple = (0.0, 0.0)
    # Colour temperature of each light in kelvin (2700: tungsten bulb, 4000: fluorescent tube,
    # 6500: overcast daylight), drawn per light; null: white light.
    kelvin: tuple | None = None
    # Colour temperature of the ambient light; null: white.
    ambient_kelvin: tuple | None = None
    # How far the background takes the colour of the scene's lights (0: not at all, 1: as
    # much as the objects do). A photograph of a table is lit by the lights that light the
    # objects on it; without this, coloured lights tint the objects alone, a cue that does
    # not exist in real photographs. Draws nothing.
    background_tint: float = 0.0

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raise Pose6dError naming the first field with an impossible value."""
        _int_range(self.lights, 'lighting.lights', 1)
        if self.lights[1] > MAX_LIGHTS:
            raise Pose6dError(f'lighting.lights must lie within [1, {MAX_LIGHTS}] (the renderer '
                              f'sums at most {MAX_LIGHTS} lights); got {self.lights!r}')
        _float_range(self.ambient, 'lighting.ambient', 0.0, 2.0)
        _float_range(self.diffuse, 'lighting.diffuse', 0.0, 3.0)
        _float_range(self.fill, 'lighting.fill', 0.0, 2.0)
        _float_range(self.specular, 'lighting.specular', 0.0, 2.0)
        _float_range(self.shininess, 'lighting.shininess', 1.0, 1000.0)
        _float_range((self.cone_deg, self.cone_deg), 'lighting.cone_deg', 0.0, 180.0)
        _float_range(self.axis_tilt_deg, 'lighting.axis_tilt_deg', -180.0, 180.0)
        _float_range(self.axis_roll_deg, 'lighting.axis_roll_deg', -360.0, 360.0)
        for name in ('kelvin', 'ambient_kelvin'):
            if getattr(self, name) is not None:
                _float_range(getattr(self, name), f'lighting.{name}', 1000.0, 40000.0)
        _float_range((self.background_tint, self.background_tint), 'lighting.background_tint',
                     0.0, 1.0)

    def tint_gains(self, lighting):
        """RGB gains (3,) that give a background `background_tint` of the lights' colour."""
        return 1.0 + self.background_tint * (lighting.overall_color() - 1.0)

    @classmethod
    def from_dict(cls, data, where='lighting'):
        """Build from a mapping (a config file section); unknown keys are an error."""
        return cls(**dataclass_kwargs(cls, data, where, lists_as_tuples=True))

    def to_dict(self):
        """Plain values (lists for ranges), as `from_dict` reads them."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def sample(self, rng):
        """A random Lighting; the defaults give Lighting.random's from the same numbers."""
        # Earlier versions' draws first, in their order; each newer one only when configured.
        key = self._cap_direction(rng)
        ambient = float(rng.uniform(*self.ambient))
        diffuse = float(rng.uniform(*self.diffuse))
        specular = float(rng.uniform(*self.specular))
        shininess = float(rng.uniform(*self.shininess))
        axis = None
        if tuple(self.axis_tilt_deg) != (0.0, 0.0) or tuple(self.axis_roll_deg) != (0.0, 0.0):
            tilt, roll = rng.uniform(*self.axis_tilt_deg), rng.uniform(*self.axis_roll_deg)
            # x first: +z tilts towards +y (light travelling down the image); then the roll.
            axis = Rotation.from_euler('xz', [-tilt, roll], degrees=True).as_matrix()
            key = tuple(float(v) for v in axis @ key)
        fills = []
        if tuple(self.lights) != (1, 1):
            for _ in range(_randint(rng, self.lights) - 1):
                direction = self._cap_direction(rng)
                if axis is not None:
                    direction = tuple(float(v) for v in axis @ direction)
                share = float(rng.uniform(*self.fill))
                fills.append(DirectionalLight(direction, diffuse * share, specular * share))
        colour = (1.0, 1.0, 1.0)
        if self.kelvin is not None:
            colour = tuple(kelvin_to_rgb(float(rng.uniform(*self.kelvin))))
            for light in fills:
                light.color = tuple(kelvin_to_rgb(float(rng.uniform(*self.kelvin))))
        ambient_colour = (1.0, 1.0, 1.0)
        if self.ambient_kelvin is not None:
            ambient_colour = tuple(kelvin_to_rgb(float(rng.uniform(*self.ambient_kelvin))))
        return Lighting(ambient=ambient, diffuse=diffuse, specular=specular,
                        shininess=shininess, direction=key, color=colour,
                        ambient_color=ambient_colour, extra_lights=tuple(fills))

    def _cap_direction(self, rng):
        """A direction uniform on the spherical cap within cone_deg of +z (as Lighting.random)."""
        z = rng.uniform(np.cos(np.radians(self.cone_deg)), 1.0)
        phi = rng.uniform(0.0, 2.0 * np.pi)
        s = np.sqrt(1.0 - z * z)
        return (float(s * np.cos(phi)), float(s * np.sin(phi)), float(z))


# --- scenes -----------------------------------------------------------------------------------


class Instance(NamedTuple):
    """One object in a scene: its class id (position in the ObjectSet) and pose T_cam_obj."""

    class_id: int
    R: np.ndarray
    t: np.ndarray


@dataclass
class Shape:
    """A random occluder or distractor: its mesh (metres) and pose T_cam_shape."""

    kind: str           # one of SHAPE_KINDS or NEGATIVE_SHAPE_KINDS
    role: str           # 'occluder' or 'distractor'
    mesh: MeshData
    R: np.ndarray
    t: np.ndarray


@dataclass
class Scene:
    """What `sample_scene` draws: object instances, random shapes and the lighting."""

    instances: list[Instance]
    shapes: list[Shape]
    lighting: Lighting
    object_ids: list[int]             # dataset object id of each instance
    silhouette_points: list           # per instance: object-frame points (N, 3) bounding it
    config: SceneConfig | None = None  # labelling thresholds for render_scene (None: defaults)
    materials: list | None = None     # per instance: its colour change (None: the mesh's own)


@dataclass
class Label:
    """Ground truth of one visible-enough instance (pixels: origin at the top-left centre)."""

    instance: int                # index into scene.instances
    class_id: int
    object_id: int
    R: np.ndarray                # rotation of T_cam_obj
    t: np.ndarray                # translation of T_cam_obj, metres
    mask: np.ndarray             # (H, W) bool: visible pixels
    visible_pixels: int
    full_pixel_count: int        # pixels of the whole silhouette, out-of-image part included
    visib_fract: float           # visible_pixels / full_pixel_count
    box_visib: np.ndarray        # (4,) x_min, y_min, x_max, y_max of the visible pixels
    box_full: np.ndarray         # (4,) the same for the whole projection (may leave the image)


def distance_range(obj, camera, config):
    """(near, far) distance in metres of the object's centre for this camera and config."""
    if config.distance is not None:
        return float(config.distance[0]), float(config.distance[1])
    short_side = min(camera.width, camera.height)
    focal = np.sqrt(camera.fx * camera.fy)
    low, high = config.object_size
    # The diameter spans `size * short_side` pixels at distance f * diameter / pixels.
    return (focal * obj.diameter / (high * short_side),
            focal * obj.diameter / (low * short_side))


def sample_scene(rng, object_set, camera, config=None, lighting=None):
    """Draw a random scene (see SceneConfig); deterministic for a given `rng` state.

    lighting: a LightingConfig (None: its defaults, the lighting of earlier versions).
    """
    config = SceneConfig() if config is None else config
    lighting_config = LightingConfig() if lighting is None else lighting
    candidates = candidate_classes(object_set, config)
    # The draw happens only with negatives configured, so that without them every scene is
    # the one an earlier version drew from the same seed.
    if config.negative_share and rng.random() < config.negative_share:
        return negative_scene(rng, object_set, candidates, camera, config, lighting_config)
    count = min(len(candidates), _randint(rng, config.objects_per_image))
    chosen = rng.choice(candidates, size=count, replace=False)
    instances, object_ids, points, spheres = [], [], [], []
    for class_id in chosen:
        obj = object_set[int(class_id)]
        for _ in range(_randint(rng, config.instances_per_object)):
            placed = _place_object(rng, obj, camera, config, spheres)
            if placed is None:
                continue
            R, t, sphere = placed
            instances.append(Instance(int(class_id), R, t))
            object_ids.append(obj.object_id)
            points.append(silhouette_points(obj))
            spheres.append(sphere)
    lighting = lighting_config.sample(rng)
    shapes = []
    object_spheres = list(spheres)
    for _ in range(_randint(rng, config.occluders)):
        if object_spheres:
            target = object_spheres[int(rng.integers(len(object_spheres)))]
            shape = _occluder(rng, camera, config, target, spheres)
            if shape is not None:
                shapes.append(shape)
    for _ in range(_randint(rng, config.distractors)):
        shape = _distractor(rng, object_set, candidates, camera, config, spheres)
        if shape is not None:
            shapes.append(shape)
    materials = None
    if config.changes_albedo:  # drawn last, and only when configured: earlier scenes stay
        materials = [Material(float(rng.uniform(*config.albedo_contrast)),
                              float(rng.uniform(*config.albedo_saturation)))
                     for _ in instances]
    return Scene(instances, shapes, lighting, object_ids, points, config, materials)


def negative_scene(rng, object_set, candidates, camera, config, lighting=None):
    """A scene without any of the objects: random shapes (`negative_shapes`) and lighting.

    The shapes are sized and placed as distractors (the size of an object of the set, at its
    distances), and drawn from more kinds, irregular convex polyhedra included. lighting: a
    LightingConfig (None: its defaults).
    """
    lighting = (LightingConfig() if lighting is None else lighting).sample(rng)
    shapes, spheres = [], []
    for _ in range(_randint(rng, config.negative_shapes)):
        shape = _distractor(rng, object_set, candidates, camera, config, spheres,
                            kinds=NEGATIVE_SHAPE_KINDS)
        if shape is not None:
            shapes.append(shape)
    return Scene([], shapes, lighting, [], [], config)


def candidate_classes(object_set, config):
    """Class ids the config allows (all, or those of config.object_ids)."""
    if config.object_ids is None:
        return list(range(len(object_set)))
    try:
        return sorted({object_set.by_id(i).class_id for i in config.object_ids})
    except ObjectModelError as exc:
        raise ObjectModelError(f'scene.object_ids: {exc}') from None


def add_object_meshes(renderer, object_set):
    """Upload every object's mesh to `renderer` under its class id (what render_scene uses)."""
    for obj in object_set:
        if obj.mesh_path is None:
            raise ObjectModelError(
                f'object {obj.name!r} (id {obj.object_id}) has no mesh; rendering needs one: '
                f'a "mesh" entry in the objects YAML, or obj_{obj.object_id:06d}.ply beside '
                'models_info.json')
        renderer.add_mesh(obj.class_id, MeshData.from_trimesh(obj.load_mesh()))


def render_scene(renderer, scene, camera):
    """Render a scene; returns (rgb, depth, instance_ids, labels).

    rgb (H, W, 3) uint8 on black, depth (H, W) float32 metres (0: nothing), instance_ids
    (H, W) int32: index into scene.instances for objects, len(instances) + j for shape j, -1
    for background. labels: a Label per instance with at least `min_visible_pixels` visible
    pixels and `min_visible_fraction` of its silhouette visible, in instance order. The
    object meshes must be uploaded (`add_object_meshes`); the shapes are uploaded here.
    Thresholds come from `scene.config` when set, else SceneConfig defaults.
    """
    config = scene.config or SceneConfig()
    items = [(inst.class_id, inst.R, inst.t) for inst in scene.instances]
    for j, shape in enumerate(scene.shapes):
        key = ('shape', j)
        renderer.add_mesh(key, shape.mesh)
        items.append((key, shape.R, shape.t))
    materials = None
    if scene.materials is not None:  # objects first, then the shapes in their own colours
        materials = list(scene.materials) + [None] * len(scene.shapes)
    result = renderer.render(items, camera, scene.lighting, full_counts=True,
                             materials=materials)
    ids = result.instance_ids
    visible_counts = np.bincount(ids.ravel() + 1, minlength=len(items) + 1)[1:]
    labels = []
    for index, inst in enumerate(scene.instances):
        visible = int(visible_counts[index])
        if visible < config.min_visible_pixels:
            continue
        pixels = camera_project(camera, scene.silhouette_points[index], inst.R, inst.t)
        in_image = in_image_fraction(pixels, camera.width, camera.height)
        full = max(visible, int(round(result.full_pixel_counts[index] / max(in_image, 1e-6))))
        fraction = visible / full
        if fraction < config.min_visible_fraction:
            continue
        mask = ids == index
        labels.append(Label(index, inst.class_id, scene.object_ids[index], inst.R, inst.t, mask,
                            visible, full, fraction, mask_box(mask), box_2d(pixels)))
    return result.rgb, result.depth, ids, labels


# --- geometry helpers -------------------------------------------------------------------------


_SILHOUETTE_CACHE = {}


def _silhouette_key(obj):
    return str(obj.mesh_path), obj.scale, obj.object_id


def set_silhouette_points(obj, points):
    """Give `silhouette_points` of an object without loading its mesh (e.g. in a worker)."""
    _SILHOUETTE_CACHE[_silhouette_key(obj)] = np.asarray(points, dtype=np.float64)


def silhouette_points(obj):
    """Object-frame points whose projection bounds the silhouette: the mesh's hull vertices.

    A projected point's pixel is a linear-fractional function of the point, so its extremes
    over the mesh are reached at convex hull vertices: the hull gives the exact silhouette box
    with far fewer points than the mesh.
    """
    key = _silhouette_key(obj)
    points = _SILHOUETTE_CACHE.get(key)
    if points is None:
        if obj.mesh_path is None:
            points = np.asarray(obj.keypoints[:8], dtype=np.float64)
        else:
            mesh = obj.load_mesh()
            try:
                points = np.asarray(mesh.convex_hull.vertices, dtype=np.float64)
            except Exception:  # noqa: BLE001 - flat meshes have no hull: keep every vertex
                points = np.asarray(mesh.vertices, dtype=np.float64)
        _SILHOUETTE_CACHE[key] = points
    return points


def camera_project(camera, points, R, t):
    """Pinhole pixels (N, 2) of object-frame points under T_cam_obj, without distortion."""
    cam = points @ np.asarray(R).T + t
    uv = cam[:, :2] / np.maximum(cam[:, 2:3], 1e-9)
    return uv @ camera.K[:2, :2].T + camera.K[:2, 2]


def in_image_fraction(pixels, width, height):
    """Fraction of the convex hull of `pixels` (N, 2) that lies inside the image."""
    hull = cv2.convexHull(pixels.astype(np.float32))
    area = cv2.contourArea(hull)
    if area <= 1e-9:
        return 1.0
    image = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5],
                      [-0.5, height - 0.5]], np.float32)
    inside, _ = cv2.intersectConvexConvex(hull, image)
    return float(np.clip(inside / area, 0.0, 1.0))


def mask_box(mask):
    """(x_min, y_min, x_max, y_max) of the pixel centres of a bool mask; NaN when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not rows.size:
        return np.full(4, np.nan)
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def look_at_rotation(view_direction, up=(0.0, 0.0, 1.0)):
    """R of T_cam_obj for a camera looking at the object's centre from `view_direction`.

    view_direction: object frame, from the object's centre towards the camera. The object's
    `up` axis points up in the image (as far as it can).
    """
    z = -np.asarray(view_direction, dtype=np.float64)
    z /= np.linalg.norm(z)
    up = np.asarray(up, dtype=np.float64)
    if np.linalg.norm(np.cross(up, z)) < 1e-6:  # looking along `up`: any other up will do
        up = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    y = -(up - np.dot(up, z) * z)  # image y points down: against `up`
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    return np.stack([x, y, z])  # rows: camera axes in the object frame


def ray_alignment(ray):
    """The smallest rotation taking the optical axis (0, 0, 1) onto the unit vector `ray`."""
    axis = np.cross([0.0, 0.0, 1.0], ray)
    sin = np.linalg.norm(axis)
    if sin < 1e-12:
        return np.eye(3)
    angle = np.arctan2(sin, ray[2])
    return Rotation.from_rotvec(axis / sin * angle).as_matrix()


def pixel_ray(camera, u, v):
    """Unit direction (camera frame) of the pinhole ray through pixel (u, v)."""
    y = (v - camera.cy) / camera.fy
    x = (u - camera.cx - camera.K[0, 1] * y) / camera.fx
    ray = np.array([x, y, 1.0])
    return ray / np.linalg.norm(ray)


def _view_direction(rng, config):
    if config.view == 'sphere':
        direction = rng.normal(size=3)
        return direction / np.linalg.norm(direction)
    low, high = np.radians(config.elevation_deg)
    if config.elevation_sampling == 'angle':  # uniform in elevation
        z = np.sin(rng.uniform(low, high))
    else:  # uniform over the area of the band between the two elevations
        z = rng.uniform(np.sin(low), np.sin(high))
    phi = rng.uniform(0.0, 2.0 * np.pi)
    s = np.sqrt(max(0.0, 1.0 - z * z))
    return np.array([s * np.cos(phi), s * np.sin(phi), z])


def _random_pixel(rng, camera, margin):
    u = rng.uniform(margin * camera.width, (1.0 - margin) * camera.width) - 0.5
    v = rng.uniform(margin * camera.height, (1.0 - margin) * camera.height) - 0.5
    return u, v


def _place_object(rng, obj, camera, config, spheres):
    """(R, t, (centre, radius)) of a pose not intersecting `spheres`, or None."""
    near, far = distance_range(obj, camera, config)
    centre_obj = np.asarray(obj.keypoints[8], dtype=np.float64)
    # The sphere about the box centre holding the whole mesh (can exceed diameter / 2).
    radius = float(np.linalg.norm(silhouette_points(obj) - centre_obj, axis=1).max())
    for _ in range(config.placement_tries):
        if config.distance is None:  # uniform in image size, not in distance
            size = rng.uniform(*config.object_size)
            distance = float(np.clip(near * config.object_size[1] / size, near, far))
        else:
            distance = rng.uniform(near, far)
        ray = pixel_ray(camera, *_random_pixel(rng, camera, config.centre_margin))
        view = _view_direction(rng, config)
        inplane = Rotation.from_euler('z', rng.uniform(*config.inplane_deg), degrees=True)
        R = ray_alignment(ray) @ inplane.as_matrix() @ look_at_rotation(view)
        centre = distance * ray
        if _intersects(centre, radius, spheres):
            continue
        return R, centre - R @ centre_obj, (centre, radius)
    return None


def _intersects(centre, radius, spheres):
    return any(np.linalg.norm(centre - c) < radius + r for c, r in spheres)


def _occluder(rng, camera, config, target, spheres):
    """A shape between the camera and the target sphere, covering part of it, or None."""
    target_centre, target_radius = target
    target_distance = float(np.linalg.norm(target_centre))
    focal = np.sqrt(camera.fx * camera.fy)
    target_px_radius = focal * target_radius / target_distance
    target_px = camera_project(camera, np.zeros((1, 3)), np.eye(3), target_centre)[0]
    for _ in range(config.placement_tries):
        # Offset from the target's centre by 30-90% of its image radius: a partial cover.
        angle = rng.uniform(0.0, 2.0 * np.pi)
        offset = rng.uniform(0.3, 0.9) * target_px_radius
        u = target_px[0] + offset * np.cos(angle)
        v = target_px[1] + offset * np.sin(angle)
        distance = rng.uniform(0.4, 0.85) * (target_distance - target_radius)
        radius = rng.uniform(*config.occluder_size) * target_radius * distance / target_distance
        centre = distance * pixel_ray(camera, u, v)
        if distance - radius <= 0.05 * target_distance or _intersects(centre, radius, spheres):
            continue
        spheres.append((centre, radius))
        return _random_shape(rng, 'occluder', radius, centre)
    return None


def _distractor(rng, object_set, candidates, camera, config, spheres, kinds=SHAPE_KINDS):
    """A shape at an object-like size and distance somewhere in the image, or None."""
    obj = object_set[int(candidates[int(rng.integers(len(candidates)))])]
    near, far = distance_range(obj, camera, config)
    for _ in range(config.placement_tries):
        distance = rng.uniform(near, far)
        radius = obj.diameter / 2.0 * rng.uniform(0.3, 1.0)
        centre = distance * pixel_ray(camera, *_random_pixel(rng, camera, 0.0))
        if distance - radius <= 0.05 * near or _intersects(centre, radius, spheres):
            continue
        spheres.append((centre, radius))
        return _random_shape(rng, 'distractor', radius, centre, kinds)
    return None


# --- random shapes ----------------------------------------------------------------------------


def _random_shape(rng, role, radius, centre, kinds=SHAPE_KINDS):
    """A shape of one of `kinds` fitting a sphere of `radius`, coloured or textured."""
    kind = kinds[int(rng.integers(len(kinds)))]
    extents = rng.uniform(0.25, 1.0, 3)
    extents *= radius / np.linalg.norm(extents) if kind != 'sphere' else radius / extents.max()
    if kind == 'box':
        vertices, faces, uvs = _box(extents)
    elif kind == 'polyhedron':
        vertices, faces, uvs = _polyhedron(rng, extents)
    elif kind == 'sphere':
        sphere = uv_sphere(rings=12, segments=24, radius=1.0)
        vertices, faces, uvs = sphere.vertices * extents, sphere.faces, sphere.uvs
    else:
        vertices, faces, uvs = _cylinder(extents[0], extents[2], segments=24)
    if rng.random() < 0.5:
        colour = rng.uniform(0.0, 1.0, 3)
        colours = np.clip(colour + rng.normal(0.0, 0.03, (len(vertices), 3)), 0.0, 1.0)
        mesh = MeshData(vertices, faces, colors=colours)
    else:
        texture = procedural_background(rng, 64, 64)
        mesh = MeshData(vertices, faces, uvs=uvs, texture=texture)
    return Shape(kind, role, mesh, random_rotation(rng), np.asarray(centre, dtype=np.float64))


def _polyhedron(rng, half):
    """An irregular convex polyhedron within half extents `half`: the hull of 8-16 points.

    Each face has its own vertices (flat normals, sharp edges); uvs are the points' spherical
    angles, so a texture wraps it.
    """
    count = int(rng.integers(8, 17))
    directions = rng.normal(size=(count, 3))
    points = directions / np.linalg.norm(directions, axis=1, keepdims=True) * half
    hull = ConvexHull(points)
    faces = hull.simplices.copy()
    centre = points[hull.vertices].mean(axis=0)
    corners = points[faces]                                          # (F, 3, 3)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    inward = np.einsum('ij,ij->i', normals, corners.mean(axis=1) - centre) < 0
    faces[inward] = faces[inward][:, ::-1]                           # counter-clockwise outside
    vertices = points[faces].reshape(-1, 3)
    unit = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    uvs = np.stack([0.5 + np.arctan2(unit[:, 1], unit[:, 0]) / (2 * np.pi),
                    0.5 + np.arcsin(np.clip(unit[:, 2], -1.0, 1.0)) / np.pi], axis=1)
    return vertices, np.arange(len(vertices)).reshape(-1, 3), uvs


def _box(half):
    """A box of half extents `half` with 4 vertices per face (flat normals, per-face uvs)."""
    vertices, faces, uvs = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u_axis, v_axis = [a for a in range(3) if a != axis]
            corners = []
            for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = np.zeros(3)
                p[axis], p[u_axis], p[v_axis] = sign, du, dv
                corners.append(p * half)
            base = len(vertices)
            vertices += corners
            uvs += [(0, 0), (1, 0), (1, 1), (0, 1)]
            faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    return np.array(vertices), np.array(faces), np.array(uvs, dtype=np.float64)


def _cylinder(radius, half_height, segments=24):
    """A closed cylinder along z: side and caps with their own vertices (sharp rims)."""
    phi = np.linspace(0.0, 2.0 * np.pi, segments + 1)
    ring = np.stack([radius * np.cos(phi), radius * np.sin(phi)], axis=1)
    bottom = np.concatenate([ring, np.full((segments + 1, 1), -half_height)], axis=1)
    top = np.concatenate([ring, np.full((segments + 1, 1), half_height)], axis=1)
    vertices = [bottom, top]
    side_uv = np.stack([phi / (2 * np.pi), np.zeros_like(phi)], axis=1)
    uvs = [side_uv, side_uv + [0.0, 1.0]]
    i = np.arange(segments)
    n = segments + 1
    faces = [np.stack([i, i + 1, n + i + 1], 1), np.stack([i, n + i + 1, n + i], 1)]
    offset = 2 * n
    for z, cap in ((-half_height, bottom), (half_height, top)):
        centre = np.array([[0.0, 0.0, z]])
        vertices += [centre, cap]
        uvs += [np.array([[0.5, 0.5]]), 0.5 + 0.5 * ring / max(radius, 1e-12)]
        faces.append(np.stack([np.full(segments, offset), offset + 1 + i, offset + 2 + i], 1))
        offset += 1 + n
    return np.concatenate(vertices), np.concatenate(faces), np.concatenate(uvs)


# --- validation helpers -----------------------------------------------------------------------


def _randint(rng, bounds):
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _pair(value, name):
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise Pose6dError(f'{name} must be a [min, max] pair; got {value!r}') from None
    return lo, hi


def _float_range(value, name, low, high):
    lo, hi = _pair(value, name)
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise Pose6dError(f'{name} must hold numbers; got {value!r}')
        if not low <= v <= high:
            raise Pose6dError(f'{name} must lie within [{low}, {high}]; got {value!r}')
    if lo > hi:
        raise Pose6dError(f'{name} must be [min, max] with min <= max; got {value!r}')


def _int_range(value, name, low):
    lo, hi = _pair(value, name)
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise Pose6dError(f'{name} must hold integers >= {low}; got {value!r}')
    if lo > hi:
        raise Pose6dError(f'{name} must be [min, max] with min <= max; got {value!r}')
