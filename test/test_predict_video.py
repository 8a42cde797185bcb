"""`pose6d predict --video`: the bundled model on a rendered video of the demo box.

The test renders a short sequence of the demo box (tools/demo.py), writes it as the video a
user would record (MJPG in AVI), with the rendering camera's calibration as the ROS YAML, and
runs the command on it.
"""

import json

import cv2
import numpy as np
import pytest

from pose6d_ros.core.geometry.calibration import ros_calibration_yaml
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.inference.bundle import default_model
from pose6d_ros.tools import cli

WIDTH, HEIGHT = 320, 240   # the bundled model's input size
FRAMES = 6


@pytest.fixture(scope='module')
def recording(tmp_path_factory):
    """(video path, calibration path, true poses T_cam_obj) of the rendered demo box."""
    from pose6d_ros.core.inference.estimator import Estimator
    from pose6d_ros.tools.demo import render_sequence

    objects = Estimator.from_bundle(default_model(), device='cpu').objects
    camera = CameraModel.from_intrinsics(286.0, 286.0, (WIDTH - 1) / 2, (HEIGHT - 1) / 2,
                                         WIDTH, HEIGHT)
    try:
        sequence = render_sequence(objects, camera, FRAMES, seed=5, occluded_share=0.0)
    except Exception as exc:  # no OpenGL context on this machine
        pytest.skip(f'cannot render the demo box here: {exc}')
    folder = tmp_path_factory.mktemp('recording')
    video = folder / 'demo_box.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 5.0, (WIDTH, HEIGHT))
    assert writer.isOpened(), 'this OpenCV cannot write MJPG AVI files'
    for image, _truth, _visible in sequence:
        writer.write(np.ascontiguousarray(image[:, :, ::-1]))
    writer.release()
    calibration = folder / 'camera.yaml'
    calibration.write_text(ros_calibration_yaml(camera, 'render'))
    return video, calibration, [truth for _image, truth, _visible in sequence]


def read_video(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames, capture.get(cv2.CAP_PROP_FPS)
        frames.append(frame)


def test_predict_video_writes_an_annotated_video_and_the_poses(recording, tmp_path, capsys):
    video, calibration, truths = recording
    out, poses = tmp_path / 'overlay.mp4', tmp_path / 'poses.json'
    args = ['predict', '--model', str(default_model()), '--video', str(video), '--camera',
            str(calibration), '--out', str(out), '--json', str(poses), '--device', 'cpu']
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert 'warning' not in captured.err
    assert f'{FRAMES} frames, ' in captured.out
    written, fps = read_video(out)
    assert len(written) == FRAMES and written[0].shape == (HEIGHT, WIDTH, 3)
    assert fps == pytest.approx(5.0)
    source, _ = read_video(video)
    # the overlay is drawn: the frames differ from the input where the boxes are
    assert all(np.abs(a.astype(int) - b.astype(int)).max() > 100 for a, b in zip(written, source))
    document = json.loads(poses.read_text())
    assert [r['frame'] for r in document['frames']] == list(range(FRAMES))
    assert CameraModel.from_dict(document['camera']) == CameraModel.load(calibration)
    errors = []
    for record, truth in zip(document['frames'], truths):
        found = [p for p in record['poses'] if p['object_name'] == 'demo_box']
        if found:
            errors.append(np.linalg.norm(np.subtract(found[0]['t'], truth.t)))
    assert len(errors) >= FRAMES - 1, document['frames']
    assert np.median(errors) < 0.02           # metres: the box is found where it was rendered

    assert cli.main(args) == 1                 # no overwrite without --force
    assert 'already exists' in capsys.readouterr().err
    assert cli.main(args + ['--force', '--max-frames', '2']) == 0
    assert len(read_video(out)[0]) == 2


def test_predict_video_of_an_uncalibrated_camera_warns_about_distances(recording, tmp_path,
                                                                       capsys):
    video, _calibration, _ = recording
    out = tmp_path / 'overlay.avi'
    assert cli.main(['predict', '--model', str(default_model()), '--video', str(video),
                     '--field-of-view', '58', '--out', str(out), '--max-frames', '1',
                     '--device', 'cpu']) == 0
    err = capsys.readouterr().err
    assert 'field of view of 58 degrees' in err and 'distances will be off' in err
    assert len(read_video(out)[0]) == 1


def test_predict_video_refuses_bad_outputs_and_cameras(recording, tmp_path, capsys):
    video, _calibration, _ = recording
    base = ['predict', '--model', str(default_model()), '--video', str(video), '--device',
            'cpu']
    assert cli.main(base + ['--out', str(tmp_path / 'overlay.gif')]) == 1
    assert '.mp4' in capsys.readouterr().err
    other = tmp_path / 'other.yaml'
    other.write_text(ros_calibration_yaml(
        CameraModel.from_intrinsics(500.0, 500.0, 319.5, 239.5, 640, 480), 'other'))
    assert cli.main(base + ['--camera', str(other), '--out', str(tmp_path / 'o.mp4')]) == 1
    err = capsys.readouterr().err
    assert 'is 320x240 but the camera is 640x480' in err and err.count('\n') == 1
    assert cli.main(base[:4] + [str(tmp_path / 'missing.mp4'), '--out',
                                str(tmp_path / 'o.mp4')]) == 1
    assert 'not found' in capsys.readouterr().err
    assert not list(tmp_path.glob('*.mp4')) and not list(tmp_path.glob('.*tmp*'))
