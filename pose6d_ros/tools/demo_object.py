"""The demo object: a 7 x 6 x 5 cm paper box with six distinct faces, its mesh and its net.

The bundled demo model knows this object, and anyone can make a real copy: `generate` writes
the mesh (OBJ in metres, with UVs and a texture), an objects YAML, and a printable net (PNG at
300 dpi and an A4 PDF at exact physical size) to print, cut, fold and glue.

Geometry: a box of X x Y x Z = 70 x 60 x 50 mm centred at the origin of its object frame.
Its texture is drawn procedurally in millimetres (numpy only, supersampled; no fonts, no
randomness), so the same call gives byte-identical mesh and texture files, and the drawing
does not depend on the resolution.

Faces: each has its own saturated background colour, a large block letter (A..F), an
off-centre disc, three bars near one corner and a thin dark border. The disc and the bars sit
at a different place on every face, so no face looks like another one, nor like itself
rotated or mirrored: the object's pose is unambiguous from any side.

The net is a cross (mm; s to the right, t up, seen from the printed side)::

            +--------+
            | bottom |        t in [2Z+Y, 2Z+2Y]
            +--------+
            |  back  |        t in [Z+Y, 2Z+Y]
            +--------+
            |  top   |        t in [Z, Z+Y]
    +-------+--------+-------+
    | left  | front  | right |  t in [0, Z]
    +-------+--------+-------+
    s: [-Y, 0] [0, X]  [X, X+Y]

The printed side becomes the outside of the box, so every face reads unmirrored from
outside. The texture atlas is the net image over its bounding box s in [-Y, X+Y],
t in [0, 2Z+2Y]; uv = that box normalised to [0, 1] (OBJ convention, v up).
"""

from __future__ import annotations

from dataclasses import dataclass
import io
from pathlib import Path
import textwrap

import numpy as np
from PIL import Image

from pose6d_ros.core.files import write_atomic

NAME = 'demo_box'
OBJECT_ID = 1
SIZE_MM = (70.0, 60.0, 50.0)                 # X, Y, Z: box size along x, y, z
SIZE = tuple(v / 1000.0 for v in SIZE_MM)    # metres
X_MM, Y_MM, Z_MM = SIZE_MM
NET_S = (-Y_MM, X_MM + Y_MM)                 # net bounding box (mm), glue tabs excluded
NET_T = (0.0, 2 * Z_MM + 2 * Y_MM)

MESH_FILE = f'{NAME}.obj'
MTL_FILE = f'{NAME}.mtl'
TEXTURE_FILE = f'{NAME}_texture.png'
OBJECTS_FILE = 'objects.yaml'
NET_PNG_FILE = f'{NAME}_net.png'
NET_PDF_FILE = f'{NAME}_net.pdf'
FILES = (MESH_FILE, MTL_FILE, TEXTURE_FILE, OBJECTS_FILE, NET_PNG_FILE, NET_PDF_FILE)

NET_DPI = 300
PAGE_MM = (210.0, 297.0)                     # A4; the content also fits US Letter (below)
LETTER_MM = (215.9, 279.4)
PRINT_NOTE = 'print at 100% (no scaling) \u2014 the scale bar must measure 5.0 cm'
BORDER_MM = 1.5
BORDER_RGB = (35, 35, 35)
TAB_MM = 8.0                                 # depth of a glue tab

# Where the net sits on the page (mm from the page's lower-left corner). Centred across; the
# content stays within 13.8 mm of the top and 22.6 mm of the bottom of the A4 page, so a US
# Letter printer that centres the page, or aligns it to the top, still prints all of it.
NET_PAGE_OFFSET = ((PAGE_MM[0] - (NET_S[1] - NET_S[0])) / 2 - NET_S[0], 26.0)
SCALE_BAR_MM = (10.0, PAGE_MM[1] - 35.0)    # lower-left corner; 50 x 2.5 mm, 1 cm blocks


