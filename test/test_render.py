"""Offscreen renderer: exact intrinsics, depth, instance masks, colours, textures, errors.

Images are small (160x120 at most) so the tests take seconds on a CPU (Mesa llvmpipe). They
are skipped only where no OpenGL context can be created at all.
"""

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
import trimesh

from pose6d_ros.core.data.render import (
    benchmark,
    DirectionalLight,
    kelvin_to_rgb,
    Lighting,
    Material,
    MeshData,
    Renderer,
    RenderResult,
)
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.poses import random_rotation

# Non-square pixels and a principal point off the image centre, at fractional pixels.
CAMERA = CameraModel.from_intrinsics(480.0, 470.0, 81.3, 57.7, 160, 120)
FLAT = Lighting(ambient=1.0, diffuse=0.0, specular=0.0)  # colours come through unchanged


@pytest.fixture(scope='module')
def renderer():
    try:
        r = Renderer(CAMERA.width, CAMERA.height)
    except RuntimeError as exc:
        pytest.skip(f'no OpenGL context on this machine: {exc}')
    yield r
    r.close()


def quad(half_x=0.03, half_y=0.02):
    """A rectangle in the object's z = 0 plane with OBJ uvs (v = 0 at the image bottom)."""
    vertices = np.array([[-half_x, -half_y, 0], [half_x, -half_y, 0],
                         [half_x, half_y, 0], [-half_x, half_y, 0]], dtype=float)
    # Object y points down in the image (camera y) when R = I: vertex 0 is the top-left.
    uvs = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], dtype=float)
    return vertices, np.array([[0, 1, 2], [0, 2, 3]]), uvs


def project_mesh(mesh, R, t, camera=CAMERA):
    return camera.project(mesh.vertices @ np.asarray(R).T + t)


def fillpoly_silhouette(mesh, R, t, camera=CAMERA):
    """CPU silhouette: every projected triangle filled by OpenCV (fills edge pixels generously)."""
    mask = np.zeros((camera.height, camera.width), np.uint8)
    triangles = np.round(project_mesh(mesh, R, t, camera)[mesh.faces] * 16).astype(np.int32)
    for triangle in triangles:  # one call each: fillPoly with many polygons is even-odd
        cv2.fillPoly(mask, [triangle], 1, shift=4)
    return mask.astype(bool)


def pixel_centre_silhouette(mesh, R, t, camera=CAMERA):
    """CPU silhouette by the OpenGL rule: pixels whose centre lies inside a projected triangle."""
    u, v = np.meshgrid(np.arange(camera.width), np.arange(camera.height))
    centres = np.stack([u.ravel(), v.ravel()], axis=1).astype(float)
    inside = np.zeros(len(centres), bool)
    for a, b, c in project_mesh(mesh, R, t, camera)[mesh.faces]:
        sides = [(q - p)[0] * (centres - p)[:, 1] - (q - p)[1] * (centres - p)[:, 0]
                 for p, q in ((a, b), (b, c), (c, a))]
        sides = np.stack(sides)
        inside |= (sides >= 0).all(axis=0) | (sides <= 0).all(axis=0)
    return inside.reshape(camera.height, camera.width)


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def random_pose(rng):
    return random_rotation(rng), rng.uniform([-0.02, -0.015, 0.3], [0.02, 0.015, 0.6])


# --- geometry ---------------------------------------------------------------------------------


@pytest.mark.parametrize('shape', ['box', 'icosphere'])
def test_silhouette_matches_projection_of_every_triangle(renderer, shape):
    tm = (trimesh.creation.box([0.06, 0.05, 0.04]) if shape == 'box'
          else trimesh.creation.icosphere(subdivisions=2, radius=0.035))
    mesh = MeshData.from_trimesh(tm)
    renderer.add_mesh(shape, mesh)
    rng = np.random.default_rng(7)
    for _ in range(4):
        R, t = random_pose(rng)
        rendered = renderer.render([(shape, R, t)], CAMERA).instance_ids == 0
        assert rendered.sum() > 1000
        assert iou(rendered, fillpoly_silhouette(mesh, R, t)) > 0.95
        # The exact rule agrees to the pixel (sub-pixel intrinsics, pixel-centre convention).
        assert iou(rendered, pixel_centre_silhouette(mesh, R, t)) > 0.998


