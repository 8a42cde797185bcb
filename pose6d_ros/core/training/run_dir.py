"""The run directory of `pose6d train`: what a run writes there, and when it may start over.

A run directory holds the resolved config, the checkpoint, the loss log and its plot, and at
the end the model bundle. A new run refuses a directory that holds an earlier one unless
`force`, which deletes exactly these outputs (anything else in the folder is left alone). A run
that fails before its first checkpoint removes what it wrote, so rerunning the same command
just works; one that fails later keeps its checkpoint for `--resume`.
"""

from __future__ import annotations

from pathlib import Path
import shutil

from pose6d_ros.core.errors import Pose6dError

CHECKPOINT = 'checkpoint.pt'
CONFIG = 'config.yaml'
LOG = 'log.csv'
PLOT = 'training.png'
BUNDLE = 'bundle'
# Everything a run may write, temporary files included.
OUTPUTS = (CONFIG, CHECKPOINT, 'checkpoint.tmp', LOG, 'log.tmp', PLOT, BUNDLE, 'tensorboard')


def prepare_run_dir(out, resume=False, force=False):
    """Check `out` for a new run (or a resumed one); returns True if this call made the folder.

    Raises Pose6dError naming the choices when `out` holds an earlier run and neither
    `resume` nor `force` is given, or when `resume` finds no checkpoint.
    """
    out = Path(out)
    checkpoint = out / CHECKPOINT
    if resume and force:
        raise Pose6dError('pass --resume (continue the run) or --force (start it over), not both')
    if resume:
        if not checkpoint.is_file():
            raise Pose6dError(f'--resume: no checkpoint at {checkpoint} (a run saves one after '
                              'each epoch); run without --resume to start it')
        return False
    if out.exists() and not out.is_dir():
        raise Pose6dError(f'run directory {out} is a file; expected a folder (or a new name)')
    if force:
        remove_outputs(out)
    elif out.is_dir() and any(out.iterdir()):
        choices = ('pass --resume to continue that run, --force to start it over'
                   if checkpoint.is_file() else 'pass --force to start over')
        raise Pose6dError(f'run directory {out} is not empty; {choices} (deletes its '
                          'checkpoint, log and bundle), or choose another --out')
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    return created


def remove_outputs(out, created=False):
    """Delete what a run writes in `out` (OUTPUTS); the folder too if `created` and now empty."""
    out = Path(out)
    for name in OUTPUTS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    if created and out.is_dir() and not any(out.iterdir()):
        out.rmdir()
