"""Argument types shared by the `pose6d` sub-commands: each refuses bad text with one message."""

from __future__ import annotations

import argparse
import math


def positive_int(text):
    """'3' -> 3; refuses 0, negatives and non-integers."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a positive integer; got {text!r}') from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f'expected a positive integer; got {value}')
    return value


def non_negative_int(text):
    """'0' -> 0; refuses negatives and non-integers."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected an integer >= 0; got {text!r}') from None
    if value < 0:
        raise argparse.ArgumentTypeError(f'expected an integer >= 0; got {value}')
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