@dataclass(frozen=True)
class Face:
    """One face of the box: where it lies in the net, where it lies in 3D, and its design.

    A net point (s, t) (mm) on the face maps to the object frame (mm) as
    `origin + (s - s0) * s_axis + (t - t0) * t_axis`, (s0, t0) = `net_origin`. Face-local
    drawing coordinates are (a, b) = (s - s0, t - t0): a to the right, b up, seen from outside.
    """

    name: str
    net_origin: tuple        # (s0, t0): the face's lower-left corner in the net, mm
    size: tuple              # (width along s, height along t), mm
    origin: tuple            # object-frame point (mm) at net_origin
    s_axis: tuple            # object-frame direction of +s
    t_axis: tuple            # object-frame direction of +t
    background: tuple        # RGB 0..255
    letter: str
    letter_rgb: tuple
    letter_at: tuple         # (a, b, cap height) of the letter's lower-left corner, mm
    disc_rgb: tuple
    disc: tuple              # (a, b, radius) of the disc, mm
    bars_rgb: tuple
    bars: tuple              # (a, b, length, vertical) of the bars' lower-left corner, mm

    @property
    def normal(self):
        """Outward unit normal in the object frame (s_axis x t_axis: s right, t up outside)."""
        return tuple(int(v) for v in np.cross(self.s_axis, self.t_axis))

    def net_to_object(self, s, t):
        """Object-frame points (..., 3) in METRES of net points (s, t) in mm on this face."""
        s = np.asarray(s, dtype=np.float64)[..., None]
        t = np.asarray(t, dtype=np.float64)[..., None]
        point = (np.asarray(self.origin, dtype=np.float64)
                 + (s - self.net_origin[0]) * np.asarray(self.s_axis)
                 + (t - self.net_origin[1]) * np.asarray(self.t_axis))
        return point / 1000.0

    def net_corners(self):
        """The face's corners (4, 2) in the net (mm), counter-clockwise from the lower left."""
        s0, t0 = self.net_origin
        w, h = self.size
        return np.array([[s0, t0], [s0 + w, t0], [s0 + w, t0 + h], [s0, t0 + h]])


_X, _Y, _Z = X_MM / 2, Y_MM / 2, Z_MM / 2
_WHITE, _BLACK = (255, 255, 255), (20, 20, 20)
_YELLOW, _BLUE = (250, 215, 40), (35, 70, 215)

# Six hues 60 degrees apart (the most distinct set of saturated colours), letters in white or
# black, whichever contrasts. The layouts (letter side and height, disc and bar corners, bar
# direction) were picked by a small search so that, colour removed, no face correlates by
# more than about 0.3 with its own rotations or mirror images (test_demo_object.py checks
# this): a face seen alone still gives its orientation, and its colour and letter its name.
FACES = (
    Face('front', (0.0, 0.0), (X_MM, Z_MM), (-_X, -_Y, -_Z), (1, 0, 0), (0, 0, 1),
         (215, 35, 35), 'A', _WHITE, (38.0, 13.0, 30.0),
         _YELLOW, (14.5, 14.5, 7.5), _BLACK, (5.0, 32.0, 13.0, True)),
    Face('top', (0.0, Z_MM), (X_MM, Y_MM), (-_X, -_Y, _Z), (1, 0, 0), (0, 1, 0),
         _BLUE, 'B', _WHITE, (8.0, 7.0, 34.0),
         (255, 150, 30), (55.0, 15.0, 8.0), _WHITE, (52.5, 42.0, 13.0, True)),
    Face('back', (0.0, Z_MM + Y_MM), (X_MM, Z_MM), (-_X, _Y, _Z), (1, 0, 0), (0, 0, -1),
         (245, 215, 30), 'C', _BLACK, (8.0, 7.0, 30.0),
         _BLUE, (55.5, 14.5, 7.5), _BLACK, (52.0, 32.5, 13.0, False)),
    Face('bottom', (0.0, 2 * Z_MM + Y_MM), (X_MM, Y_MM), (-_X, _Y, -_Z), (1, 0, 0), (0, -1, 0),
         (30, 165, 60), 'D', _WHITE, (37.5, 7.0, 34.0),
         _YELLOW, (14.5, 14.5, 7.5), _BLACK, (5.0, 42.5, 13.0, False)),
    Face('left', (-Y_MM, 0.0), (Y_MM, Z_MM), (-_X, _Y, -_Z), (0, -1, 0), (0, 0, 1),
         (200, 40, 190), 'E', _WHITE, (33.8, 15.0, 28.0),
         _YELLOW, (14.0, 36.0, 7.0), _BLACK, (5.0, 5.0, 13.0, False)),
    Face('right', (X_MM, 0.0), (Y_MM, Z_MM), (_X, -_Y, -_Z), (0, 1, 0), (0, 0, 1),
         (30, 190, 205), 'F', _BLACK, (8.0, 7.0, 30.0),
         _BLUE, (46.0, 36.0, 7.0), _WHITE, (42.0, 5.0, 13.0, False)),
)
BAR_WIDTH_MM = 2.5                           # three bars, 2.5 mm wide, 2.5 mm apart