def test_depth_is_surface_z_and_zero_outside(renderer):
    vertices, faces, _ = quad(0.05, 0.04)
    renderer.add_mesh('plane', MeshData(vertices, faces))
    result = renderer.render([('plane', np.eye(3), [0.01, 0.0, 0.4])], CAMERA)
    mask = result.instance_ids == 0
    assert result.depth.dtype == np.float32 and result.depth.shape == (120, 160)
    assert mask.sum() > 2000
    np.testing.assert_allclose(result.depth[mask], 0.4, rtol=1e-6)
    assert np.all(result.depth[~mask] == 0.0)

    # A tilted plane: z of the intersection of each pixel's ray with the plane.
    R = Rotation.from_euler('yx', [40, 25], degrees=True).as_matrix()
    t = np.array([0.0, 0.01, 0.45])
    result = renderer.render([('plane', R, t)], CAMERA)
    mask = result.instance_ids == 0
    v, u = np.nonzero(mask)
    rays = np.concatenate([CAMERA.pixels_to_normalized(np.stack([u, v], 1)),
                           np.ones((len(u), 1))], axis=1)
    normal = R[:, 2]
    expected_z = (normal @ t) / (rays @ normal)
    np.testing.assert_allclose(result.depth[mask], expected_z, rtol=1e-4)
    assert np.all(result.depth[~mask] == 0.0)


def test_occlusion_gives_visible_masks_and_full_counts(renderer):
    renderer.add_mesh('cube', MeshData.from_trimesh(trimesh.creation.box([0.04, 0.04, 0.04])))
    R = Rotation.from_euler('xyz', [20, 30, 10], degrees=True).as_matrix()
    far, near = ('cube', R, [0.0, 0.0, 0.5]), ('cube', R.T, [0.02, 0.01, 0.35])
    result = renderer.render([far, near], CAMERA, full_counts=True)
    visible = np.array([(result.instance_ids == i).sum() for i in range(2)])
    alone = [(renderer.render([inst], CAMERA).instance_ids == 0).sum() for inst in (far, near)]
    np.testing.assert_array_equal(result.full_pixel_counts, alone)
    assert 0 < visible[0] < result.full_pixel_counts[0]  # far cube partly hidden
    assert visible[1] == result.full_pixel_counts[1]     # near cube whole
    assert np.array_equal(result.depth > 0, result.instance_ids >= 0)
    depth_far, depth_near = (result.depth[result.instance_ids == i] for i in range(2))
    assert depth_near.max() < depth_far.min()
    assert renderer.render([far, near], CAMERA).full_pixel_counts is None


def test_principal_point_shift_moves_the_silhouette(renderer):
    renderer.add_mesh('ball', MeshData.from_trimesh(trimesh.creation.icosphere(2, 0.03)))
    R, t = random_pose(np.random.default_rng(3))
    shifted = CameraModel.from_intrinsics(CAMERA.fx, CAMERA.fy, CAMERA.cx + 10, CAMERA.cy,
                                          CAMERA.width, CAMERA.height)
    a = renderer.render([('ball', R, t)], CAMERA).instance_ids == 0
    b = renderer.render([('ball', R, t)], shifted).instance_ids == 0
    assert a.sum() > 500 and not a[:, -12:].any()
    np.testing.assert_allclose(np.nonzero(b)[1].mean() - np.nonzero(a)[1].mean(), 10.0, atol=0.02)
    assert iou(np.roll(a, 10, axis=1), b) > 0.995


def test_camera_size_differing_from_framebuffer_resizes(renderer):
    small = CameraModel.from_intrinsics(100.0, 100.0, 31.5, 23.5, 64, 48)
    renderer.add_mesh('cube', MeshData.from_trimesh(trimesh.creation.box([0.04, 0.04, 0.04])))
    result = renderer.render([('cube', np.eye(3), [0.0, 0.0, 0.4])], small)
    assert result.rgb.shape == (48, 64, 3) and result.instance_ids.shape == (48, 64)
    # 4 cm at 0.38 m (front face) with f = 100 px: 10.5 px wide, centred on the image.
    assert (result.instance_ids == 0).sum() == pytest.approx(10.5 ** 2, abs=25)
    assert renderer.render([], CAMERA).rgb.shape == (120, 160, 3)


# --- appearance -------------------------------------------------------------------------------


