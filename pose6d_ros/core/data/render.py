"""Offscreen OpenGL renderer for synthetic training images: RGB, metric depth and instance ids.

Runs headless: an EGL context (GPU when present, Mesa llvmpipe on a CPU-only machine), else an
OSMesa context (pure software). It renders with OpenGL 3.3 core through `moderngl`.

Camera model: the projection is built from K (fx, fy, cx, cy and skew) with the OpenCV pixel
convention (origin at the centre of the top-left pixel), so a vertex lands exactly where
`CameraModel.project` puts it. Lens distortion is NOT rendered: images are those of the ideal
pinhole camera with the same K; callers render undistorted images (or distort them afterwards).

One pass fills three render targets (multiple render targets): RGBA8 colour, R32F depth z
along the optical axis (metres) and R32F instance id + 1 (floats hold ids exactly). Optional
`full_counts` adds one cheap pass per instance (position-only shader, 1-byte target, no depth
test) to count the pixels each instance would cover if it were alone.

Shading: Phong, per pixel, with up to MAX_LIGHTS coloured directional lights and a coloured
ambient term (`Lighting`; the default is one white light), and an optional per-instance change
of the albedo's contrast and saturation (`Material`). No shadows: augment.Shadows
approximates those on the background.

Install: `pip install moderngl`; a machine without libEGL needs
`apt-get install libegl1 libgl1-mesa-dri` (or `libosmesa6` for the OSMesa fallback).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
import time

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from pose6d_ros.core.geometry.camera import CameraModel

BACKENDS = ('egl', 'osmesa')
INSTALL_HINT = ('install the Python binding with `pip install moderngl`, and the system OpenGL '
                'libraries with `apt-get install libegl1 libgl1-mesa-dri` (EGL, GPU or CPU) '
                'or `apt-get install libosmesa6` (OSMesa, CPU only)')

_GREY = 0.7  # the colour of a mesh without colours or texture
_VERTEX_FORMAT = '3f 3f 3f 2f'  # position, normal, colour, uv: 11 float32 per vertex
_VERTEX_ATTRIBUTES = ('in_position', 'in_normal', 'in_color', 'in_uv')

_VERTEX_SHADER = """
#version 330
uniform mat4 projection;
uniform mat3 rotation;      // R of T_cam_obj
uniform vec3 translation;   // t of T_cam_obj, metres
in vec3 in_position;
in vec3 in_normal;
in vec3 in_color;
in vec2 in_uv;
out vec3 v_position;        // camera frame (x right, y down, z forward)
out vec3 v_normal;
out vec3 v_color;
out vec2 v_uv;
void main() {
    v_position = rotation * in_position + translation;
    v_normal = rotation * in_normal;
    v_color = in_color;
    v_uv = in_uv;
    gl_Position = projection * vec4(v_position, 1.0);
}
"""

# Compiled twice: with LIGHTS 1 for one light, and LIGHTS MAX_LIGHTS. A loop over unused
# lights (or a branch around it) makes a one-light frame about 25% slower on a CPU (llvmpipe).
_FRAGMENT_SHADER = """
#version 330
#define LIGHTS {lights}
uniform float instance_id;
uniform bool use_texture;
uniform sampler2D texture0;
uniform vec3 ambient;                       // ambient level times its colour
uniform vec3 light_directions[LIGHTS];  // direction each light travels, camera frame, unit
uniform vec3 light_diffuse[LIGHTS];     // intensity times colour; 0 for an unused light
uniform vec3 light_specular[LIGHTS];    // specular strength times colour
uniform float shininess;
uniform bool adjust_albedo;     // false: the mesh's own colours, untouched
uniform vec3 albedo_mean;       // the mesh's mean colour: the centre of the contrast change
uniform float albedo_contrast;
uniform float albedo_saturation;
in vec3 v_position;
in vec3 v_normal;
in vec3 v_color;
in vec2 v_uv;
layout(location = 0) out vec4 out_color;
layout(location = 1) out float out_depth;
layout(location = 2) out float out_id;
void main() {
    // uv follows the OBJ convention (v = 0 at the bottom row of the image); the image is
    // uploaded top row first, so flip v.
    vec3 albedo = use_texture ? texture(texture0, vec2(v_uv.x, 1.0 - v_uv.y)).rgb : v_color;
    if (adjust_albedo) {
        albedo = albedo_mean + (albedo - albedo_mean) * albedo_contrast;
        float grey = dot(albedo, vec3(0.299, 0.587, 0.114));
        albedo = clamp(vec3(grey) + (albedo - vec3(grey)) * albedo_saturation, 0.0, 1.0);
    }
    vec3 view = normalize(-v_position);
    // Two-sided lighting: meshes are not always consistently wound, so face the normal to
    // the viewer instead of trusting the winding.
    vec3 normal = normalize(v_normal);
    if (dot(normal, view) < 0.0) normal = -normal;
    vec3 shade = ambient;
    vec3 highlights = vec3(0.0);
    for (int i = 0; i < LIGHTS; ++i) {
        vec3 to_light = -light_directions[i];
        float lambert = max(dot(normal, to_light), 0.0);
        shade += light_diffuse[i] * lambert;
        if (lambert > 0.0) {
            float highlight = pow(max(dot(reflect(light_directions[i], normal), view), 0.0),
                                  shininess);
            highlights += light_specular[i] * highlight;
        }
    }
    vec3 color = albedo * shade + highlights;
    out_color = vec4(clamp(color, 0.0, 1.0), 1.0);
    out_depth = v_position.z;       // both cleared to 0: background
    out_id = instance_id + 1.0;
}
"""


_COUNT_VERTEX_SHADER = """
#version 330
uniform mat4 projection;
uniform mat3 rotation;
uniform vec3 translation;
in vec3 in_position;
void main() {
    gl_Position = projection * vec4(rotation * in_position + translation, 1.0);
}
"""

_COUNT_FRAGMENT_SHADER = """
#version 330
out float out_mask;
void main() {
    out_mask = 1.0;
}
"""


# --- inputs -----------------------------------------------------------------------------------


@dataclass
class MeshData:
    """One object's triangle mesh in the object frame, in METRES, with its appearance.

    Appearance: `texture` (H, W, 3) uint8 sampled at `uvs` (OBJ convention, v = 0 at the
    bottom row of the image) when given, else per-vertex `colors` (float RGB in [0, 1]), else
    grey. `normals` are per-vertex (computed from the faces, area-weighted, when None).
    """

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None
    uvs: np.ndarray | None = None
    texture: np.ndarray | None = None

    def __post_init__(self):
        self.vertices = np.asarray(self.vertices, dtype=np.float64)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise ValueError(f'mesh vertices must be an (N, 3) array; got shape '
                             f'{self.vertices.shape}')
        if not len(self.vertices):
            raise ValueError('mesh has no vertices; expected an (N, 3) array with N > 0')
        if not np.isfinite(self.vertices).all():
            raise ValueError('mesh vertices contain NaN or infinite values')
        faces = np.asarray(self.faces)
        if faces.size == 0:
            raise ValueError('mesh has no faces; expected an (F, 3) array of vertex indices '
                             'with F > 0 (a point cloud cannot be rendered)')
        if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
            raise ValueError(f'mesh faces must be an (F, 3) integer array (triangles); got '
                             f'shape {faces.shape}, dtype {faces.dtype}')
        if faces.min() < 0 or faces.max() >= len(self.vertices):
            raise ValueError(f'mesh faces index vertices {faces.min()}..{faces.max()}, but the '
                             f'mesh has {len(self.vertices)} vertices')
        self.faces = faces.astype(np.int64)
        n = len(self.vertices)
        if self.normals is None:
            self.normals = vertex_normals(self.vertices, self.faces)
        self.normals = _per_vertex(self.normals, n, 3, 'normals').astype(np.float64)
        if self.colors is not None:
            colors = np.asarray(self.colors)
            if np.issubdtype(colors.dtype, np.integer):  # tolerate 0..255 colours
                colors = colors / 255.0
            colors = _per_vertex(colors[..., :3] if colors.ndim == 2 else colors, n, 3, 'colors')
            if colors.min() < 0.0 or colors.max() > 1.0:
                raise ValueError('mesh colors must be floats in [0, 1] (or uint8 0..255); got '
                                 f'values in [{colors.min():g}, {colors.max():g}]')
            self.colors = colors.astype(np.float64)
        if self.texture is not None:
            texture = np.asarray(self.texture)
            if texture.ndim != 3 or texture.shape[2] not in (3, 4) or texture.dtype != np.uint8:
                raise ValueError(f'mesh texture must be an (H, W, 3) uint8 RGB image; got shape '
                                 f'{texture.shape}, dtype {texture.dtype}')
            if self.uvs is None:
                raise ValueError('mesh has a texture but no uvs; expected (N, 2) texture '
                                 'coordinates')
            self.texture = np.ascontiguousarray(texture[:, :, :3])
        if self.uvs is not None:
            self.uvs = _per_vertex(self.uvs, n, 2, 'uvs').astype(np.float64)

    @classmethod
    def from_trimesh(cls, mesh, scale=1.0):
        """Convert a `trimesh.Trimesh` (or a Scene, concatenated); `scale` converts to metres.

        Keeps a texture image with its uvs (textured OBJ/PLY; needs Pillow to load the image),
        else vertex colours (e.g. LINEMOD PLY in millimetres: `scale=0.001`), else face
        colours (flat-shaded), else grey.
        """
        if not hasattr(mesh, 'faces') and hasattr(mesh, 'geometry'):  # trimesh.Scene
            mesh = mesh.to_mesh() if hasattr(mesh, 'to_mesh') else mesh.dump(concatenate=True)
        vertices = np.asarray(mesh.vertices, dtype=np.float64) * float(scale)
        faces = np.asarray(mesh.faces, dtype=np.int64)
        if not len(vertices) or not len(faces):
            raise ValueError(f'mesh has {len(vertices)} vertices and {len(faces)} faces; '
                             'expected a triangle mesh with both')
        visual = mesh.visual
        kind = getattr(visual, 'kind', None)
        if kind == 'texture':
            image = _material_image(getattr(visual, 'material', None))
            if visual.uv is not None and image is not None:
                return cls(vertices, faces, normals=mesh.vertex_normals, uvs=visual.uv,
                           texture=image)
            visual = visual.to_color()  # material colour only
            kind = 'vertex'
        if kind == 'face':
            # Distinct colours per face need their own vertices: split the corners.
            corners = faces.reshape(-1)
            return cls(vertices[corners], np.arange(len(corners)).reshape(-1, 3),
                       normals=np.repeat(mesh.face_normals, 3, axis=0),
                       colors=np.repeat(np.asarray(visual.face_colors)[:, :3], 3, axis=0))
        colors = None
        if kind == 'vertex':
            colors = np.asarray(visual.vertex_colors)[:, :3]
        return cls(vertices, faces, normals=mesh.vertex_normals, colors=colors)

    def vertex_buffer(self):
        """Interleaved float32 vertex data (N, 11): position, normal, colour, uv."""
        n = len(self.vertices)
        colors = self.colors if self.colors is not None else np.full((n, 3), _GREY)
        uvs = self.uvs if self.uvs is not None else np.zeros((n, 2))
        return np.concatenate([self.vertices, self.normals, colors, uvs], axis=1).astype('f4')

    def mean_color(self):
        """The mean albedo (3,) in [0, 1]: of the texture's pixels, else of the vertices."""
        if self.texture is not None:
            return self.texture.reshape(-1, 3).mean(axis=0) / 255.0
        if self.colors is not None:
            return self.colors.mean(axis=0)
        return np.full(3, _GREY)

    def bounding_sphere(self):
        """(radius, centre (3,)): a sphere about the bounding-box centre holding every vertex."""
        centre = (self.vertices.min(axis=0) + self.vertices.max(axis=0)) / 2
        return float(np.linalg.norm(self.vertices - centre, axis=1).max()), centre


