"""The demo object: its mesh, texture and printable net, checked geometrically and by rendering.

Renders are tiny (96x96, ambient light only); the net is generated once per module.
"""

import functools
import os
import re

import cv2
import numpy as np
from PIL import Image
import pytest

from pose6d_ros.core.data.render import Lighting, MeshData, Renderer
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.objects import ObjectSet
from pose6d_ros.tools import cli, demo_object
from pose6d_ros.tools.demo_object import FACES, SIZE

# At 0.3 m a focal length of 300 px gives exactly 1 px per mm on a face, and a principal point
# on a pixel edge puts the faces' edges (even mm sizes) on pixel edges too.
CAMERA = CameraModel.from_intrinsics(300.0, 300.0, 47.5, 47.5, 96, 96)
DISTANCE = 0.3
FLAT = Lighting(ambient=1.0, diffuse=0.0, specular=0.0)  # colours come through unchanged
MM_PER_INCH = 25.4


@pytest.fixture(scope='module')
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp('demo_object')
    return out, demo_object.generate(out)


@pytest.fixture(scope='module')
def texture(generated):
    out, _ = generated
    return np.asarray(Image.open(out / demo_object.TEXTURE_FILE).convert('RGB'))


@pytest.fixture(scope='module')
def renderer(generated):
    out, _ = generated
    try:
        r = Renderer(CAMERA.width, CAMERA.height)
    except RuntimeError as exc:
        pytest.skip(f'no OpenGL context on this machine: {exc}')
    obj = ObjectSet.from_yaml(out / 'objects.yaml')[0]
    r.add_mesh('box', MeshData.from_trimesh(obj.load_mesh()))
    yield r
    r.close()


def dihedral(image):
    """The 8 symmetries of the square applied to an image; the identity first."""
    out = []
    for k in range(4):
        rotated = np.rot90(image, k)
        out += [rotated, rotated[:, ::-1]]
    return out


def structure_correlation(a, b):
    """Correlation of two RGB images with each channel's mean removed (structure, not hue)."""
    a = a - a.mean(axis=(0, 1))
    b = b - b.mean(axis=(0, 1))
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def straight_on(face):
    """T_cam_obj looking straight at `face`'s centre from DISTANCE, its +s axis to the right."""
    normal = np.asarray(face.normal, dtype=float)
    R = np.stack([np.asarray(face.s_axis, float), -np.asarray(face.t_axis, float), -normal])
    half_depth = abs(normal @ np.asarray(SIZE)) / 2
    return R, np.array([0.0, 0.0, DISTANCE + half_depth])


# --- geometry ---------------------------------------------------------------------------------


def test_mesh_loads_as_the_documented_box(generated):
    out, written = generated
    assert sorted(os.listdir(out)) == sorted(demo_object.FILES)  # no temporary files left
    assert set(written) == set(demo_object.FILES)
    objects = ObjectSet.from_yaml(out / 'objects.yaml')
    assert len(objects) == 1
    obj = objects[0]
    assert (obj.name, obj.object_id, obj.scale) == ('demo_box', 1, 1.0)
    expected = np.array([[0.035 if k & 4 else -0.035, 0.03 if k & 2 else -0.03,
                          0.025 if k & 1 else -0.025] for k in range(8)] + [[0.0, 0.0, 0.0]])
    np.testing.assert_allclose(obj.keypoints, expected, atol=1e-9)
    np.testing.assert_allclose(obj.diameter, np.sqrt(0.07 ** 2 + 0.06 ** 2 + 0.05 ** 2),
                               rtol=1e-9)
    mesh = obj.load_mesh()
    assert len(mesh.faces) == 12
    data = MeshData.from_trimesh(mesh)
    assert data.texture.shape == (880, 760, 3)  # 190 x 220 mm at 4 px/mm
    assert data.uvs.min() >= 0.0 and data.uvs.max() <= 1.0