def test_face_colours_come_through(renderer):
    box = trimesh.creation.box([0.05, 0.05, 0.05])
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255],
                        [255, 255, 0], [0, 255, 255], [255, 0, 255]], dtype=np.uint8)
    # One colour per side, found from the face normal (+x, -x, +y, -y, +z, -z).
    axis = np.abs(box.face_normals).argmax(axis=1)
    side = 2 * axis + (box.face_normals[np.arange(len(axis)), axis] < 0)
    box.visual.face_colors = np.concatenate([palette[side], np.full((len(side), 1), 255)], 1)
    renderer.add_mesh('coloured box', MeshData.from_trimesh(box))
    R = Rotation.from_euler('xyz', [25, -35, 0], degrees=True).as_matrix()
    t = np.array([0.0, 0.0, 0.4])
    result = renderer.render([('coloured box', R, t)], CAMERA, lighting=FLAT)
    pixels = result.rgb[result.instance_ids == 0].astype(int)
    distance = np.abs(pixels[:, None, :] - palette[None].astype(int)).max(axis=2)
    assert distance.min(axis=1).max() <= 1  # every pixel is one of the side colours
    seen = {i for i in range(6) if (distance.argmin(axis=1) == i).sum() > 20}
    normals = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    centres = R @ (0.025 * normals.T) + t[:, None]
    facing = {i for i in range(6) if (R @ normals[i]) @ centres[:, i] < 0}
    assert seen == facing and len(seen) == 3
    assert np.all(result.rgb[result.instance_ids < 0] == 0)  # black background


def test_vertex_coloured_ply_in_millimetres(renderer, tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=30.0)  # millimetres
    rgba = np.tile([[200, 60, 30, 255]], (len(sphere.vertices), 1)).astype(np.uint8)
    sphere.visual = trimesh.visual.ColorVisuals(sphere, vertex_colors=rgba)
    sphere.export(tmp_path / 'obj_000001.ply')  # LINEMOD-style: per-vertex RGBA
    mesh = MeshData.from_trimesh(trimesh.load(tmp_path / 'obj_000001.ply'), scale=0.001)
    assert np.abs(mesh.vertices).max() == pytest.approx(0.03, rel=1e-3)
    renderer.add_mesh('ply', mesh)
    result = renderer.render([('ply', np.eye(3), [0.0, 0.0, 0.5])], CAMERA, lighting=FLAT)
    pixels = result.rgb[result.instance_ids == 0]
    assert len(pixels) > 500
    assert np.abs(pixels.astype(int) - [200, 60, 30]).max() <= 1


def test_diffuse_lighting_uses_rotated_normals(renderer):
    vertices, faces, _ = quad()
    renderer.add_mesh('white plane', MeshData(vertices, faces, colors=np.ones((4, 3))))
    lighting = Lighting(ambient=0.0, diffuse=1.0, specular=0.0, direction=(0.0, 0.0, 1.0))
    for angle, expected in ((0, 255), (60, 128)):
        R = Rotation.from_euler('y', angle, degrees=True).as_matrix()
        result = renderer.render([('white plane', R, [0, 0, 0.4])], CAMERA, lighting)
        assert np.abs(result.rgb[result.instance_ids == 0].astype(int) - expected).max() <= 2


def _tilted(angle_deg):
    return Rotation.from_euler('y', angle_deg, degrees=True).as_matrix()


def test_default_lighting_is_phong_with_one_white_light_and_unused_lights_change_nothing(
        renderer):
    """Today's shading: albedo * (ambient + diffuse * cos) + specular * highlight, white light.

    Extra lights of zero intensity (as the shader holds unused ones) leave every pixel as is.
    """
    vertices, faces, _ = quad()
    albedo = np.array([0.8, 0.5, 0.3])
    renderer.add_mesh('plane', MeshData(vertices, faces, colors=np.tile(albedo, (4, 1))))
    ambient, diffuse = 0.3, 0.6
    for angle in (0, 40, 70):
        plain = Lighting(ambient=ambient, diffuse=diffuse, specular=0.0)
        result = renderer.render([('plane', _tilted(angle), [0, 0, 0.4])], CAMERA, plain)
        mask = result.instance_ids == 0
        expected = 255 * albedo * (ambient + diffuse * np.cos(np.radians(angle)))
        assert np.abs(result.rgb[mask] - expected).max() <= 1.0
        unused = DirectionalLight((0.5, 0.2, 0.8), intensity=0.0, specular=0.0,
                                  color=(1.0, 0.2, 0.0))
        dark = Lighting(ambient=ambient, diffuse=diffuse, specular=0.0,
                        extra_lights=(unused, unused))
        again = renderer.render([('plane', _tilted(angle), [0, 0, 0.4])], CAMERA, dark)
        assert np.abs(again.rgb.astype(int) - result.rgb).max() <= 1
    # With highlights: a shiny sphere, default Lighting, the same with two unused lights.
    renderer.add_mesh('ball', MeshData.from_trimesh(trimesh.creation.icosphere(3, 0.03)))
    shiny = Lighting(specular=0.8, shininess=10.0, direction=(0.3, -0.2, 0.93))
    a = renderer.render([('ball', np.eye(3), [0, 0, 0.4])], CAMERA, shiny).rgb
    b = renderer.render([('ball', np.eye(3), [0, 0, 0.4])], CAMERA, Lighting(
        specular=0.8, shininess=10.0, direction=(0.3, -0.2, 0.93),
        extra_lights=(DirectionalLight(intensity=0.0, specular=0.0),) * 2)).rgb
    assert a.max() == 255 and np.abs(a.astype(int) - b).max() <= 1