# Block letters in units of the cap height: (width, [(op, shape), ...]) painted in order,
# op '+' adds and '-' removes. Shapes: ('rect', x0, y0, x1, y1), ('poly', points) and
# ('ring', cx, cy, rx_out, ry_out, rx_in, ry_in, right_half_only).
GLYPHS = {
    'A': (0.8, [('+', ('poly', ((0, 0), (0.2, 0), (0.272, 0.24), (0.528, 0.24), (0.6, 0),
                                (0.8, 0), (0.5, 1), (0.3, 1)))),
                ('-', ('poly', ((0.326, 0.42), (0.474, 0.42), (0.4, 0.667))))]),
    'B': (0.72, [('+', ('rect', 0, 0, 0.2, 1)),
                 ('+', ('ring', 0.4, 0.76, 0.24, 0.24, 0.08, 0.08, True)),
                 ('+', ('rect', 0, 0.84, 0.4, 1)), ('+', ('rect', 0, 0.52, 0.4, 0.68)),
                 ('+', ('ring', 0.44, 0.28, 0.28, 0.28, 0.12, 0.12, True)),
                 ('+', ('rect', 0, 0, 0.44, 0.16)), ('+', ('rect', 0, 0.4, 0.44, 0.56))]),
    'C': (0.84, [('+', ('ring', 0.42, 0.5, 0.42, 0.5, 0.24, 0.32, False)),
                 ('-', ('rect', 0.42, 0.36, 0.85, 0.64))]),
    'D': (0.72, [('+', ('rect', 0, 0, 0.2, 1)),
                 ('+', ('ring', 0.3, 0.5, 0.42, 0.5, 0.24, 0.32, True)),
                 ('+', ('rect', 0, 0.82, 0.3, 1)), ('+', ('rect', 0, 0, 0.3, 0.18))]),
    'E': (0.65, [('+', ('rect', 0, 0, 0.2, 1)), ('+', ('rect', 0, 0.82, 0.65, 1)),
                 ('+', ('rect', 0, 0.42, 0.56, 0.58)), ('+', ('rect', 0, 0, 0.65, 0.18))]),
    'F': (0.65, [('+', ('rect', 0, 0, 0.2, 1)), ('+', ('rect', 0, 0.82, 0.65, 1)),
                 ('+', ('rect', 0, 0.40, 0.56, 0.56))]),
}


# --- drawing ----------------------------------------------------------------------------------


def _shape_mask(shape, x, y):
    """Boolean mask of the points (x, y) inside one glyph shape."""
    kind = shape[0]
    if kind == 'rect':
        _, x0, y0, x1, y1 = shape
        return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    if kind == 'ring':
        _, cx, cy, rxo, ryo, rxi, ryi, right_half = shape
        dx, dy = x - cx, y - cy
        mask = ((dx / rxo) ** 2 + (dy / ryo) ** 2 <= 1.0) & ((dx / rxi) ** 2 + (dy / ryi) ** 2
                                                             >= 1.0)
        return mask & (dx >= 0) if right_half else mask
    # Even-odd crossing test of a simple polygon, vectorised over the points.
    points = shape[1]
    inside = np.zeros(np.broadcast(x, y).shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]):
        if y0 == y1:
            continue
        crosses = (y0 > y) != (y1 > y)
        inside ^= crosses & (x < x0 + (y - y0) * (x1 - x0) / (y1 - y0))
    return inside


def glyph_mask(letter, x, y):
    """Mask of the block letter at (x, y) in units of its cap height (origin: lower left)."""
    x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    mask = np.zeros(x.shape, dtype=bool)
    for op, shape in GLYPHS[letter][1]:
        if op == '+':
            mask |= _shape_mask(shape, x, y)
        else:
            mask &= ~_shape_mask(shape, x, y)
    return mask