MAX_LIGHTS = 3  # directional lights the shader sums: a key light and up to two more


@dataclass
class DirectionalLight:
    """A light beside Lighting's key light: parallel rays of one colour, in the camera frame."""

    direction: tuple = (0.0, 0.0, 1.0)  # the direction the light travels (as Lighting's)
    intensity: float = 0.3              # its diffuse intensity (as Lighting.diffuse)
    specular: float = 0.0               # its highlight strength (as Lighting.specular)
    color: tuple = (1.0, 1.0, 1.0)      # RGB gains (kelvin_to_rgb: luminance 1)


@dataclass
class Lighting:
    """Phong lighting in the camera frame: a key light, up to two more and ambient; no shadows.

    `direction` is the direction the key light travels in the camera frame (x right, y down,
    z forward): the default (0, 0, 1) is a headlight shining from the camera into the scene.
    Colours are RGB gains that multiply the intensities (white: (1, 1, 1), today's default);
    `extra_lights` holds at most MAX_LIGHTS - 1 DirectionalLight.
    """

    ambient: float = 0.4
    diffuse: float = 0.6
    specular: float = 0.2
    shininess: float = 20.0
    direction: tuple = (0.0, 0.0, 1.0)
    color: tuple = (1.0, 1.0, 1.0)          # of the key light
    ambient_color: tuple = (1.0, 1.0, 1.0)
    extra_lights: tuple = ()

    @classmethod
    def random(cls, rng: np.random.Generator) -> 'Lighting':
        """Random plausible lighting: light from within 60 degrees of the viewing direction."""
        cos_max = np.cos(np.radians(60.0))
        z = rng.uniform(cos_max, 1.0)  # uniform on the spherical cap around +z
        phi = rng.uniform(0.0, 2.0 * np.pi)
        s = np.sqrt(1.0 - z * z)
        return cls(ambient=float(rng.uniform(0.2, 0.6)), diffuse=float(rng.uniform(0.3, 0.8)),
                   specular=float(rng.uniform(0.0, 0.4)), shininess=float(rng.uniform(5, 60)),
                   direction=(float(s * np.cos(phi)), float(s * np.sin(phi)), float(z)))

    def unit_direction(self):
        """The key light's direction of travel as a unit vector (3,)."""
        return _unit(self.direction, 'lighting direction')

    def shader_lights(self):
        """(directions, diffuse, specular), each (MAX_LIGHTS, 3) float32; unused lights are 0.

        Row 0 is the key light (diffuse * color, specular * color), then `extra_lights`.
        """
        if len(self.extra_lights) > MAX_LIGHTS - 1:
            raise ValueError(f'lighting has {len(self.extra_lights)} extra lights; the renderer '
                             f'sums at most {MAX_LIGHTS} lights (a key light and '
                             f'{MAX_LIGHTS - 1} more)')
        directions = np.zeros((MAX_LIGHTS, 3), np.float32)
        # Unused lights shine towards the camera: they light no surface the camera sees, so
        # the shader skips their highlight (the costly part) as well as adding 0.
        directions[:, 2] = -1.0
        diffuse = np.zeros((MAX_LIGHTS, 3), np.float32)
        specular = np.zeros((MAX_LIGHTS, 3), np.float32)
        colour = _colour(self.color, 'lighting color')
        directions[0] = self.unit_direction()
        diffuse[0] = float(self.diffuse) * colour
        specular[0] = float(self.specular) * colour
        for index, light in enumerate(self.extra_lights, start=1):
            colour = _colour(light.color, f'extra light {index} color')
            directions[index] = _unit(light.direction, f'extra light {index} direction')
            diffuse[index] = float(light.intensity) * colour
            specular[index] = float(light.specular) * colour
        return directions, diffuse, specular

    def ambient_rgb(self):
        """The ambient light (3,): level times colour."""
        return float(self.ambient) * _colour(self.ambient_color, 'lighting ambient_color')

    def overall_color(self):
        """The colour (3,) of all the light together, of Rec. 709 luminance 1.

        Ambient and every light at its intensity; white for white lights.
        """
        _, diffuse, _ = self.shader_lights()
        total = self.ambient_rgb() + diffuse.sum(axis=0)
        luminance = float(total @ _LUMINANCE)
        return total / luminance if luminance > 0.0 else np.ones(3)


