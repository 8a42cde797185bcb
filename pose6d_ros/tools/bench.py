"""Benchmarks (`pose6d bench ...`): speed measured by a command with JSON out, never by a test."""

from __future__ import annotations

import json
import resource
import time

import cv2
import numpy as np
import torch

from pose6d_ros.core.cpus import machine_info
from pose6d_ros.core.data.synth import render_frames
from pose6d_ros.core.geometry.camera import CameraModel, default_camera
from pose6d_ros.core.geometry.pnp import solve_pnp
from pose6d_ros.core.geometry.poses import box_keypoints, Pose, random_rotation
from pose6d_ros.core.inference.bundle import load_bundle
from pose6d_ros.core.inference.estimator import Estimator, EstimatorConfig, select_device
from pose6d_ros.core.nets.corners import CornersConfig, CornersNet
from pose6d_ros.core.nets.dope import DopeNet
from pose6d_ros.core.nets.fuse import fuse_conv_bn
from pose6d_ros.core.nets.hrpose import (
    count_flops,
    count_parameters,
    HRPose,
    HRPoseConfig,
    parameter_report,
    STUDENT_BACKBONE,
    TEACHER_BACKBONE,
)
from pose6d_ros.core.nets.keypoint_codec import CodecConfig
from pose6d_ros.core.nets.methods import get_method
from pose6d_ros.tools.reference_decode import PythonDecoding


