"""What /diagnostics says (health.py): dropped frames, a missing stream, inactive, bad frames."""

import pytest

from pose6d_ros.ros.health import assess, FrameCounts


def counts(images=0, infos=0, paired=0, frames=0, dropped=0, bad=0, problem=''):
    result = FrameCounts(since=0.0)
    result.images, result.infos, result.paired = images, infos, paired
    result.dropped, result.bad, result.last_problem = dropped, bad, problem
    for _ in range(frames):
        result.add(0.04, 0.06, 0.03)
    return result


def test_dropping_a_fifth_of_30_hz_warns_with_both_rates():
    # 30 Hz in, the node processing 24 of them: about 19% dropped, as seen on a real ROS 2.
    status = assess(counts(30, 30, 30, 24, dropped=6), 1.0, drop_warning=0.1)
    assert status.level == 'WARN'
    assert '20% of the frames dropped' in status.message
    assert 'input 30.0 Hz' in status.message and 'processed 24.0 Hz' in status.message
    assert status.values['dropped share'] == '20%' and status.values['input rate (Hz)'] == '30.00'
    assert status.warning is None      # diagnostics only: a slow CPU would log it forever
    assert assess(counts(30, 30, 30, 24, dropped=6), 1.0, drop_warning=0.25).level == 'OK'
    assert assess(counts(30, 30, 30, 24, dropped=6), 1.0, drop_warning=1.0).level == 'OK'


def test_images_without_camera_info_and_the_reverse_are_said_and_logged():
    status = assess(counts(images=15), 0.5)
    assert status.level == 'WARN' and 'images arrive (30.0 Hz) but no camera_info' in \
        status.message
    assert status.warning == ('no_camera_info', status.message)
    status = assess(counts(infos=10), 1.0)
    assert status.level == 'WARN' and 'camera_info arrives (10.0 Hz) but no images' in \
        status.message
    assert status.warning[0] == 'no_images'
    status = assess(counts(images=10, infos=10), 1.0)
    assert 'never pair' in status.message and 'sync_slop' in status.message
    assert status.warning[0] == 'unpaired'


def test_nothing_arriving_is_stale_and_a_good_period_is_ok():
    assert assess(counts(), 1.0).level == 'STALE'
    status = assess(counts(10, 10, 10, 10), 2.0)
    assert status.level == 'OK' and status.message == 'ok: 5.0 of 5.0 frames/s processed'
    assert status.values['processing (ms)'] == '40.0'


def test_bad_frames_are_reported_with_the_last_problem():
    status = assess(counts(5, 5, 5, 3, bad=2, problem='camera K is all zeros'), 1.0)
    assert status.level == 'WARN' and status.message == \
        '2 bad frame(s): camera K is all zeros'


def test_an_inactive_node_says_so():
    status = assess(counts(images=5), 1.0, active=False)
    assert status.level == 'OK' and status.message.startswith('inactive')
    assert status.warning is None


def test_counts_average_the_processed_frames():
    c = counts(frames=4)
    assert c.mean('inference') == pytest.approx(0.03) and counts().mean('age') == 0.0