@dataclass
class Material:
    """A change of one instance's colours (its albedo), before lighting.

    Real objects often show more (or less) contrast and saturation than their mesh colours.
    The colours are stretched by `contrast` about the mesh's mean colour, then their
    saturation is scaled by `saturation`; (1, 1) leaves them untouched.
    """

    contrast: float = 1.0
    saturation: float = 1.0

    @property
    def is_identity(self):
        """True when the material changes nothing."""
        return self.contrast == 1.0 and self.saturation == 1.0


def kelvin_to_rgb(kelvin):
    """RGB gains (3,) of black-body light at `kelvin` (1000-40000 K), of luminance 1.

    Tanner Helland's fit of the black-body colours as an sRGB camera renders them: 6500 K is
    about white, 2700 K (a tungsten bulb) orange, 10000 K (blue sky) blue. Normalised to
    Rec. 709 luminance 1, so a light's intensity keeps its brightness whatever its colour.
    """
    if isinstance(kelvin, bool) or not isinstance(kelvin, (int, float)) or not (
            1000.0 <= kelvin <= 40000.0):
        raise ValueError(f'colour temperature must be a number of kelvin in [1000, 40000]; got '
                         f'{kelvin!r}')
    t = kelvin / 100.0
    if t <= 66.0:
        red = 255.0
        green = 99.4708025861 * np.log(t) - 161.1195681661
    else:
        red = 329.698727446 * (t - 60.0) ** -0.1332047592
        green = 288.1221695283 * (t - 60.0) ** -0.0755148492
    if t >= 66.0:
        blue = 255.0
    elif t <= 19.0:
        blue = 0.0
    else:
        blue = 138.5177312231 * np.log(t - 10.0) - 305.0447927307
    rgb = np.clip([red, green, blue], 0.0, 255.0) / 255.0
    return rgb / float(rgb @ _LUMINANCE)