def test_every_face_faces_outward_and_reads_unmirrored(generated):
    out, _ = generated
    mesh = ObjectSet.from_yaml(out / 'objects.yaml')[0].load_mesh()
    half = np.asarray(SIZE) / 2
    for face in FACES:
        normal = np.asarray(face.normal, dtype=float)
        # s right and t up seen from outside: s x t must be the outward normal.
        np.testing.assert_allclose(np.cross(face.s_axis, face.t_axis), normal)
        (s0, t0), (w, h) = face.net_origin, face.size
        centre = face.net_to_object(s0 + w / 2, t0 + h / 2)
        np.testing.assert_allclose(centre, normal * half, atol=1e-12)
        corners = face.net_to_object(face.net_corners()[:, 0], face.net_corners()[:, 1])
        assert np.allclose(np.abs(corners), half)  # the face's corners are box corners
    # The triangles wind counter-clockwise seen from outside: geometric normals point out,
    # each along the normal of the face it belongs to.
    assert (np.einsum('ij,ij->i', mesh.face_normals, mesh.triangles_center) > 0).all()
    for normal in mesh.face_normals:
        assert any(np.allclose(normal, face.normal) for face in FACES)


def test_net_folds_and_glue_tabs_close_the_box():
    lines = demo_object.net_lines()
    assert len(lines.tabs) == 7 and len(lines.glued) == 7
    assert len(lines.folds) == 12  # 5 between faces + the base of each of the 7 tabs
    by_name = {face.name: face for face in FACES}
    glued_edges = set()
    for tab_face, tab_edge, other_face, other_edge in lines.glued:
        assert tab_face != other_face
        ends = [by_name[tab_face].net_to_object(*p) for p in tab_edge]
        other = [by_name[other_face].net_to_object(*p) for p in other_edge]
        # The tab's edge and the cut edge it is glued under are the same edge of the box.
        assert (np.allclose(ends, other) or np.allclose(ends, other[::-1]))
        glued_edges.add(tuple(sorted(tuple(np.round(e * 1e6).astype(int)) for e in ends)))
    assert len(glued_edges) == 7  # 7 glued + 5 folded = the 12 edges of the box
    # Tabs stay inside the net's width (19 cm: it fits A4 and US Letter) and overlap nothing.
    for tab in lines.tabs:
        assert tab[:, 0].min() >= demo_object.NET_S[0] and tab[:, 0].max() <= demo_object.NET_S[1]
    from matplotlib.path import Path

    grid = np.stack(np.meshgrid(np.arange(-70, 140, 0.5) + 0.125,
                                np.arange(-10, 240, 0.5) + 0.125), axis=-1).reshape(-1, 2)
    count = np.zeros(len(grid), dtype=int)
    for polygon in [face.net_corners() for face in FACES] + list(lines.tabs):
        count += Path(polygon).contains_points(grid)
    assert count.max() == 1


# --- rendering --------------------------------------------------------------------------------


@pytest.mark.parametrize('face', FACES, ids=[face.name for face in FACES])
def test_rendered_face_shows_its_colour_and_unmirrored_texture(renderer, texture, face):
    R, t = straight_on(face)
    result = renderer.render([('box', R, t)], CAMERA, FLAT)
    w, h = (int(v) for v in face.size)  # 1 px per mm
    top, left = 48 - h // 2, 48 - w // 2
    assert (result.instance_ids >= 0).sum() == w * h  # the face fills exactly these pixels
    assert result.instance_ids[top:top + h, left:left + w].min() == 0
    rgb = result.rgb
    margin = 3  # leave out the dark border and the filtered edge pixels
    crop = rgb[top + margin:top + h - margin, left + margin:left + w - margin].astype(float)

    colours, counts = np.unique(crop.reshape(-1, 3).astype(int), axis=0, return_counts=True)
    dominant = colours[counts.argmax()]
    assert np.abs(dominant - face.background).max() <= 3, (dominant, face.background)
    others = [np.abs(np.subtract(f.background, dominant)).max() for f in FACES if f is not face]
    assert min(others) > 40

    # The atlas' crop of this face, at the render's 1 px per mm (4 x 4 block means).
    reference = cv2.resize(demo_object.face_image(texture, face), (w, h),
                           interpolation=cv2.INTER_AREA)[margin:h - margin, margin:w - margin]
    reference = reference.astype(float)
    right = structure_correlation(crop, reference)
    wrong = {'mirrored left-right': reference[:, ::-1], 'mirrored up-down': reference[::-1],
             'rotated 180 deg': reference[::-1, ::-1]}
    assert right > 0.9, f'{face.name}: rendered face unlike its texture (corr {right:.2f})'
    for name, image in wrong.items():
        corr = structure_correlation(crop, image)
        assert corr < right - 0.4, f'{face.name}: render looks {name} ({corr:.2f} vs {right:.2f})'


