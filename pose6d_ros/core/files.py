"""Writing outputs so that nothing is ever half-written: temporary names, then a rename."""

from __future__ import annotations

import os
from pathlib import Path
import shutil


def write_atomic(path, data: bytes):
    """Write bytes to a temporary name beside `path`, then rename it over `path`; returns it.

    The folder is made if missing. A failure leaves `path` as it was and no temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    try:
        tmp.write_bytes(data)
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