_LUMINANCE = np.array([0.2126, 0.7152, 0.0722])  # Rec. 709


def _unit(vector, name):
    d = np.asarray(vector, dtype=np.float64).reshape(-1)
    norm = np.linalg.norm(d) if d.shape == (3,) else np.nan
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError(f'{name} must be a non-zero 3-vector; got {vector}')
    return d / norm


def _colour(value, name):
    c = np.asarray(value, dtype=np.float64).reshape(-1)
    if c.shape != (3,) or not np.isfinite(c).all() or (c < 0).any():
        raise ValueError(f'{name} must be 3 non-negative RGB gains; got {value}')
    return c


@dataclass
class RenderResult:
    """What one `Renderer.render` call returns (all arrays are fresh and writable)."""

    rgb: np.ndarray                       # (H, W, 3) uint8 RGB, background black (or given)
    depth: np.ndarray                     # (H, W) float32 z in metres, 0 where no object
    instance_ids: np.ndarray              # (H, W) int32 index into `instances`, -1 background
    full_pixel_counts: np.ndarray | None  # (num_instances,) pixels of each instance alone

    def mask(self, index):
        """Visible mask of instance `index`: (H, W) bool."""
        return self.instance_ids == index


# --- renderer ---------------------------------------------------------------------------------


class Renderer:
    """Offscreen renderer of many instances of uploaded meshes with a pinhole camera.

    Upload meshes once with `add_mesh(key, mesh)`, then call `render` many times. Not
    thread-safe; use one renderer per process (or thread). Close it (or use `with`) to free
    the GL context.
    """

    def __init__(self, width: int, height: int, backend: str = 'auto'):
        if backend not in ('auto',) + BACKENDS:
            raise ValueError(f'renderer backend must be one of auto, {", ".join(BACKENDS)}; '
                             f'got {backend!r}')
        self.ctx, self.backend = _create_context(BACKENDS if backend == 'auto' else (backend,))
        self._meshes = {}
        self._fbo = self._count_fbo = None
        self._attachments = []
        self.width = self.height = 0
        # One program per number of lights it sums (1 or MAX_LIGHTS; see _FRAGMENT_SHADER).
        self._programs = {
            lights: self.ctx.program(vertex_shader=_VERTEX_SHADER,
                                     fragment_shader=_FRAGMENT_SHADER.replace(
                                         '{lights}', str(lights)))
            for lights in (1, MAX_LIGHTS)}
        self._count_program = self.ctx.program(vertex_shader=_COUNT_VERTEX_SHADER,
                                               fragment_shader=_COUNT_FRAGMENT_SHADER)
        for program in self._programs.values():
            program['texture0'].value = 0
        self._resize(int(width), int(height))

    @property
    def gl_renderer(self):
        """The OpenGL renderer string, e.g. 'llvmpipe (LLVM 15...)' or the GPU's name."""
        with self._active():
            return self.ctx.info['GL_RENDERER']

    def add_mesh(self, key, mesh: MeshData) -> None:
        """Upload a mesh under `key` (any hashable); replaces a mesh already under that key."""
        if not isinstance(mesh, MeshData):
            raise TypeError(f'add_mesh expects a MeshData; got {type(mesh).__name__} (use '
                            'MeshData.from_trimesh for a trimesh mesh)')
        with self._active():
            ctx = self.ctx
            self._release_mesh(key)
            vbo = ctx.buffer(mesh.vertex_buffer().tobytes())
            ibo = ctx.buffer(mesh.faces.astype('u4').tobytes())
            vaos = {lights: ctx.vertex_array(program,
                                             [(vbo, _VERTEX_FORMAT, *_VERTEX_ATTRIBUTES)],
                                             index_buffer=ibo, index_element_size=4)
                    for lights, program in self._programs.items()}
            # The counting pass reads positions only: skip normal, colour and uv (8 floats).
            count_vao = ctx.vertex_array(self._count_program, [(vbo, '3f 32x', 'in_position')],
                                         index_buffer=ibo, index_element_size=4)
            texture = None
            if mesh.texture is not None:
                image = mesh.texture
                texture = ctx.texture((image.shape[1], image.shape[0]), 3, image.tobytes(),
                                      alignment=1)
                texture.build_mipmaps()  # avoid aliasing of detailed textures seen from afar
                texture.repeat_x = texture.repeat_y = True
            radius, centre = mesh.bounding_sphere()
            self._meshes[key] = _GpuMesh(vbo, ibo, vaos, count_vao, texture, radius, centre,
                                         mesh.mean_color())

    def render(self, instances, camera: CameraModel, lighting: Lighting | None = None,
               full_counts: bool = False, background_rgb=None,
               materials=None) -> RenderResult:
        """Render instances [(key, R (3, 3), t (3,) metres), ...] (poses T_cam_obj).

        Renders at camera.width x camera.height (the framebuffer is resized when needed),
        without lens distortion. `background_rgb` is None (black), an RGB triple (0..255) or
        an (H, W, 3) uint8 image placed behind the objects. `materials`: None, or one
        Material (or None: unchanged) per instance.
        """
        if not isinstance(camera, CameraModel):
            raise TypeError(f'render expects a CameraModel; got {type(camera).__name__}')
        lighting = Lighting() if lighting is None else lighting
        poses = [self._checked_instance(i, instance) for i, instance in enumerate(instances)]
        materials = [None] * len(poses) if materials is None else list(materials)
        if len(materials) != len(poses) or not all(
                m is None or isinstance(m, Material) for m in materials):
            raise ValueError(f'materials must hold one Material (or None) per instance: '
                             f'{len(poses)}; got {len(materials)} entries')
        lights = lighting.shader_lights()
        with self._active():
            return self._render(poses, camera, lighting, lights, materials, full_counts,
                                background_rgb)

    def _render(self, poses, camera, lighting, lights, materials, full_counts, background_rgb):
        if (camera.width, camera.height) != (self.width, self.height):
            self._resize(camera.width, camera.height)
        near, far = self._depth_range(poses)
        projection = projection_matrix(camera.K, camera.width, camera.height, near, far)

        lights_used = MAX_LIGHTS if lighting.extra_lights else 1
        ctx, program = self.ctx, self._programs[lights_used]
        self._fbo.use()
        self._fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ctx.enable(ctx.DEPTH_TEST)
        program['projection'].write(projection.T.astype('f4').tobytes())  # column-major
        program['ambient'].value = tuple(lighting.ambient_rgb())
        for name, values in zip(('light_directions', 'light_diffuse', 'light_specular'), lights):
            program[name].write(values[:lights_used].tobytes())
        program['shininess'].value = max(float(lighting.shininess), 1e-3)
        for index, ((mesh, R, t), material) in enumerate(zip(poses, materials)):
            program['rotation'].write(R.T.astype('f4').tobytes())
            program['translation'].value = tuple(t)
            program['instance_id'].value = float(index)
            adjust = material is not None and not material.is_identity
            program['adjust_albedo'].value = adjust
            if adjust:
                program['albedo_mean'].value = tuple(mesh.mean_color)
                program['albedo_contrast'].value = float(material.contrast)
                program['albedo_saturation'].value = float(material.saturation)
            program['use_texture'].value = mesh.texture is not None
            if mesh.texture is not None:
                mesh.texture.use(0)
            mesh.vaos[lights_used].render()

        # The projection maps image row v to framebuffer row v, and glReadPixels returns
        # rows bottom-up, i.e. in image order: no flip needed. Each target is read whole in
        # its own format (the fast path); RGBA -> RGB is one cv2 call (numpy slicing is slow).
        h, w = camera.height, camera.width
        rgb = cv2.cvtColor(self._read(0, (h, w, 4), np.uint8), cv2.COLOR_RGBA2RGB)
        depth = self._read(1, (h, w), np.float32)
        instance_ids = self._read(2, (h, w), np.float32).astype(np.int32)
        instance_ids -= 1
        if background_rgb is not None:
            _composite_background(rgb, instance_ids < 0, background_rgb)
        counts = self._full_counts(poses, projection) if full_counts else None
        return RenderResult(rgb, depth, instance_ids, counts)

    def close(self):
        """Free every GL object and the context; the renderer cannot be used afterwards."""
        if self.ctx is None:
            return
        with self._active():
            for key in list(self._meshes):
                self._release_mesh(key)
            for obj in [self._fbo, self._count_fbo, *self._attachments,
                        *self._programs.values(), self._count_program]:
                if obj is not None:
                    obj.release()
        self.ctx.release()
        self.ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- internals ----------------------------------------------------------------------------

    def _active(self):
        """The GL context, for `with`: makes it current, so several renderers can coexist."""
        if self.ctx is None:
            raise RuntimeError('this Renderer is closed; create a new one')
        return self.ctx

    def _checked_instance(self, index, instance):
        try:
            key, R, t = instance
        except (TypeError, ValueError):
            raise ValueError(f'instance {index} must be a (key, R, t) tuple; got '
                             f'{instance!r}') from None
        if key not in self._meshes:
            known = ', '.join(map(repr, self._meshes)) or 'none'
            raise KeyError(f'instance {index}: no mesh was added under key {key!r} (known keys: '
                           f'{known}); call Renderer.add_mesh first')
        R = np.asarray(R, dtype=np.float64)
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        if R.shape != (3, 3) or t.shape != (3,) or not (np.isfinite(R).all()
                                                        and np.isfinite(t).all()):
            raise ValueError(f'instance {index} ({key!r}): R must be a finite 3x3 rotation and '
                             f't a finite 3-vector in metres; got shapes {R.shape}, {t.shape}')
        return self._meshes[key], R, t

    def _depth_range(self, poses):
        """Near and far planes that enclose every instance's bounding sphere."""
        if not poses:
            return 0.01, 10.0
        z = np.array([(R @ mesh.centre + t)[2] for mesh, R, t in poses])
        radius = np.array([mesh.radius for mesh, _, _ in poses])
        far = max(float(np.max(z + radius)), 1e-3) * 1.01 + 1e-4
        # A tight near plane keeps depth-buffer precision; parts closer than it (or behind
        # the camera) are clipped, as a real camera would not see them either.
        near = max(float(np.min(z - radius)) * 0.99, far * 1e-4)
        return near, far

    def _full_counts(self, poses, projection):
        """Pixels each instance covers alone: position-only pass, no depth test, 1-byte target."""
        ctx, program = self.ctx, self._count_program
        ctx.disable(ctx.DEPTH_TEST)  # coverage does not depend on which surface is in front
        program['projection'].write(projection.T.astype('f4').tobytes())
        self._count_fbo.use()
        counts = np.zeros(len(poses), dtype=np.int64)
        for index, (mesh, R, t) in enumerate(poses):
            self._count_fbo.clear(0.0, 0.0, 0.0, 0.0)
            program['rotation'].write(R.T.astype('f4').tobytes())
            program['translation'].value = tuple(t)
            mesh.count_vao.render()
            mask = np.frombuffer(self._count_fbo.read(components=1, dtype='f1'), np.uint8)
            counts[index] = np.count_nonzero(mask)
        ctx.enable(ctx.DEPTH_TEST)
        return counts

    def _read(self, attachment, shape, dtype):
        """Read one render target into a fresh (writable, never aliased) array."""
        out = np.empty(shape, dtype)  # not zero-filled: read_into overwrites every byte
        components = shape[2] if len(shape) == 3 else 1
        self._fbo.read_into(out, components=components, attachment=attachment,
                            dtype='f1' if dtype == np.uint8 else 'f4')
        return out

    def _resize(self, width, height):
        if width <= 0 or height <= 0:
            raise ValueError(f'render size must be positive; got {width}x{height}')
        for obj in [self._fbo, self._count_fbo, *self._attachments]:
            if obj is not None:
                obj.release()
        size = (width, height)
        color = self.ctx.texture(size, 4)                 # RGBA8
        depth = self.ctx.texture(size, 1, dtype='f4')     # R32F: z in metres
        ids = self.ctx.texture(size, 1, dtype='f4')       # R32F: instance id + 1 (exact)
        depth_buffer = self.ctx.depth_renderbuffer(size)  # for the depth test only
        mask = self.ctx.texture(size, 1)                  # R8, for full_counts
        self._attachments = [color, depth, ids, depth_buffer, mask]
        self._fbo = self.ctx.framebuffer([color, depth, ids], depth_buffer)
        self._count_fbo = self.ctx.framebuffer([mask])
        self.width, self.height = width, height

    def _release_mesh(self, key):
        mesh = self._meshes.pop(key, None)
        if mesh is not None:
            for obj in (mesh.count_vao, *mesh.vaos.values(), mesh.vbo, mesh.ibo, mesh.texture):
                if obj is not None:
                    obj.release()