def paint_face(face, a, b):
    """RGB float colours (len(b), len(a), 3) of the face-local grid a (mm, right) x b (mm, up).

    a and b are 1-D sample positions; row i, column j of the result is the point (a[j], b[i])
    seen from outside. Each element is evaluated only over the samples inside its bounding box
    (the grid is separable), which keeps high-resolution drawing fast.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    colour = np.empty((len(b), len(a), 3), dtype=np.float32)  # sums of 0..255 stay exact
    colour[:] = face.background
    # Bars, then disc, then letter, then border: the later layer wins where they would touch.
    ba, bb, length, vertical = face.bars
    for k in range(3):
        offset = 2 * k * BAR_WIDTH_MM
        if vertical:
            box = (ba + offset, bb, ba + offset + BAR_WIDTH_MM, bb + length)
        else:
            box = (ba, bb + offset, ba + length, bb + offset + BAR_WIDTH_MM)
        _paint(colour, a, b, box, None, face.bars_rgb)
    da, db, r = face.disc
    _paint(colour, a, b, (da - r, db - r, da + r, db + r),
           lambda x, y: (x - da) ** 2 + (y - db) ** 2 <= r * r, face.disc_rgb)
    la, lb, height = face.letter_at
    width = GLYPHS[face.letter][0] * height
    _paint(colour, a, b, (la, lb, la + width, lb + height),
           lambda x, y: glyph_mask(face.letter, (x - la) / height, (y - lb) / height),
           face.letter_rgb)
    w, h = face.size
    for box in ((-1.0, -1.0, BORDER_MM, h + 1.0), (w - BORDER_MM, -1.0, w + 1.0, h + 1.0),
                (-1.0, -1.0, w + 1.0, BORDER_MM), (-1.0, h - BORDER_MM, w + 1.0, h + 1.0)):
        _paint(colour, a, b, box, None, BORDER_RGB)
    return colour


def _paint(colour, a, b, box, mask_fn, rgb):
    """Set `rgb` where mask_fn(a, b) holds (everywhere if None) in box [x0, x1) x [y0, y1)."""
    x0, y0, x1, y1 = box
    cols = np.flatnonzero((a >= x0) & (a < x1))
    rows = np.flatnonzero((b >= y0) & (b < y1))
    if not len(cols) or not len(rows):
        return
    index = np.ix_(rows, cols)
    if mask_fn is None:
        colour[index] = rgb
        return
    patch = colour[index]
    patch[mask_fn(a[cols][None, :], b[rows][:, None])] = rgb
    colour[index] = patch


def net_pixel_size(px_per_mm):
    """(width, height) in pixels of the net's bounding box drawn at `px_per_mm`."""
    return (max(1, int(round((NET_S[1] - NET_S[0]) * px_per_mm))),
            max(1, int(round((NET_T[1] - NET_T[0]) * px_per_mm))))