def test_coloured_lights_add_up_and_a_warm_light_makes_a_white_object_warm(renderer):
    vertices, faces, _ = quad()
    renderer.add_mesh('white plane', MeshData(vertices, faces, colors=np.ones((4, 3))))
    warm, cool = kelvin_to_rgb(2700), kelvin_to_rgb(10000)
    headlight = Lighting(ambient=0.0, diffuse=0.5, specular=0.0, color=tuple(warm))
    result = renderer.render([('white plane', np.eye(3), [0, 0, 0.4])], CAMERA, headlight)
    pixels = result.rgb[result.instance_ids == 0].astype(int)
    red, green, blue = pixels.mean(axis=0)
    assert red > green + 20 and green > blue + 20          # warm: orange, not white
    assert np.abs(pixels - 255 * 0.5 * warm).max() <= 1
    # A second light at 45 degrees (cosine 0.71 on the plane), cool, and a coloured ambient.
    side = DirectionalLight((np.sin(np.pi / 4), 0.0, np.cos(np.pi / 4)), intensity=0.4,
                            specular=0.0, color=tuple(cool))
    two = Lighting(ambient=0.1, diffuse=0.5, specular=0.0, color=tuple(warm),
                   ambient_color=(1.0, 0.5, 0.0), extra_lights=(side,))
    result = renderer.render([('white plane', np.eye(3), [0, 0, 0.4])], CAMERA, two)
    expected = 255 * (0.1 * np.array([1.0, 0.5, 0.0]) + 0.5 * warm
                      + 0.4 * np.cos(np.pi / 4) * cool)
    assert np.abs(result.rgb[result.instance_ids == 0] - np.minimum(expected, 255)).max() <= 1.5


def test_colour_temperatures_have_luminance_one_and_run_from_warm_to_cool():
    luminance = np.array([0.2126, 0.7152, 0.0722])
    for kelvin in (1500, 2700, 4000, 6500, 10000, 40000):
        assert kelvin_to_rgb(kelvin) @ luminance == pytest.approx(1.0)
    assert np.abs(kelvin_to_rgb(6500) - 1.0).max() < 0.03       # daylight: about white
    ratios = [kelvin_to_rgb(k)[0] / kelvin_to_rgb(k)[2] for k in (2000, 2700, 4000, 6500, 10000)]
    assert ratios == sorted(ratios, reverse=True) and ratios[-1] < 1.0 < ratios[1]
    for bad in (500, 'warm', True):
        with pytest.raises(ValueError, match='kelvin in'):
            kelvin_to_rgb(bad)
    assert np.allclose(Lighting().overall_color(), 1.0)
    tinted = Lighting(color=tuple(kelvin_to_rgb(2700))).overall_color()
    assert tinted @ luminance == pytest.approx(1.0) and tinted[0] > 1.0 > tinted[2]


