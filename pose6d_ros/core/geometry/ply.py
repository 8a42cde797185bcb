"""A PLY file's header read on its own, to tell a truncated or corrupt body in one clear line.

trimesh reads a PLY whose body is cut short in many ways: a message that does not say what
is wrong ("setting an array element with a sequence"), or, for an ASCII file cut in its face
list, a mesh with some faces missing and no error at all. The header says how much data
must follow; `check_ply_body` compares it with what the file holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pose6d_ros.core.errors import ObjectModelError

FORMATS = ('ascii', 'binary_little_endian', 'binary_big_endian')
# Bytes of each PLY scalar type (both the PLY 1.0 names and the sized ones).
TYPE_SIZES = {'char': 1, 'uchar': 1, 'int8': 1, 'uint8': 1, 'short': 2, 'ushort': 2,
              'int16': 2, 'uint16': 2, 'int': 4, 'uint': 4, 'int32': 4, 'uint32': 4,
              'float': 4, 'float32': 4, 'double': 8, 'float64': 8}
_HEADER_BYTES = 1 << 16  # a PLY header is a few hundred bytes; more is not a PLY header
_PLURALS = {'vertex': 'vertices'}


@dataclass
class PlyElement:
    """One `element` of a header: its name, count and properties.

    A property is the size in bytes of a scalar, or (count size, item size) for a list.
    """

    name: str
    count: int
    properties: list


@dataclass
class PlyLayout:
    """What a PLY header declares: the format, where the body starts, and the elements."""

    format: str  # noqa: A003 (the PLY header's word)
    body_offset: int
    elements: list

    def declared(self):
        """'8 vertices and 12 faces': what the header says the body holds."""
        parts = [f'{e.count} {_PLURALS.get(e.name, e.name + "s")}' for e in self.elements]
        return ' and '.join(parts) if len(parts) < 3 else ', '.join(parts)


def ply_layout(path):
    """The PlyLayout of the file's header; None when it does not start with a PLY header."""
    with open(path, 'rb') as f:
        head = f.read(_HEADER_BYTES)
    end = head.find(b'end_header')
    if not head.startswith(b'ply') or end < 0:
        return None
    newline = head.find(b'\n', end)
    offset = newline + 1 if newline >= 0 else end + len(b'end_header')
    file_format, elements = None, []
    try:
        for line in head[:end].decode('ascii').splitlines()[1:]:
            words = line.split()
            if not words or words[0] in ('comment', 'obj_info'):
                continue
            if words[0] == 'format':
                file_format = words[1]
            elif words[0] == 'element':
                elements.append(PlyElement(words[1], int(words[2]), []))
            elif words[0] == 'property':
                if words[1] == 'list':
                    prop = (TYPE_SIZES[words[2]], TYPE_SIZES[words[3]])
                else:
                    prop = TYPE_SIZES[words[1]]
                elements[-1].properties.append(prop)
    except (UnicodeDecodeError, IndexError, KeyError, ValueError):
        return None  # not a header we understand: the mesh reader reports it
    if file_format not in FORMATS or not elements:
        return None
    return PlyLayout(file_format, offset, elements)


def check_ply_body(path, layout):
    """Raise ObjectModelError when the PLY file `path` has less body than its header says."""
    path = Path(path)
    if layout.format == 'ascii':
        with open(path, 'rb') as f:
            f.seek(layout.body_offset)
            rows = [row for row in f.read().splitlines() if row.strip()]
        needed = sum(e.count for e in layout.elements)
        if len(rows) < needed:
            raise truncated(path, layout, f'{needed} lines of ASCII data expected, the file '
                                          f'holds {len(rows)}')
        last = next((e for e in reversed(layout.elements) if e.count), None)
        if last is not None and not _row_complete(rows[needed - 1].split(), last.properties):
            raise truncated(path, layout, f'its last {last.name} line is cut short')
        return
    minimum = sum(e.count * sum(p if isinstance(p, int) else p[0] for p in e.properties)
                  for e in layout.elements)
    size = path.stat().st_size - layout.body_offset
    if size < minimum:
        raise truncated(path, layout, f'at least {minimum} bytes of binary data expected, the '
                                      f'file holds {size}')


def truncated(path, layout, detail):
    """The one-line error of a PLY file whose body does not hold what its header declares."""
    return ObjectModelError(f'mesh {path} is truncated or corrupt: its header declares '
                            f'{layout.declared()} ({detail})')


def _row_complete(words, properties):
    """Whether an ASCII row holds every property of its element (lists by their count)."""
    at = 0
    for prop in properties:
        if isinstance(prop, int):
            at += 1
            continue
        if at >= len(words):
            return False
        try:
            at += 1 + int(float(words[at]))
        except (ValueError, OverflowError):
            return False
    return at <= len(words)