def draw_net(px_per_mm, supersample=4):
    """The six faces drawn over the net's bounding box, image row 0 at the top (t max).

    Returns (colour (H, W, 3) float, premultiplied by coverage; coverage (H, W) in [0, 1]):
    each pixel averages supersample x supersample point samples, so face edges that fall
    inside a pixel (any px_per_mm) are shared in proportion. The image spans the bounding box
    exactly, so uv = (s, t) normalised over it addresses the same points.
    """
    width, height = net_pixel_size(px_per_mm)
    ss = int(supersample)
    ds = (NET_S[1] - NET_S[0]) / width
    dt = (NET_T[1] - NET_T[0]) / height
    offsets = (np.arange(ss) + 0.5) / ss
    colour = np.zeros((height, width, 3))
    coverage = np.zeros((height, width))
    for face in FACES:
        (s0, t0), (w, h) = face.net_origin, face.size
        c0 = max(0, int(np.floor((s0 - NET_S[0]) / ds)))
        c1 = min(width, int(np.ceil((s0 + w - NET_S[0]) / ds)))
        r0 = max(0, int(np.floor((NET_T[1] - (t0 + h)) / dt)))
        r1 = min(height, int(np.ceil((NET_T[1] - t0) / dt)))
        a = NET_S[0] + (np.arange(c0, c1)[:, None] + offsets).ravel() * ds - s0
        rows = max(1, 2_000_000 // max(1, len(a) * ss))  # bounded memory per chunk
        for ra in range(r0, r1, rows):
            rb = min(r1, ra + rows)
            b = NET_T[1] - (np.arange(ra, rb)[:, None] + offsets).ravel() * dt - t0
            samples = paint_face(face, a, b)
            # Samples off the face (in edge pixels shared with a neighbour) count nothing.
            a_in, b_in = (a >= 0) & (a < w), (b >= 0) & (b < h)
            samples[~b_in] = 0.0
            samples[:, ~a_in] = 0.0
            colour[ra:rb, c0:c1] += _box_sum(samples, ss)
            coverage[ra:rb, c0:c1] += np.outer(b_in.reshape(-1, ss).sum(axis=1),
                                               a_in.reshape(-1, ss).sum(axis=1))
    return colour / ss ** 2, coverage / ss ** 2


def _box_sum(samples, ss):
    """Sum ss x ss blocks of samples (rows * ss, cols * ss, 3) -> (rows, cols, 3)."""
    rows = samples[0::ss].copy()
    for k in range(1, ss):  # strided slice sums: much faster than a multi-axis reduction
        rows += samples[k::ss]
    out = rows[:, 0::ss].copy()
    for k in range(1, ss):
        out += rows[:, k::ss]
    return out


def texture_atlas(px_per_mm=4, supersample=4):
    """The texture atlas (H, W, 3) uint8: the net image, the space around the faces dark.

    The space outside the faces takes the border colour, so texture filtering (mipmaps) at
    the faces' edges blends in border colour, never a stray colour.
    """
    colour, coverage = draw_net(px_per_mm, supersample)
    colour += (1.0 - coverage)[..., None] * np.asarray(BORDER_RGB, dtype=np.float64)
    return np.clip(np.round(colour), 0, 255).astype(np.uint8)


def face_region(face, image_shape):
    """(rows, cols) slices of the face's pixels in a net image of `image_shape` (whole pixels)."""
    height, width = image_shape[:2]
    kx = width / (NET_S[1] - NET_S[0])
    ky = height / (NET_T[1] - NET_T[0])
    (s0, t0), (w, h) = face.net_origin, face.size
    cols = slice(int(round((s0 - NET_S[0]) * kx)), int(round((s0 + w - NET_S[0]) * kx)))
    rows = slice(int(round((NET_T[1] - t0 - h) * ky)), int(round((NET_T[1] - t0) * ky)))
    return rows, cols


def face_image(texture, face):
    """The face's part of a texture atlas, as seen from outside (row 0 at the face's top)."""
    rows, cols = face_region(face, texture.shape)
    return texture[rows, cols]


# --- mesh -------------------------------------------------------------------------------------


def corner_index(point):
    """Keypoint corner index k of a box corner (x max if k & 4, y max if k & 2, z max if k & 1)."""
    return int(4 * (point[0] > 0) + 2 * (point[1] > 0) + (point[2] > 0))


def mesh_arrays():
    """(vertices (8, 3) m, uvs (24, 2), normals (6, 3), faces (12, 3, 3) of v/vt/vn indices).

    Two triangles per face, counter-clockwise seen from outside; each face has its own four
    uvs (its corners in the atlas), so the texture has a seam at every edge, as it must.
    """
    bits = (np.arange(8)[:, None] >> np.array([2, 1, 0])) & 1
    vertices = (bits - 0.5) * np.asarray(SIZE)
    uvs, normals, triangles = [], [], []
    for index, face in enumerate(FACES):
        corners = face.net_corners()
        points = face.net_to_object(corners[:, 0], corners[:, 1])
        v = [corner_index(p) for p in points]
        vt = list(range(4 * index, 4 * index + 4))
        uvs.extend((corners - [NET_S[0], NET_T[0]]) / [NET_S[1] - NET_S[0], NET_T[1] - NET_T[0]])
        normals.append(face.normal)
        for i, j, k in ((0, 1, 2), (0, 2, 3)):  # the net corners run counter-clockwise
            triangles.append([(v[n], vt[n], index) for n in (i, j, k)])
    return vertices, np.array(uvs), np.array(normals, dtype=np.float64), np.array(triangles)


def obj_text():
    """The OBJ file (metres, uvs, normals, material `demo_box`)."""
    vertices, uvs, normals, triangles = mesh_arrays()
    lines = [f'# {NAME}: the pose6d_ros demo object, a {size_cm_text()} cm box; units: metres',
             '# written by `pose6d demo-object`; faces: front -y A, top +z B, back +y C, '
             'bottom -z D, left -x E, right +x F',
             f'mtllib {MTL_FILE}', f'o {NAME}']
    lines += [f'v {_num(x)} {_num(y)} {_num(z)}' for x, y, z in vertices]
    lines += [f'vt {_num(u, 9)} {_num(v, 9)}' for u, v in uvs]  # sub-pixel exact
    lines += [f'vn {_num(x)} {_num(y)} {_num(z)}' for x, y, z in normals]
    lines += [f'usemtl {NAME}', 's off']
    lines += ['f ' + ' '.join(f'{v + 1}/{vt + 1}/{vn + 1}' for v, vt, vn in triangle)
              for triangle in triangles]
    return '\n'.join(lines) + '\n'


def mtl_text():
    """The MTL file: white material (the texture gives every colour), no specular."""
    return '\n'.join([f'# {NAME} material', f'newmtl {NAME}', 'Ka 1.000000 1.000000 1.000000',
                      'Kd 1.000000 1.000000 1.000000', 'Ks 0.000000 0.000000 0.000000',
                      'd 1.000000', 'illum 1', f'map_Kd {TEXTURE_FILE}']) + '\n'


def objects_yaml_text():
    """The objects YAML naming the demo box (keypoints and diameter come from the mesh)."""
    return (f'# the pose6d_ros demo object, a {size_cm_text()} cm printed box '
            '(written by pose6d demo-object)\n'
            f'objects:\n  - name: {NAME}\n    id: {OBJECT_ID}\n    mesh: {MESH_FILE}\n'
            '    scale: 1.0\n')


def _num(value, digits=6):
    return f'{float(value) + 0.0:.{digits}f}'  # + 0.0 turns -0.0 into 0.0


def size_cm_text():
    """The box size as text, e.g. '7.0 x 6.0 x 5.0' (cm; x, y, z)."""
    return ' x '.join(f'{v / 10:.1f}' for v in SIZE_MM)


# --- the printable net ------------------------------------------------------------------------


@dataclass(frozen=True)
class NetLines:
    """The net's lines in net coordinates (mm): segments ((s, t), (s, t)) and tab polygons."""

    folds: tuple             # fold lines between faces and at the base of every tab
    cuts: tuple              # cut outline: free face edges and the tabs' outer edges
    tabs: tuple              # glue tabs, each (4, 2) points
    glued: tuple             # (tab face, tab edge, partner face, partner edge) per tab


# When two faces meet at an edge the net leaves open, the tab goes on the face that comes
# first here: the central column's faces carry every tab, so the side faces stay plain and the
# net stays 19 cm wide (it fits A4 and US Letter).
TAB_PRIORITY = ('bottom', 'back', 'top', 'front', 'right', 'left')


def net_lines(tab_mm=TAB_MM):
    """Classify the 24 face edges of the net into folds, glue tabs and cuts.

    Two face edges that map to the same 3D box edge are one fold when they coincide in the
    net, else a pair to glue: the tab goes on one of them (TAB_PRIORITY), the other is cut.
    """
    edges = {}
    for face in FACES:
        corners = face.net_corners()
        for i in range(4):
            p, q = corners[i], corners[(i + 1) % 4]
            ends = face.net_to_object([p[0], q[0]], [p[1], q[1]])
            key = tuple(sorted(tuple(np.round(e * 1e6).astype(int)) for e in ends))
            edges.setdefault(key, []).append((face, p, q))
    folds, cuts, tabs, glued = [], [], [], []
    for pair in edges.values():
        if len(pair) != 2:
            raise AssertionError(f'box edge shared by {len(pair)} face edges; expected 2')
        (fa, pa, qa), (fb, pb, qb) = pair
        if np.allclose(pa, qb) and np.allclose(qa, pb):
            folds.append((_point(pa), _point(qa)))
            continue
        if TAB_PRIORITY.index(fb.name) < TAB_PRIORITY.index(fa.name):
            (fa, pa, qa), (fb, pb, qb) = (fb, pb, qb), (fa, pa, qa)
        direction = (qa - pa) / np.linalg.norm(qa - pa)
        outward = np.array([direction[1], -direction[0]])  # right of a ccw edge: outside
        # 45-degree ends keep neighbouring tabs apart and let the folded tabs clear each other.
        tab = np.array([pa, qa, qa + tab_mm * (outward - direction),
                        pa + tab_mm * (outward + direction)])
        tabs.append(tab)
        folds.append((_point(pa), _point(qa)))
        cuts += [(_point(tab[k]), _point(tab[(k + 1) % 4])) for k in (1, 2, 3)]
        cuts.append((_point(pb), _point(qb)))
        glued.append((fa.name, (_point(pa), _point(qa)), fb.name, (_point(pb), _point(qb))))
    return NetLines(tuple(folds), tuple(cuts), tuple(tabs), tuple(glued))


def _point(p):
    return float(p[0]), float(p[1])


def net_figure(net_rgb, interpolation='none'):
    """A matplotlib Figure of the printable A4 page; axes in mm from the lower-left corner.

    `net_rgb`: the faces drawn over the net's bounding box (white outside the faces).
    interpolation 'none' embeds the image unresampled in a PDF (exact extent in mm);
    'nearest' is the fast choice for a raster page at the image's own resolution.
    """
    # deferred: matplotlib is heavy to import and only the printable net needs it
    from matplotlib.figure import Figure
    from matplotlib.patches import Polygon, Rectangle

    fig = Figure(figsize=(PAGE_MM[0] / 25.4, PAGE_MM[1] / 25.4))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0.0, PAGE_MM[0])
    ax.set_ylim(0.0, PAGE_MM[1])
    ax.set_axis_off()
    ox, oy = NET_PAGE_OFFSET

    def page(point):
        return point[0] + ox, point[1] + oy

    ax.imshow(net_rgb, extent=(NET_S[0] + ox, NET_S[1] + ox, NET_T[0] + oy, NET_T[1] + oy),
              interpolation=interpolation, aspect='auto', zorder=1)
    lines = net_lines()
    for tab in lines.tabs:
        corners = [page(p) for p in tab]
        ax.add_patch(Polygon(corners, closed=True, facecolor='0.88', edgecolor='none', zorder=2))
        centre = np.mean(corners, axis=0)
        along = np.subtract(corners[1], corners[0])
        angle = np.degrees(np.arctan2(along[1], along[0]))
        angle = angle - 180.0 if abs(angle) > 90.0 else angle  # keep the word upright
        ax.text(*centre, 'glue', fontsize=6, color='0.35', rotation=angle, ha='center',
                va='center', zorder=3)
    for p, q in lines.cuts:
        ax.plot(*zip(page(p), page(q)), color='black', linewidth=0.8, solid_capstyle='round',
                zorder=4)
    # Mid-grey dashes show on the faces' dark borders as well as on the light tabs.
    for p, q in lines.folds:
        ax.plot(*zip(page(p), page(q)), color='0.6', linewidth=1.0, linestyle=(0, (5, 3)),
                zorder=4)

    left, top = 10.0, PAGE_MM[1] - 18.0
    ax.text(left, top, f'{NAME}: the pose6d_ros demo object, {size_cm_text()} cm (x \u00d7 y '
            f'\u00d7 z), object id {OBJECT_ID}', fontsize=11, fontweight='bold', va='baseline')
    ax.text(left, top - 7.0, PRINT_NOTE, fontsize=10, color='#b00000', va='baseline')
    # Scale bar: 5 cm in 1 cm blocks, black and white.
    bar_x, bar_y = SCALE_BAR_MM
    for k in range(5):
        ax.add_patch(Rectangle((bar_x + 10.0 * k, bar_y), 10.0, 2.5, linewidth=0.6,
                               edgecolor='black', facecolor='black' if k % 2 == 0 else 'white'))
        ax.text(bar_x + 10.0 * k, bar_y - 1.5, str(k), fontsize=6, ha='center', va='top')
    ax.text(bar_x + 50.0, bar_y - 1.5, '5 cm', fontsize=6, ha='center', va='top')
    ax.text(bar_x + 53.0, bar_y + 1.25, '\u2190 this bar must measure 5.0 cm', fontsize=7,
            va='center')

    # Instructions and the face legend fill the empty corners of the cross.
    right_x = ox + X_MM + TAB_MM + 3.0
    steps = ['How to make it', '',
             '1. Print on thick paper (160-250 g/m\u00b2) at 100% ("actual size").',
             '2. Check the scale bar: 5.0 cm.',
             '3. Cut along the solid black lines.',
             '4. Fold along every dashed line, printed side out.',
             '5. Glue each grey tab inside the box, under the edge it meets; close the '
             'bottom (D) last.', '',
             'Solid: cut. Dashed: fold. Grey: glue.']
    _text_block(ax, right_x, oy + Z_MM + 170.0, steps, width=30)
    legend = ['Faces (object frame)', '',
              *(f'{f.letter}  {f.name} ({_axis_name(f.normal)})' for f in FACES), '',
              f'Size {size_cm_text()} cm (x, y, z). Object frame: origin at the centre; '
              'facing A: x right, z up, y away from you.',
              'Mesh, texture and this net:', '`pose6d demo-object --out DIR`']
    _text_block(ax, 10.0, oy + Z_MM + 170.0, legend, width=30)
    return fig


