"""What a training run records: the loss log (CSV, TensorBoard when installed) and its plot."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from pose6d_ros.core.files import write_atomic

# Validation columns of the log (val_<metric of evaluate.summarize>) and how the plot names them.
VALIDATION_CURVES = {'val_add_0.1d': 'ADD(-S) 0.1d', 'val_proj_2d_5px': '2D proj. 5 px',
                     'val_recall': 'recall',
                     'val_false_positives': 'false positives (% of negative images)'}


class TrainingLog:
    """CSV of losses and validation figures: one row per log step, columns grow as keys appear.

    A resumed run keeps the earlier rows. `enabled=False` (the other processes of a
    distributed run) writes nothing.
    """

    def __init__(self, path, enabled=True):
        self.path, self.enabled, self.rows = Path(path), enabled, []
        if enabled and self.path.is_file():
            with open(self.path, newline='') as handle:
                self.rows = list(csv.DictReader(handle))
        self._tensorboard = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter  # deferred: optional
                self._tensorboard = SummaryWriter(str(self.path.parent / 'tensorboard'))
            except Exception:  # tensorboard is optional
                self._tensorboard = None

    def write(self, **row):
        """Append a row and rewrite the file atomically."""
        if not self.enabled:
            return
        self.rows.append(row)
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        temporary = self.path.with_suffix('.tmp')
        with open(temporary, 'w', newline='') as handle:
            writer = csv.DictWriter(handle, keys)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(temporary, self.path)
        if self._tensorboard is not None:
            for key, value in row.items():
                if key not in ('epoch', 'iteration') and isinstance(value, (int, float)) \
                        and math.isfinite(value):
                    self._tensorboard.add_scalar(key, value, row.get('iteration', 0))

    def close(self):
        """Flush TensorBoard's writer."""
        if self._tensorboard is not None:
            self._tensorboard.close()


def curves(rows):
    """(loss points, {validation label: points in %}) of log rows; points: (iteration, value)."""
    loss = _points(rows, 'loss')
    validation = {label: [(i, 100.0 * v) for i, v in _points(rows, key)]  # fractions -> %
                  for key, label in VALIDATION_CURVES.items()}
    return loss, {label: points for label, points in validation.items() if points}


def plot_training_log(rows, path, title='training'):
    """Write a PNG of the loss (log scale) and the validation figures against iterations.

    Uses matplotlib's Agg canvas directly (no pyplot, no global backend switch).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # deferred: heavy, plot only
    from matplotlib.figure import Figure

    loss, validation = curves(rows)
    figure = Figure(figsize=(8, 3.4), dpi=100)
    left, right = figure.subplots(1, 2)
    if loss:
        left.plot(*zip(*loss), lw=1)
        if all(v > 0 for _, v in loss):
            left.set_yscale('log')
    left.set(xlabel='iteration', ylabel='training loss', title=title)
    left.grid(alpha=0.3)
    for label, points in validation.items():
        right.plot(*zip(*points), marker='o', ms=3, label=label)
    right.set(xlabel='iteration', ylabel='% of instances', title='validation', ylim=(0, 100))
    right.grid(alpha=0.3)
    if validation:
        right.legend(loc='upper left', fontsize=8)
    else:
        right.text(0.5, 0.5, 'no validation ran', ha='center', va='center',
                   transform=right.transAxes)
    figure.tight_layout()
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    return write_atomic(path, buffer.getvalue())


def _points(rows, key):
    points = []
    for row in rows:
        try:
            value = float(row.get(key, ''))
            iteration = int(float(row.get('iteration', '')))
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            points.append((iteration, value))
    return points