def bench_pnp(trials=2000, seed=0, threads=1):
    """Microseconds per PnP solve for 9 keypoints (RANSAC + refinement), on `threads` CPU threads.

    Three cases: clean keypoints (1 px noise; the usual case), the same with per-point
    weights (the keypoints network passes peak confidences), and with 2 of 9 gross outliers.
    """
    previous_threads = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        rng = np.random.default_rng(seed)
        camera = CameraModel.from_intrinsics(572.4, 573.6, 325.3, 242.0, 640, 480,
                                             D=[-0.1, 0.05, 0.001, -0.001, 0.0])
        keypoints = box_keypoints([-0.05, -0.04, -0.06], [0.05, 0.04, 0.06])
        cases = {'clean': {}, 'weighted': {}, 'outliers_2_of_9': {}}
        problems = []
        for _ in range(trials):
            pose = Pose(random_rotation(rng), rng.uniform([-0.1, -0.1, 0.4], [0.1, 0.1, 0.8]))
            pixels = camera.project(pose.transform(keypoints)) + rng.normal(0.0, 1.0, (9, 2))
            outliers = pixels.copy()
            bad = rng.choice(9, 2, replace=False)
            outliers[bad] += rng.uniform(30, 100, (2, 2)) * rng.choice([-1, 1], (2, 2))
            problems.append((pixels, outliers, rng.uniform(0.3, 1.0, 9)))
        for name in cases:
            times, successes = [], 0
            for pixels, outliers, weights in problems:
                start = time.perf_counter()
                if name == 'clean':
                    result = solve_pnp(keypoints, pixels, camera)
                elif name == 'weighted':
                    result = solve_pnp(keypoints, pixels, camera, weights=weights)
                else:
                    result = solve_pnp(keypoints, outliers, camera)
                times.append(time.perf_counter() - start)
                successes += result.success
            times_us = np.asarray(times[len(times) // 10:]) * 1e6  # first 10% are warm-up
            cases[name] = {
                'us_per_solve_median': round(float(np.median(times_us)), 1),
                'us_per_solve_mean': round(float(times_us.mean()), 1),
                'us_per_solve_p95': round(float(np.percentile(times_us, 95)), 1),
                'success_rate': successes / len(problems),
            }
    finally:
        cv2.setNumThreads(previous_threads)
    return {
        'benchmark': 'pnp',
        'points': 9,
        'ransac': True,
        'refine': True,
        'threads': threads,
        'trials': trials,
        'target_us': 300,
        'cases': cases,
        'machine': machine_info(),
    }


# --- the model benchmark -----------------------------------------------------------------------


# Each timed path: up to `warmup` untimed frames, ending early (after one) once half the time
# budget is spent, then up to `frames` timed ones, ending early once `seconds` are spent after
# at least MIN_TIMED_FRAMES: a DOPE-sized reference at seconds a frame on a CPU then takes
# seconds, not minutes. The median shrugs off a slow first timed frame (torch.compile).
MIN_TIMED_FRAMES = 3


def bench_model(bundle_path, device='auto', size=(640, 480), frames=200, warmup=5, seed=0,
                compile_network=False, references=True, onnx=None, seconds=4.0, log=None):
    """Per-stage latency of a bundle's estimator, with two references measured in the same run.

    Frames are rendered views of the bundle's objects over procedural backgrounds when their
    meshes are there (random images otherwise). References: the same network in plain eager
    fp32 with no inference optimisation and post-processing in Python loops on the host (as
    most research code runs; reference_decode.py), and a DOPE-sized network (VGG-19 + six
    stages) with the same loops, so speed-ups are ratios measured in one run. Each path is
    timed for at most `frames` frames or `seconds` (MIN_TIMED_FRAMES); `log(line)`, when
    given, hears of each stage as it starts and ends.
    """
    device = select_device('cpu' if onnx and device in (None, 'auto') else device)
    threads = torch.get_num_threads()  # the estimators set their own (cpus.py): restored after
    budget = {'frames': frames, 'warmup': warmup, 'seconds': seconds}
    try:
        return _bench_model(load_bundle(bundle_path), bundle_path, device, size, budget, seed,
                            compile_network, references, onnx, log or _silent)
    finally:
        torch.set_num_threads(threads)


def _bench_model(bundle, bundle_path, device, size, budget, seed, compile_network,
                 references, onnx, log):
    width, height = size
    frames = budget['frames']
    camera = default_camera(width, height)
    start = time.perf_counter()
    images, source = _bench_frames(bundle.objects, camera, min(frames, 32), seed)
    log(f'bench: {len(images)} frames of {width}x{height} ({source}) in '
        f'{time.perf_counter() - start:.1f} s')

    def timed(name, estimator, per_stage=True):
        log(f'bench: timing {name}: up to {frames} frames or {budget["seconds"]:g} s '
            f'after {budget["warmup"]} warm-up frames')
        start = time.perf_counter()
        result = _time_estimator(estimator, images, camera, budget, device, per_stage)
        log(f'bench: {name}: {result["fps"]} fps ({result["frames"]} frames timed, '
            f'{time.perf_counter() - start:.1f} s)')
        return result

    def bundle_method():
        return get_method(bundle.method, len(bundle.objects), bundle.card['network'],
                          bundle.card.get('decoder'))

    def make(config, network=None, method=None):
        method = method or bundle_method()
        return Estimator(network if network is not None else bundle.build_network(), method,
                         bundle.objects, bundle.input_size, bundle.card['normalisation'],
                         device=device, config=config)

    if onnx:  # --compile then applies to reference_pytorch
        ours = Estimator.from_bundle(bundle_path, device, EstimatorConfig(profile=True, onnx=onnx))
    else:
        ours = make(EstimatorConfig(profile=True, compile=compile_network))
    report = {
        'benchmark': 'model', 'bundle': str(bundle_path), 'method': bundle.method,
        'classes': len(bundle.objects), 'input_size': list(bundle.input_size),
        'image_size': [width, height], 'frames': frames, 'warmup': budget['warmup'],
        'seconds': budget['seconds'], 'device': device,
        'device_name': (torch.cuda.get_device_name(device) if device.startswith('cuda')
                        else f'{torch.get_num_threads()} CPU threads'),
        'frame_source': source, 'compile': compile_network and not onnx,
        'backend': ours.backend,
        'onnx': str(onnx) if onnx else None,
    }
    report['ours'] = timed(f'ours ({ours.backend})', ours)
    network_median = report['ours']['stages_ms']['network']['median']
    total_median = report['ours']['stages_ms']['total']['median']
    report['end_to_end_over_network'] = round(total_median / network_median, 3)
    if references and onnx:  # what the ONNX file gains over our own PyTorch path
        pytorch = make(EstimatorConfig(profile=True, compile=compile_network))
        report['reference_pytorch'] = {'compile': compile_network, **timed(
            'our PyTorch path', pytorch, per_stage=False)}
        report['speedup_over_pytorch'] = round(
            report['reference_pytorch']['total_ms_median'] / total_median, 2)
    if references:
        eager = make(EstimatorConfig(profile=True, amp=False, optimize=False),
                     method=PythonDecoding(bundle_method()))
        report['reference_eager_fp32'] = timed('the eager fp32 reference', eager,
                                               per_stage=False)
        dope_method = get_method('keypoints', len(bundle.objects),
                                 decoder={'stride': 8, **{k: v for k, v in vars(
                                     CodecConfig()).items() if k != 'stride'}})
        dope = make(EstimatorConfig(profile=True, amp=False, optimize=False),
                    DopeNet(num_classes=len(bundle.objects)), PythonDecoding(dope_method))
        report['reference_dope'] = timed('the DOPE-sized reference', dope, per_stage=False)
        report['speedup_over_eager_fp32'] = round(
            report['reference_eager_fp32']['total_ms_median'] / total_median, 2)
        report['speedup_over_dope'] = round(
            report['reference_dope']['total_ms_median'] / total_median, 2)
    report['peak_cpu_memory_mb'] = _peak_rss_mb()
    report['machine'] = machine_info()
    return report


def _time_estimator(estimator, images, camera, budget, device, per_stage=True):
    """Warm-up, then per-stage timings of frames, within `budget` (see MIN_TIMED_FRAMES)."""
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats(device)
    seconds = budget['seconds']
    warmed = 0
    start = time.perf_counter()
    while warmed < budget['warmup'] and (warmed == 0
                                         or time.perf_counter() - start < seconds / 2):
        estimator(images[warmed % len(images)], camera)
        warmed += 1
    stages = {k: [] for k in ('preprocess', 'network', 'decode', 'pnp', 'total')}
    detections, timed = 0, 0
    start = time.perf_counter()
    while timed < budget['frames'] and (timed < MIN_TIMED_FRAMES
                                        or time.perf_counter() - start < seconds):
        detections += len(estimator(images[(warmed + timed) % len(images)], camera))
        timed += 1
        for key in stages:
            stages[key].append(estimator.timings[key] * 1e3)
    summary = {k: _stats(v) for k, v in stages.items()}
    out = {'fps': round(1e3 / summary['total']['median'], 2), 'frames': timed,
           'warmup_frames': warmed,
           'total_ms_median': summary['total']['median'],
           'network_ms_median': summary['network']['median'],
           'decode_ms_median': summary['decode']['median'],
           'detections_per_frame': round(detections / timed, 2)}
    if per_stage:
        out['stages_ms'] = summary
    if device.startswith('cuda'):
        out['peak_gpu_memory_mb'] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
    return out


def _silent(_line):
    """No progress lines (the default of bench_model)."""


def _stats(values_ms):
    values = np.asarray(values_ms)
    return {'min': round(float(values.min()), 3), 'median': round(float(np.median(values)), 3),
            'p95': round(float(np.percentile(values, 95)), 3)}


def _bench_frames(objects, camera, count, seed):
    """Rendered frames of the objects when their meshes load and GL works; else random ones."""
    rng = np.random.default_rng(seed)
    try:
        frames = render_frames(objects, camera, count, seed)
        return [image for image, _labels in frames], 'rendered objects'
    except Exception as exc:  # no meshes in the bundle, or no OpenGL: time random images
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        frames = [rng.integers(0, 256, (camera.height, camera.width, 3), dtype=np.uint8)
                  for _ in range(count)]
        return frames, f'random images ({reason})'


def _peak_rss_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def format_bench(report):
    """A short human-readable summary, followed by the JSON report."""
    ours = report['ours']
    lines = [f'{report["method"]} model, input {report["input_size"][0]}x'
             f'{report["input_size"][1]}, images {report["image_size"][0]}x'
             f'{report["image_size"][1]}, {report["device"]} ({report["device_name"]}), '
             f'frames: {report["frame_source"]}',
             f'  ours ({report.get("backend", "pytorch")}): {ours["fps"]} fps end to end '
             f'({ours["frames"]} frames); '
             'median ms per stage: ' + ', '.join(
                 f'{k} {v["median"]}' for k, v in ours['stages_ms'].items()),
             f'  end-to-end / network-only: {report["end_to_end_over_network"]}']
    if 'reference_pytorch' in report:
        lines.append(f'  our PyTorch path: {report["reference_pytorch"]["fps"]} fps (the ONNX '
                     f'model is {report["speedup_over_pytorch"]}x)')
    if 'reference_eager_fp32' in report:
        lines.append(f'  eager fp32 reference: {report["reference_eager_fp32"]["fps"]} fps '
                     f'(ours is {report["speedup_over_eager_fp32"]}x)')
        lines.append(f'  DOPE-sized reference: {report["reference_dope"]["fps"]} fps '
                     f'(ours is {report["speedup_over_dope"]}x)')
    return '\n'.join(lines) + '\n' + json.dumps(report, indent=2)


def parameter_counts(classes=(1, 8), flops=False, fps=False, seconds=3.0, log=None):
    """Parameters (and GFLOPs, and CPU fps) of both networks on each backbone, with the papers'.

    HRPose at its 640x480 input, the corners network at Zhang et al.'s 448x448. fps: time
    each network's forward pass (BatchNorm folded, as the estimator runs it) for the largest
    class count, on this machine's CPU, `seconds` each (at least 3 passes after one warm-up).
    """
    report = {'keypoints': parameter_report(tuple(classes), (640, 480), flops=flops),
              'paper_hrpose_table_3': {
                  'teacher': 9.7e6, 'student': 4.2e6, 'teacher_gflops': 23.2,
                  'note': 'the paper counts a multiply-add as one operation, gflops here as '
                          'two: its 23.2 G is our 23.8 G multiply-adds at 640x480'},
              'corners': {}}
    if flops:
        report['corners_gflops_448'] = {}
    for name, network in CORNERS_BACKBONES:
        models = {n: CornersNet(CornersConfig(num_classes=n, **network)) for n in classes}
        report['corners'][name] = {n: count_parameters(m) for n, m in models.items()}
        if flops:
            report['corners_gflops_448'][name] = {
                n: count_flops(m.to('meta'), 448, 448) / 1e9 for n, m in models.items()}
    if fps:
        report['cpu_network_fps'] = network_fps(max(classes), seconds, log or (lambda _: None))
    return report


# The corners network's backbones as `bench params` names them, with their network configs.
CORNERS_BACKBONES = (('resnet18_h', {'depth': 18}), ('resnet50_h', {'depth': 50}),
                     ('efficientnet_lite0_h', {'backbone': 'efficientnet_lite0'}))


def papers_networks(classes):
    """(name, network, (width, height)) of each network and backbone at its paper's input."""
    backbones = (('teacher', TEACHER_BACKBONE), ('student', STUDENT_BACKBONE),
                 ('lite0', 'efficientnet_lite0'))
    networks = [(f'keypoints_{role}', HRPose(HRPoseConfig(backbone=name, num_classes=classes)),
                 (640, 480)) for role, name in backbones]
    return networks + [(f'corners_{name}',
                        CornersNet(CornersConfig(num_classes=classes, **network)), (448, 448))
                       for name, network in CORNERS_BACKBONES]


def network_fps(classes, seconds=3.0, log=print, networks=None):
    """{network: {input, ms, fps, passes}}: each network's forward pass on the CPU.

    Untrained weights (the time does not depend on them), BatchNorm folded, one image.

    networks: (name, module, (width, height)) triples; default `papers_networks(classes)`.
    """
    networks = papers_networks(classes) if networks is None else networks
    report = {}
    for name, model, (width, height) in networks:
        image = torch.rand(1, 3, height, width)
        model = fuse_conv_bn(model.eval(), image)
        times = []
        with torch.inference_mode():
            model(image)  # warm-up
            started = time.perf_counter()
            while len(times) < 3 or time.perf_counter() - started < seconds:
                start = time.perf_counter()
                model(image)
                times.append(time.perf_counter() - start)
        ms = 1000.0 * float(np.median(times))
        report[name] = {'input': [width, height], 'ms': round(ms, 2),
                        'fps': round(1000.0 / ms, 2), 'passes': len(times)}
        log(f'bench: {name} at {width}x{height}: {ms:.1f} ms ({1000.0 / ms:.2f} fps)')
    return report