def _text_block(ax, x, y, paragraphs, width):
    lines = []
    for paragraph in paragraphs:
        lines += textwrap.wrap(paragraph, width) or ['']
    for k, line in enumerate(lines):
        ax.text(x, y - 4.0 * k, line, fontsize=7.5, va='top',
                fontweight='bold' if k == 0 else 'normal')


def _axis_name(normal):
    axis = int(np.argmax(np.abs(normal)))
    return ('+' if normal[axis] > 0 else '-') + 'xyz'[axis]


def net_page_files(dpi=NET_DPI):
    """(PNG bytes at `dpi`, PDF bytes) of the printable A4 net page."""
    colour, coverage = draw_net(dpi / 25.4, supersample=3)
    colour += (1.0 - coverage)[..., None] * 255.0  # white paper outside the faces
    rgb = np.clip(np.round(colour), 0, 255).astype(np.uint8)
    pdf = io.BytesIO()
    # No creation date: the same call gives the same PDF.
    net_figure(rgb, 'none').savefig(pdf, format='pdf', dpi=dpi,
                                    metadata={'CreationDate': None})
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # deferred: as net_figure's

    fig = net_figure(rgb, 'nearest')  # the image is already at the page's resolution
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    page = np.asarray(canvas.buffer_rgba())[:, :, :3]
    return png_bytes(np.ascontiguousarray(page), dpi=dpi), pdf.getvalue()


