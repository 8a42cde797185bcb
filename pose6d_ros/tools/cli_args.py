"""Argument types shared by the `pose6d` sub-commands: each refuses bad text with one message."""

from __future__ import annotations

import argparse
import math


def positive_int(text):
    """'3' -> 3; refuses 0, negatives and non-integers."""
    return _int_at_least(text, 1, 'a positive integer')


def non_negative_int(text):
    """'0' -> 0; refuses negatives and non-integers."""
    return _int_at_least(text, 0, 'an integer >= 0')


def _int_at_least(text, minimum, expected):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected {expected}; got {text!r}') from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f'expected {expected}; got {value}')
    return value


def positive_float(text):
    """'2.5' -> 2.5; refuses 0, negatives, inf and nan."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a positive number; got {text!r}') from None
    if not (value > 0.0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f'expected a positive number; got {text!r}')
    return value


def fraction(text):
    """'0.1' -> 0.1; a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f'expected a number between 0 and 1; got {text!r}')
    return value


def size(text):
    """'640x480' -> (640, 480)."""
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected WIDTHxHEIGHT, e.g. 640x480; got '
                                         f'{text!r}') from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f'expected a positive size; got {text!r}')
    return width, height


def id_list(text):
    """'1,5,9' -> [1, 5, 9] (non-negative integer object ids)."""
    try:
        ids = [int(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected comma-separated integer ids, e.g. 1,5,9; '
                                         f'got {text!r}') from None
    if not ids or min(ids) < 0:
        raise argparse.ArgumentTypeError(f'expected non-negative integer ids; got {text!r}')
    return ids


def hits_of_window(text):
    """'2/3' -> (2, 3): N hits of the last M network runs, 1 <= N <= M."""
    try:
        hits, window = (int(v) for v in text.split('/'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected N/M, e.g. 2/3; got {text!r}') from None
    if not 1 <= hits <= window:
        raise argparse.ArgumentTypeError(f'expected 1 <= N <= M; got {text!r}')
    return hits, window


def gate(text):
    """'0.03/30' -> (0.03 metres, 30.0 degrees), both > 0."""
    try:
        metres, degrees = (float(v) for v in text.split('/'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected METRES/DEGREES, e.g. 0.03/30; got '
                                         f'{text!r}') from None
    if not (metres > 0 and 0 < degrees <= 180):
        raise argparse.ArgumentTypeError(f'expected METRES > 0 and 0 < DEGREES <= 180; got '
                                         f'{text!r}')
    return metres, degrees
