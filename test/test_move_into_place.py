"""Outputs are moved into place whole: the earlier output goes only once the new one is in."""

import pytest

from pose6d_ros.core.files import move_into_place


def test_a_folder_replaces_the_earlier_folder(tmp_path):
    out, staging = tmp_path / 'out', tmp_path / '.out.partial'
    out.mkdir()
    (out / 'old.txt').write_text('old')
    staging.mkdir()
    (staging / 'new.txt').write_text('new')
    move_into_place(staging, out)
    assert sorted(p.name for p in out.iterdir()) == ['new.txt']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out']   # nothing set aside is left


def test_a_file_replaces_the_earlier_file_or_link(tmp_path):
    out, staging = tmp_path / 'run.mcap', tmp_path / 'built.mcap'
    target = tmp_path / 'elsewhere.mcap'
    target.write_text('keep me')
    out.symlink_to(target)
    staging.write_text('new')
    move_into_place(staging, out)
    assert not out.is_symlink() and out.read_text() == 'new'
    assert target.read_text() == 'keep me'   # the link is replaced, not what it pointed to
    assert sorted(p.name for p in tmp_path.iterdir()) == ['elsewhere.mcap', 'run.mcap']


def test_a_failed_move_puts_the_earlier_output_back(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'old.txt').write_text('old')
    with pytest.raises(FileNotFoundError):
        move_into_place(tmp_path / 'missing', out)
    assert (out / 'old.txt').read_text() == 'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out']