# --- files ------------------------------------------------------------------------------------


def png_bytes(rgb, dpi=None):
    """PNG file bytes of an RGB uint8 image (no time stamps: deterministic)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb, 'RGB').save(buffer, format='PNG',
                                     **({'dpi': (dpi, dpi)} if dpi else {}))
    return buffer.getvalue()


def generate(out_dir, px_per_mm=4, net=True):
    """Write the demo object's files into `out_dir` (created if missing); returns their paths.

    demo_box.obj/.mtl + demo_box_texture.png (mesh in metres, uvs, texture at `px_per_mm`
    pixels per mm), objects.yaml, and with `net`: demo_box_net.png (A4 page at 300 dpi) and
    demo_box_net.pdf (A4 at exact physical size). The same arguments give byte-identical mesh,
    texture and YAML files.
    """
    if not px_per_mm > 0:
        raise ValueError(f'px_per_mm must be positive; got {px_per_mm}')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    # Texture and material first: the OBJ that names them appears last of the three.
    written[TEXTURE_FILE] = write_atomic(out / TEXTURE_FILE,
                                         png_bytes(texture_atlas(px_per_mm)))
    written[MTL_FILE] = write_atomic(out / MTL_FILE, mtl_text().encode())
    written[MESH_FILE] = write_atomic(out / MESH_FILE, obj_text().encode())
    written[OBJECTS_FILE] = write_atomic(out / OBJECTS_FILE, objects_yaml_text().encode())
    if net:
        png, pdf = net_page_files()
        written[NET_PNG_FILE] = write_atomic(out / NET_PNG_FILE, png)
        written[NET_PDF_FILE] = write_atomic(out / NET_PDF_FILE, pdf)
    return written