def test_faces_are_unlike_each_other_and_their_own_rotations_and_mirror_images(texture):
    px_per_mm = texture.shape[1] / (demo_object.NET_S[1] - demo_object.NET_S[0])
    inset = int(round(2.0 * px_per_mm))  # the dark border is the same on every face: skip it
    small = {face.name: cv2.resize(demo_object.face_image(texture, face)[inset:-inset,
                                                                         inset:-inset],
                                   (24, 24), interpolation=cv2.INTER_AREA).astype(float)
             for face in FACES}
    for name, image in small.items():
        own = dihedral(image)[1:]
        # Mean absolute difference, 0..255: large against every other face in any orientation,
        # and clearly non-zero against its own rotations and mirror images.
        self_distance = min(np.abs(t - image).mean() for t in own)
        other_distance = min(np.abs(t - small[o]).mean() for o in small if o != name
                             for t in dihedral(image))
        assert self_distance > 15, (name, self_distance)
        assert other_distance > 40, (name, other_distance)
        # Structure alone (hue removed) does not repeat under a rotation or a mirror either.
        assert max(structure_correlation(t, image) for t in own) < 0.45, name


# --- files ------------------------------------------------------------------------------------


def test_generation_is_deterministic(generated, tmp_path):
    out, _ = generated
    again = demo_object.generate(tmp_path / 'again', net=False)
    assert set(again) == {demo_object.MESH_FILE, demo_object.MTL_FILE,
                          demo_object.TEXTURE_FILE, demo_object.OBJECTS_FILE}
    for name, path in again.items():
        assert path.read_bytes() == (out / name).read_bytes(), name


def test_the_bundled_model_knows_the_box_the_command_makes(tmp_path):
    """The printed box and the box the bundled model was trained on must be the same one.

    The bundle's texture was made at 8 px/mm (models/README.md gives the command).
    """
    from pose6d_ros.core.inference.bundle import default_model

    out = tmp_path / 'demo_box'
    demo_object.generate(out, px_per_mm=8, net=False)
    meshes = default_model() / 'meshes'
    for name in (demo_object.MESH_FILE, demo_object.MTL_FILE):
        assert (meshes / name).read_text() == (out / name).read_text(), name
    bundled = np.asarray(Image.open(meshes / demo_object.TEXTURE_FILE).convert('RGB'))
    made = np.asarray(Image.open(out / demo_object.TEXTURE_FILE).convert('RGB'))
    assert np.array_equal(bundled, made)
    bundled_box = ObjectSet.load(default_model() / 'objects.yaml')[0]
    made_box = ObjectSet.load(out / demo_object.OBJECTS_FILE)[0]
    assert bundled_box.object_id == made_box.object_id
    assert np.allclose(bundled_box.keypoints, made_box.keypoints, atol=1e-9)


def _pixel(mm_x, mm_y, dpi=demo_object.NET_DPI):
    """(row, col) of the page PNG pixel at mm (x right, y up from the lower-left corner)."""
    page_h = demo_object.PAGE_MM[1]
    return (int((page_h - mm_y) / MM_PER_INCH * dpi), int(mm_x / MM_PER_INCH * dpi))