@dataclass
class _GpuMesh:
    vbo: object
    ibo: object
    vaos: dict          # a vertex array per shader program (number of lights)
    count_vao: object
    texture: object
    radius: float
    centre: np.ndarray
    mean_color: np.ndarray   # (3,) in [0, 1]: the centre of a Material's contrast change


def projection_matrix(K, width, height, near, far):
    """The OpenGL projection (4x4) of camera-frame points (x right, y down, z forward) for K.

    Clip w = z. A point projecting to OpenCV pixel (u, v) reaches window coordinates
    (u + 0.5, v + 0.5): pixel centres sit at half-integers in OpenGL. Image row v maps to
    framebuffer row v (y is not flipped), so the read-back image is already top row first.
    Depth z in [near, far] maps to NDC [-1, 1].
    """
    fx, s, cx = K[0, 0], K[0, 1], K[0, 2]
    fy, cy = K[1, 1], K[1, 2]
    return np.array([
        [2.0 * fx / width, 2.0 * s / width, 2.0 * (cx + 0.5) / width - 1.0, 0.0],
        [0.0, 2.0 * fy / height, 2.0 * (cy + 0.5) / height - 1.0, 0.0],
        [0.0, 0.0, (far + near) / (far - near), -2.0 * far * near / (far - near)],
        [0.0, 0.0, 1.0, 0.0],
    ])


