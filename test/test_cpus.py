"""CPU threads for inference: the affinity mask, capped by a container's CPU quota."""

import os

import pytest
import torch

from pose6d_ros.core.cpus import available_cpus, cgroup_cpu_quota, inference_threads, torch_threads


def _write(root, relative, text):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _mask_size():
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


def test_cgroup_v2_quota_is_read(tmp_path):
    _write(tmp_path, 'cpu.max', '150000 100000\n')
    assert cgroup_cpu_quota(tmp_path) == pytest.approx(1.5)


def test_cgroup_v2_quota_of_the_process_own_cgroup_comes_first(tmp_path):
    """A systemd service with CPUQuota= has its cpu.max in its own folder, not at the root."""
    proc = tmp_path / 'proc_cgroup'
    proc.write_text('0::/system.slice/robot.service\n')
    root = tmp_path / 'cgroup'
    _write(root, 'cpu.max', 'max 100000\n')
    _write(root, 'system.slice/robot.service/cpu.max', '200000 100000\n')
    assert cgroup_cpu_quota(root, proc) == pytest.approx(2.0)
    proc.write_text('0::/\n')                      # in a container: the root's
    assert cgroup_cpu_quota(root, proc) is None


def test_cgroup_v2_without_a_limit_has_no_quota(tmp_path):
    _write(tmp_path, 'cpu.max', 'max 100000\n')
    _write(tmp_path, 'cpu/cpu.cfs_quota_us', '100000\n')  # v2 answers first: v1 is not read
    _write(tmp_path, 'cpu/cpu.cfs_period_us', '100000\n')
    assert cgroup_cpu_quota(tmp_path) is None


def test_cgroup_v1_quota_is_read_and_minus_one_means_none(tmp_path):
    _write(tmp_path, 'cpu/cpu.cfs_quota_us', '50000\n')
    _write(tmp_path, 'cpu/cpu.cfs_period_us', '100000\n')
    assert cgroup_cpu_quota(tmp_path) == pytest.approx(0.5)
    _write(tmp_path, 'cpu/cpu.cfs_quota_us', '-1\n')
    assert cgroup_cpu_quota(tmp_path) is None


def test_no_cgroup_files_and_garbage_mean_no_quota(tmp_path):
    assert cgroup_cpu_quota(tmp_path) is None
    _write(tmp_path, 'cpu.max', 'lots of cpus\n')
    assert cgroup_cpu_quota(tmp_path) is None


def test_available_cpus_takes_the_smaller_of_mask_and_quota(tmp_path):
    assert available_cpus(tmp_path) == _mask_size()
    _write(tmp_path, 'cpu.max', '100000 100000\n')
    assert available_cpus(tmp_path) == 1
    _write(tmp_path, 'cpu.max', '10000 100000\n')     # a tenth of a CPU still runs one thread
    assert available_cpus(tmp_path) == 1
    if _mask_size() >= 2:
        _write(tmp_path, 'cpu.max', '150000 100000\n')  # 1.5 CPUs: rounded down
        assert available_cpus(tmp_path) == 1
    _write(tmp_path, 'cpu.max', f'{100000 * (_mask_size() + 8)} 100000\n')
    assert available_cpus(tmp_path) == _mask_size()  # a quota above the mask changes nothing


def test_inference_threads_caps_torch_count_and_honours_a_request(tmp_path):
    _write(tmp_path, 'cpu.max', '100000 100000\n')
    assert inference_threads(0, current=16, cgroup_root=tmp_path) == 1
    assert inference_threads(3, current=16, cgroup_root=tmp_path) == 3   # asked for: kept
    _write(tmp_path, 'cpu.max', 'max 100000\n')
    assert inference_threads(0, current=1, cgroup_root=tmp_path) == 1    # never raised


def test_cpu_estimator_applies_its_thread_setting():
    from pose6d_ros.core.geometry.objects import ObjectModel, ObjectSet
    from pose6d_ros.core.geometry.poses import box_keypoints
    from pose6d_ros.core.inference.estimator import Estimator, EstimatorConfig

    objects = ObjectSet([ObjectModel('cube', 1, box_keypoints([-0.025] * 3, [0.025] * 3), 0.087)])
    network = torch.nn.Conv2d(3, 3, 1)
    previous = torch.get_num_threads()
    try:
        Estimator(network, 'keypoints', objects, (64, 48),
                  {'mean': [0.0] * 3, 'std': [1.0] * 3}, device='cpu',
                  config=EstimatorConfig(threads=1, optimize=False))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)


def test_torch_threads_holds_inside_the_block_and_restores_after():
    before = torch.get_num_threads()
    other = 1 if before > 1 else 2
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(other):
        raise RuntimeError('a failing stage')
    assert torch.get_num_threads() == before   # restored on the way out of an error too
    with torch_threads(None):                  # None: left as it is
        assert torch.get_num_threads() == before
