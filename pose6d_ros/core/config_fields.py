"""YAML files read in one way, and config sections checked against what they may hold.

`load_yaml` is the one reader of every YAML file the package reads (objects, synth and
training configs, camera calibrations, bundle cards): a broken file is one line naming the
file, the line and column, and the problem. One rule for sections: a key nobody reads is an
error that names it, the section it is in and the keys that section expects, instead of a
typo silently falling back to a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

import yaml

from pose6d_ros.core.errors import Pose6dError


def load_yaml(path, what, error=Pose6dError):
    """The content of the YAML file `path` (None when empty), read with yaml.safe_load.

    what: the kind of file, for messages ("object set", "camera file", ...). A file that
    cannot be read or parsed raises `error` (a Pose6dError type) in one line: the file, the
    line and column, and the problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except UnicodeDecodeError as exc:
        raise error(f'cannot read {what} {path}: byte {exc.start} is not UTF-8 text; expected '
                    'a YAML text file') from None
    except OSError as exc:
        raise error(f'cannot read {what} {path}: {exc.strerror or exc}') from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f'cannot read {what} {path}: {_yaml_problem(exc, text)}') from None


def _yaml_problem(exc, text):
    """'line L, column C: problem (context)' of a YAML error, on one line."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        message = f'line {mark.line + 1}, column {mark.column + 1}: {exc.problem}'
        if exc.context:
            started = exc.context_mark
            where = ''
            if started is not None and ((started.line, started.column)
                                        != (mark.line, mark.column)):
                where = f' started at line {started.line + 1}, column {started.column + 1}'
            message += f' ({exc.context}{where})'
        return message
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not accept
        before = text[:exc.position]
        line, column = before.count('\n') + 1, exc.position - before.rfind('\n')
        return f'line {line}, column {column}: {exc.reason} (character #x{exc.character:04x})'
    return ' '.join(str(exc).split())


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