def vertex_normals(vertices, faces):
    """Area-weighted per-vertex normals (N, 3) of a triangle mesh."""
    v = np.asarray(vertices, dtype=np.float64)
    face_normals = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    # Sum the (area-weighted) face normals at each corner's vertex; bincount is the fast scatter.
    corners = faces.reshape(-1)
    normals = np.stack([np.bincount(corners, np.repeat(face_normals[:, k], 3), len(v))
                        for k in range(3)], axis=1)
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.where(norm > 0, normals / np.where(norm > 0, norm, 1.0), [0.0, 0.0, -1.0])


# --- GL context -------------------------------------------------------------------------------


def _create_context(backends):
    """A standalone OpenGL >= 3.3 context from the first backend that works."""
    errors = []
    try:  # deferred: OpenGL loads only when something renders
        import moderngl
    except ImportError as exc:
        raise RuntimeError(f'no OpenGL context: moderngl is not installed ({exc}); '
                           f'{INSTALL_HINT}') from None
    for backend in backends:
        try:
            if backend == 'egl':
                ctx = moderngl.create_context(standalone=True, backend='egl', require=330)
            else:
                ctx = moderngl.create_context(standalone=True, require=330,
                                              context=_OSMesaLoader())
            return ctx, backend
        except Exception as exc:  # noqa: BLE001 - each backend fails in its own way
            errors.append(f'{backend}: {type(exc).__name__}: {exc}')
    raise RuntimeError(f'no OpenGL 3.3 context could be created (tried {"; ".join(errors)}); '
                       f'{INSTALL_HINT}')