def test_net_png_is_an_a4_page_at_300_dpi_at_exact_scale(generated):
    out, _ = generated
    image = Image.open(out / demo_object.NET_PNG_FILE)
    np.testing.assert_allclose(image.info['dpi'], (300, 300), atol=0.01)
    width, height = image.size
    assert abs(width - 210 / MM_PER_INCH * 300) < 1 and abs(height - 297 / MM_PER_INCH * 300) < 1
    grey = np.asarray(image.convert('L')).astype(int)

    # Scale bar: the first and last black 1 cm blocks are 4 cm apart (centre to centre).
    bar_x, bar_y = demo_object.SCALE_BAR_MM
    row, c0 = _pixel(bar_x - 3, bar_y + 1.25)
    _, c1 = _pixel(bar_x + 52, bar_y + 1.25)
    dark = np.flatnonzero(grey[row, c0:c1] < 100) + c0
    runs = np.split(dark, np.flatnonzero(np.diff(dark) > 1) + 1)
    assert len(runs) == 3, [(r[0], r[-1]) for r in runs]
    centres = [(r[0] + r[-1]) / 2 for r in runs]
    assert abs(centres[2] - centres[0] - 40 / MM_PER_INCH * 300) < 2.0

    # The net's outer edges sit where they should, to half a millimetre: dark face border
    # 0.5 mm inside, no dark 0.5 mm outside.
    ox, oy = demo_object.NET_PAGE_OFFSET
    s0, s1 = demo_object.NET_S
    t_side = demo_object.Z_MM / 2  # across the middle of the side faces
    assert grey[_pixel(s0 + ox + 0.5, t_side + oy)] < 60
    assert grey[_pixel(s0 + ox - 0.5, t_side + oy)] > 200
    assert grey[_pixel(s1 + ox - 0.5, t_side + oy)] < 60
    assert grey[_pixel(s1 + ox + 0.5, t_side + oy)] > 200
    assert grey[_pixel(ox + demo_object.X_MM / 2, oy + 0.5)] < 60
    assert grey[_pixel(ox + demo_object.X_MM / 2, oy - 0.5)] > 200

    # Everything printed fits US Letter too (page centred or top-aligned, 5 mm margins).
    rows, cols = np.nonzero(grey < 250)
    top_mm, bottom_mm = rows.min() / 300 * MM_PER_INCH, rows.max() / 300 * MM_PER_INCH
    left_mm, right_mm = cols.min() / 300 * MM_PER_INCH, cols.max() / 300 * MM_PER_INCH
    letter_w, letter_h = demo_object.LETTER_MM
    assert top_mm >= (297 - letter_h) / 2 + 5 and bottom_mm <= letter_h - 5
    assert left_mm >= 5 and right_mm <= 205 and right_mm - left_mm <= letter_w - 10


def test_net_pdf_is_one_a4_page_with_the_full_resolution_net(generated):
    out, _ = generated
    data = (out / demo_object.NET_PDF_FILE).read_bytes()
    assert data.startswith(b'%PDF')
    boxes = re.findall(rb'/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]', data)
    assert len(boxes) == 1
    np.testing.assert_allclose([float(v) for v in boxes[0]],
                               [210 / MM_PER_INCH * 72, 297 / MM_PER_INCH * 72], atol=0.05)
    width, height = demo_object.net_pixel_size(demo_object.NET_DPI / MM_PER_INCH)
    assert f'/Width {width}'.encode() in data and f'/Height {height}'.encode() in data


# --- command ----------------------------------------------------------------------------------


def test_command_refuses_a_non_empty_folder_without_force(tmp_path, capsys, monkeypatch):
    (tmp_path / 'keep.txt').write_text('mine')
    assert cli.main(['demo-object', '--out', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert 'not empty' in err and '--force' in err
    assert sorted(os.listdir(tmp_path)) == ['keep.txt']
    assert cli.main(['demo-object', '--out', str(tmp_path / 'keep.txt')]) == 1

    # Mesh only, to stay fast: the net was checked above.
    monkeypatch.setattr(demo_object, 'generate',
                        functools.partial(demo_object.generate, net=False))
    assert cli.main(['demo-object', '--out', str(tmp_path), '--force']) == 0
    printed = capsys.readouterr().out
    assert demo_object.MESH_FILE in printed and demo_object.TEXTURE_FILE in printed
    assert (tmp_path / 'keep.txt').read_text() == 'mine'
    assert (tmp_path / demo_object.MESH_FILE).is_file()