def test_materials_change_contrast_and_saturation_of_one_instance_only(renderer):
    vertices, faces, uvs = quad(0.04, 0.03)
    halves = np.zeros((8, 16, 3), np.uint8)
    halves[:, :8] = (150, 100, 60)   # left: a brown, right: its lighter version
    halves[:, 8:] = (210, 160, 120)
    renderer.add_mesh('halves', MeshData(vertices, faces, uvs=uvs, texture=halves))
    left, right = ('halves', np.eye(3), [-0.045, 0.0, 0.5]), ('halves', np.eye(3),
                                                              [0.045, 0.0, 0.5])

    def sides(result, index):
        mask = result.instance_ids == index
        columns = np.nonzero(mask.any(axis=0))[0]
        third = (columns[-1] - columns[0]) // 3
        rows = np.nonzero(mask.any(axis=1))[0]
        row = (rows[0] + rows[-1]) // 2
        return (result.rgb[row, columns[0] + third // 2].astype(float),
                result.rgb[row, columns[-1] - third // 2].astype(float))

    plain = renderer.render([left, right], CAMERA, FLAT)
    same = renderer.render([left, right], CAMERA, FLAT, materials=[Material(), None])
    assert np.array_equal(plain.rgb, same.rgb)                 # identity: untouched
    stretched = renderer.render([left, right], CAMERA, FLAT,
                                materials=[Material(contrast=2.0), None])
    a, b = sides(plain, 0)
    c, d = sides(stretched, 0)
    mean = (a + b) / 2                                          # the texture's mean colour
    assert np.abs((d - c) - 2 * (b - a)).max() <= 2             # twice the contrast ...
    assert np.abs((c + d) / 2 - mean).max() <= 2                # ... about the mean
    assert np.array_equal(sides(stretched, 1)[0], sides(plain, 1)[0])  # the other: untouched
    grey = renderer.render([left, right], CAMERA, FLAT,
                           materials=[Material(saturation=0.0), None])
    assert np.ptp(sides(grey, 0)[0]) <= 1 and np.ptp(sides(plain, 0)[0]) > 50
    with pytest.raises(ValueError, match='one Material .* per instance: 2; got 1'):
        renderer.render([left, right], CAMERA, FLAT, materials=[Material()])


def test_too_many_lights_and_bad_colours_are_refused(renderer):
    renderer.add_mesh('cube', MeshData.from_trimesh(trimesh.creation.box([0.04, 0.04, 0.04])))
    cube = [('cube', np.eye(3), [0, 0, 0.4])]
    with pytest.raises(ValueError, match='3 extra lights; the renderer sums at most 3'):
        renderer.render(cube, CAMERA, Lighting(extra_lights=(DirectionalLight(),) * 3))
    with pytest.raises(ValueError, match='lighting color must be 3 non-negative RGB gains'):
        renderer.render(cube, CAMERA, Lighting(color=(1.0, -0.1, 1.0)))
    with pytest.raises(ValueError, match='extra light 1 direction must be a non-zero'):
        renderer.render(cube, CAMERA, Lighting(extra_lights=(DirectionalLight((0, 0, 0)),)))


def four_quadrant_texture():
    colours = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], np.uint8)
    return np.repeat(np.repeat(colours, 8, axis=0), 8, axis=1)  # 16x16: TL red, TR green, ...


def check_quadrants(result, centre_px, half_px):
    cu, cv = centre_px
    expected = {(-1, -1): [255, 0, 0], (1, -1): [0, 255, 0],
                (-1, 1): [0, 0, 255], (1, 1): [255, 255, 255]}
    for (sx, sy), colour in expected.items():
        u, v = round(cu + sx * half_px[0] / 2), round(cv + sy * half_px[1] / 2)
        assert result.instance_ids[v, u] == 0
        assert np.abs(result.rgb[v, u].astype(int) - colour).max() <= 3, (sx, sy)


def test_texture_is_mapped_upright(renderer):
    vertices, faces, uvs = quad(0.04, 0.03)
    renderer.add_mesh('poster', MeshData(vertices, faces, uvs=uvs,
                                         texture=four_quadrant_texture()))
    result = renderer.render([('poster', np.eye(3), [0.0, 0.0, 0.5])], CAMERA, lighting=FLAT)
    check_quadrants(result, (CAMERA.cx, CAMERA.cy), (0.04 * 480 / 0.5, 0.03 * 470 / 0.5))


def test_textured_obj_file(renderer, tmp_path):
    pytest.importorskip('PIL', reason='trimesh needs Pillow to read texture images')
    from PIL import Image
    vertices, faces, uvs = quad(0.04, 0.03)
    material = trimesh.visual.material.SimpleMaterial(image=Image.fromarray(
        four_quadrant_texture()))
    tm = trimesh.Trimesh(vertices * 1000.0, faces, process=False,
                         visual=trimesh.visual.TextureVisuals(uv=uvs, material=material))
    tm.export(tmp_path / 'poster.obj')  # writes the .mtl and the texture image beside it
    mesh = MeshData.from_trimesh(trimesh.load(tmp_path / 'poster.obj', force='mesh'), 0.001)
    assert mesh.texture is not None and mesh.texture.shape == (16, 16, 3)
    renderer.add_mesh('poster obj', mesh)
    result = renderer.render([('poster obj', np.eye(3), [0.0, 0.0, 0.5])], CAMERA, FLAT)
    check_quadrants(result, (CAMERA.cx, CAMERA.cy), (0.04 * 480 / 0.5, 0.03 * 470 / 0.5))


def test_background_and_random_lighting(renderer):
    renderer.add_mesh('cube', MeshData.from_trimesh(trimesh.creation.box([0.04, 0.04, 0.04])))
    instance = ('cube', np.eye(3), [0.0, 0.0, 0.4])
    background = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    result = renderer.render([instance], CAMERA, background_rgb=background)
    outside = result.instance_ids < 0
    assert np.array_equal(result.rgb[outside], background[outside])
    result = renderer.render([instance], CAMERA, background_rgb=(10, 20, 30))
    assert np.all(result.rgb[result.instance_ids < 0] == [10, 20, 30])
    rng = np.random.default_rng(1)
    for _ in range(20):
        lighting = Lighting.random(rng)
        assert lighting.direction[2] > 0.49 and 0 <= lighting.ambient <= 1
        result = renderer.render([instance], CAMERA, lighting)
        assert result.rgb[result.instance_ids == 0].mean() > 20  # lit, not black


def test_osmesa_backend_matches_egl(renderer):
    try:
        software = Renderer(64, 48, backend='osmesa')
    except RuntimeError as exc:
        pytest.skip(f'no OSMesa context on this machine: {exc}')
    mesh = MeshData.from_trimesh(trimesh.creation.icosphere(2, 0.03))
    R, t = random_pose(np.random.default_rng(5))
    with software:
        software.add_mesh('ball', mesh)
        renderer.add_mesh('ball', mesh)
        a = software.render([('ball', R, t)], CAMERA).instance_ids
    assert np.array_equal(a, renderer.render([('ball', R, t)], CAMERA).instance_ids)


# --- errors and API ---------------------------------------------------------------------------


def test_bad_meshes_are_rejected_with_clear_messages():
    vertices, faces, uvs = quad()
    with pytest.raises(ValueError, match='no vertices'):
        MeshData(np.zeros((0, 3)), faces)
    with pytest.raises(ValueError, match='no faces'):
        MeshData(vertices, np.zeros((0, 3), dtype=int))
    with pytest.raises(ValueError, match='index vertices'):
        MeshData(vertices, faces + 2)
    with pytest.raises(ValueError, match='no uvs'):
        MeshData(vertices, faces, texture=four_quadrant_texture())
    with pytest.raises(ValueError, match=r'colors must be \(4, 3\)'):
        MeshData(vertices, faces, colors=np.ones((3, 3)))


def test_unknown_key_and_bad_pose(renderer):
    with pytest.raises(KeyError, match="no mesh was added under key 'missing'"):
        renderer.render([('missing', np.eye(3), [0, 0, 0.5])], CAMERA)
    renderer.add_mesh('cube', MeshData.from_trimesh(trimesh.creation.box([0.04, 0.04, 0.04])))
    with pytest.raises(ValueError, match='3x3 rotation'):
        renderer.render([('cube', np.eye(4), [0, 0, 0.5])], CAMERA)
    with pytest.raises(TypeError, match='MeshData'):
        renderer.add_mesh('raw', trimesh.creation.box())


def test_empty_scene_and_result_arrays(renderer):
    result = renderer.render([], CAMERA, full_counts=True)
    assert isinstance(result, RenderResult)
    assert result.rgb.dtype == np.uint8 and not result.rgb.any()
    assert result.instance_ids.dtype == np.int32 and np.all(result.instance_ids == -1)
    assert not result.depth.any() and result.full_pixel_counts.shape == (0,)
    result.rgb[0, 0] = 1  # writable


def test_benchmark_runs(renderer):
    stats = benchmark(width=64, height=48, frames=2)
    assert stats['fps'] > 0 and stats['faces_per_object'] >= 5000