class _OSMesaLoader:
    """A core-profile OSMesa context made current, as a moderngl function loader."""

    _ATTRIBUTES = (0x22, 0x1908,    # OSMESA_FORMAT = OSMESA_RGBA
                   0x30, 24,        # OSMESA_DEPTH_BITS
                   0x33, 0x35,      # OSMESA_PROFILE = OSMESA_CORE_PROFILE
                   0x36, 3,         # OSMESA_CONTEXT_MAJOR_VERSION
                   0x37, 3,         # OSMESA_CONTEXT_MINOR_VERSION
                   0)

    def __init__(self):
        names = [ctypes.util.find_library('OSMesa'), 'libOSMesa.so.8', 'libOSMesa.so.6']
        self._lib = None
        for name in filter(None, names):
            try:
                self._lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if self._lib is None:
            raise OSError('libOSMesa not found')
        lib = self._lib
        lib.OSMesaCreateContextAttribs.restype = ctypes.c_void_p
        lib.OSMesaCreateContextAttribs.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_void_p]
        lib.OSMesaMakeCurrent.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint,
                                          ctypes.c_int, ctypes.c_int]
        lib.OSMesaGetProcAddress.restype = ctypes.c_void_p
        lib.OSMesaGetProcAddress.argtypes = [ctypes.c_char_p]
        lib.OSMesaDestroyContext.argtypes = [ctypes.c_void_p]
        attributes = (ctypes.c_int * len(self._ATTRIBUTES))(*self._ATTRIBUTES)
        self._context = lib.OSMesaCreateContextAttribs(attributes, None)
        if not self._context:
            raise OSError('OSMesaCreateContextAttribs failed (no OpenGL 3.3 core profile)')
        # OSMesa needs a colour buffer to become current; rendering goes to our own FBOs.
        self._buffer = ctypes.create_string_buffer(4 * 4 * 4)
        self.__enter__()

    def __enter__(self):  # make current (moderngl's `with ctx:`)
        if not self._lib.OSMesaMakeCurrent(self._context, self._buffer, 0x1401, 4, 4):  # ubyte
            raise OSError('OSMesaMakeCurrent failed')
        return self

    def __exit__(self, *exc):
        pass

    def load_opengl_function(self, name):
        return self._lib.OSMesaGetProcAddress(name.encode()) or 0

    def release(self):
        if self._context:
            self._lib.OSMesaDestroyContext(self._context)
            self._context = None


