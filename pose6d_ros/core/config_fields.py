"""Config sections (mappings read from YAML or a bundle card) checked against what they may hold.

One rule everywhere: a key nobody reads is an error that names it, the section it is in and
the keys that section expects, instead of a typo silently falling back to a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields

from pose6d_ros.core.errors import Pose6dError


def check_keys(data, known, where):
    """`data` as a dict (None: empty).

    Pose6dError if it is not a mapping or has a key outside `known`.
    """
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise Pose6dError(f'{where} must be a mapping; got {type(data).__name__}')
    unknown = sorted(str(key) for key in set(data) - set(known))
    if unknown:
        raise Pose6dError(f'{where} has unknown key(s) {", ".join(unknown)}; expected some of '
                          f'{", ".join(sorted(known))}')
    return dict(data)


def dataclass_kwargs(cls, data, where, lists_as_tuples=False):
    """Keyword arguments for dataclass `cls` from the mapping `data` (checked as check_keys).

    lists_as_tuples turns YAML lists into the tuples the dataclass holds.
    """
    values = check_keys(data, [f.name for f in fields(cls)], where)
    if lists_as_tuples:
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return values
