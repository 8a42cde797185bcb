"""The machine: how many CPU threads inference should use, and the facts reports record.

PyTorch starts with one thread per core it can see through the process's affinity mask. In a
container limited by a CPU quota (`docker run --cpus 2` on a 16-core host) every core is in
the mask, so the network would run 16 threads on 2 cores' worth of time and stall. The
estimator therefore caps torch's threads at the CPUs the process may really use.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
import platform

import cv2
import numpy as np

CGROUP_ROOT = Path('/sys/fs/cgroup')
PROC_CGROUP = Path('/proc/self/cgroup')


def available_cpus(cgroup_root=CGROUP_ROOT):
    """How many CPUs this process may use: its affinity mask, capped by a cgroup CPU quota."""
    if hasattr(os, 'sched_getaffinity'):
        count = len(os.sched_getaffinity(0))
    else:
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    # Rounded down: a thread more than the quota can run gets the whole group throttled.
    return max(1, min(count, math.floor(quota))) if quota else max(1, count)


def cgroup_cpu_quota(cgroup_root=CGROUP_ROOT, proc_cgroup=PROC_CGROUP):
    """How many CPUs' worth of time the cgroup quota allows (e.g. 1.5); None without a quota.

    Reads cgroup v2 (`cpu.max`: "<quota> <period>" or "max <period>", in the process's own
    cgroup as /proc/self/cgroup names it, e.g. a systemd service's, else at the root as in a
    container) or v1 (`cpu/cpu.cfs_quota_us`, -1 for none, and `cpu/cpu.cfs_period_us`).
    """
    root = Path(cgroup_root)
    for folder in (*_own_cgroup_v2(root, proc_cgroup), root):
        try:
            fields = (folder / 'cpu.max').read_text().split()
        except OSError:
            continue
        if len(fields) == 2 and fields[0] != 'max':
            return _ratio(fields[0], fields[1])
        return None
    try:
        quota = (root / 'cpu' / 'cpu.cfs_quota_us').read_text().strip()
        period = (root / 'cpu' / 'cpu.cfs_period_us').read_text().strip()
    except OSError:
        return None
    return _ratio(quota, period)


def inference_threads(requested=0, current=None, cgroup_root=CGROUP_ROOT):
    """Threads for a CPU network: `requested` when > 0, else torch's count capped as above."""
    if requested and requested > 0:
        return int(requested)
    if current is None:
        import torch  # deferred: synth and the benchmarks read this module without a network

        current = torch.get_num_threads()
    return max(1, min(int(current), available_cpus(cgroup_root)))


@contextlib.contextmanager
def torch_threads(count):
    """Inside the block torch runs on `count` CPU threads (None: as it is); restored after."""
    if count is None:
        yield
        return
    import torch  # deferred: synth and the benchmarks read this module without a network

    previous = torch.get_num_threads()
    torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _own_cgroup_v2(root, proc_cgroup):
    """The process's cgroup v2 folder under root (the "0::<path>" line), if not the root."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        if line.startswith('0::'):
            relative = line[3:].strip().strip('/')
            return [root / relative] if relative else []
    return []


def _ratio(quota, period):
    try:
        quota, period = int(quota), int(period)
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def machine_info():
    """What the figures were measured on."""
    return {
        'machine': platform.machine(),
        'processor': platform.processor() or platform.machine(),
        'cpu_count': os.cpu_count(),
        'cpus_available': available_cpus(),  # affinity mask and container CPU quota
        'python': platform.python_version(),
        'numpy': np.__version__,
        'opencv': cv2.__version__,
    }