# --- helpers ----------------------------------------------------------------------------------


def _per_vertex(values, n, columns, name):
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n, columns):
        raise ValueError(f'mesh {name} must be ({n}, {columns}) (one per vertex); got shape '
                         f'{values.shape}')
    if not np.isfinite(values).all():
        raise ValueError(f'mesh {name} contain NaN or infinite values')
    return values


def _material_image(material):
    """The texture image (H, W, 3) uint8 of a trimesh material, or None."""
    if material is None:
        return None
    image = getattr(material, 'image', None)
    if image is None:
        image = getattr(material, 'baseColorTexture', None)  # PBR material (glTF, some OBJ)
    if image is None:
        return None
    if hasattr(image, 'convert'):  # PIL image
        image = image.convert('RGB')
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3]).astype(np.uint8)


def _composite_background(rgb, background_mask, background_rgb):
    background = np.asarray(background_rgb)
    if background.shape == (3,):
        rgb[background_mask] = background.astype(np.uint8)
        return
    if background.shape != rgb.shape or background.dtype != np.uint8:
        raise ValueError(f'background_rgb must be an RGB triple or a {rgb.shape} uint8 image; '
                         f'got shape {background.shape}, dtype {background.dtype}')
    np.copyto(rgb, background, where=background_mask[:, :, None])


# --- benchmark --------------------------------------------------------------------------------


def uv_sphere(rings=50, segments=100, radius=0.05):
    """A UV-sphere MeshData (2 * rings * segments faces) with uvs; for tests and benchmarks."""
    theta = np.linspace(0.0, np.pi, rings + 1)[:, None]
    phi = np.linspace(0.0, 2.0 * np.pi, segments + 1)[None, :]
    normals = np.stack(np.broadcast_arrays(np.sin(theta) * np.cos(phi),
                                           np.sin(theta) * np.sin(phi),
                                           np.cos(theta) + 0 * phi), axis=-1).reshape(-1, 3)
    uvs = np.stack(np.broadcast_arrays(phi / (2 * np.pi), 1.0 - theta / np.pi),
                   axis=-1).reshape(-1, 2)
    index = np.arange((rings + 1) * (segments + 1)).reshape(rings + 1, segments + 1)
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
    c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
    return MeshData(normals * radius, faces, normals=normals, uvs=uvs)


def benchmark(width=640, height=480, frames=50, backend='auto') -> dict:
    """Frames per second rendering 2 meshes (10k faces each) at random poses, with read-back.

    One mesh is textured, the other vertex-coloured; lighting is random. Also times the
    same with `full_counts=True`.
    """
    rng = np.random.default_rng(0)
    sphere = uv_sphere(rings=50, segments=100)  # 10,000 faces
    checker = ((np.indices((256, 256)).sum(axis=0) // 32) % 2 * 200 + 30).astype(np.uint8)
    textured = MeshData(sphere.vertices * [1.0, 0.6, 0.8], sphere.faces, uvs=sphere.uvs,
                        texture=np.stack([checker, checker[::-1], checker.T], axis=2))
    coloured = MeshData(sphere.vertices * [0.7, 1.0, 0.5], sphere.faces,
                        colors=(sphere.normals + 1.0) / 2.0)
    f = 0.9 * width
    camera = CameraModel.from_intrinsics(f, f, (width - 1) / 2, (height - 1) / 2, width, height)
    scenes = []
    for _ in range(frames):
        rotations = Rotation.random(2, random_state=rng).as_matrix()
        positions = rng.uniform([-0.06, -0.04, 0.3], [0.06, 0.04, 0.6], size=(2, 3))
        instances = [('textured', rotations[0], positions[0]),
                     ('coloured', rotations[1], positions[1])]
        scenes.append((instances, Lighting.random(rng)))
    with Renderer(width, height, backend) as renderer:
        renderer.add_mesh('textured', textured)
        renderer.add_mesh('coloured', coloured)
        renderer.render(scenes[0][0], camera)  # warm-up: shader compilation, allocation
        timings = {}
        for full_counts in (False, True):
            start = time.perf_counter()
            for instances, lighting in scenes:
                renderer.render(instances, camera, lighting, full_counts=full_counts)
            timings[full_counts] = time.perf_counter() - start
        return {
            'fps': frames / timings[False],
            'fps_with_full_counts': frames / timings[True],
            'ms_per_frame': 1000.0 * timings[False] / frames,
            'width': width, 'height': height, 'frames': frames,
            'objects': 2, 'faces_per_object': len(sphere.faces),
            'backend': renderer.backend, 'gl_renderer': renderer.gl_renderer,
        }
