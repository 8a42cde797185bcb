"""Writing outputs so that nothing is ever half-written: temporary names, then a rename."""

from __future__ import annotations

import os
from pathlib import Path
import secrets
import shutil


def write_atomic(path, data: bytes, sync=False):
    """Write bytes to a temporary name beside `path`, then rename it over `path`; returns it.

    The folder is made if missing. A failure (an interrupt included) leaves `path` as it was
    and no temporary file. sync: fsync the data before the rename, so that after a power
    loss `path` holds the old or the new bytes, never a torn file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def move_into_place(staging, out_path):
    """Rename staging (a folder or a file) to out_path.

    An existing out_path is set aside first and removed only once the new one is in; if the
    rename fails, it is put back.
    """
    staging, out_path = Path(staging), Path(out_path)
    old = None
    if out_path.exists() or out_path.is_symlink():
        old = out_path.with_name(f'.{out_path.name}.old-{os.getpid()}')
        os.replace(out_path, old)
    try:
        os.replace(staging, out_path)
    except BaseException:
        if old is not None:
            os.replace(old, out_path)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def make_temp_dir(parent, prefix, suffix=''):
    """Make a new empty folder `parent/<prefix><random><suffix>` to stage an output in.

    Unlike tempfile.mkdtemp (always mode 700), the folder gets the mode of any folder the
    user makes (0o777 less the umask, 755 under umask 022): once it is moved into place,
    other users (a ROS node running as another account) can read what it holds.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        path = parent / f'{prefix}{secrets.token_hex(4)}{suffix}'
        try:
            path.mkdir(mode=0o777)  # the umask applies, as for mkdir(1)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f'cannot make a new folder {prefix}*{suffix} in {parent}')
