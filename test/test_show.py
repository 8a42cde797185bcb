"""`pose6d show`: a contact sheet of a dataset's ground truth, and its bad-input messages."""

import json
import shutil

import cv2
import numpy as np
import pytest

from pose6d_ros.core.data.bop import BopDataset
from pose6d_ros.core.geometry.draw import draw_outline
from pose6d_ros.core.geometry.poses import BOX_EDGES, Pose
from pose6d_ros.tools import cli, show


def read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_the_sheet_draws_the_ground_truth_on_a_grid_of_images(tiny_dataset, dataset, tmp_path):
    summary = show.show_dataset(tiny_dataset, tmp_path / 'sheet.png')
    sheet = read_rgb(tmp_path / 'sheet.png')

    # 12 of the 24 images, evenly spread; 96x72 images become 320x240 tiles, 4 to a row.
    assert [image for _scene, image, _box in summary['tiles']] == list(range(0, 24, 2))
    assert (summary['columns'], summary['rows']) == (4, 3)
    tile_h = 240 + show.CAPTION_HEIGHT
    assert sheet.shape == (3 * tile_h + 4 * show.GAP, 4 * 320 + 5 * show.GAP, 3)

    # The box of image 2's instance, projected with its camera, is drawn on its tile.
    scene_id, image_id, (x, y, w, h) = summary['tiles'][1]
    sample = next(s for s in dataset if (s.scene_id, s.image_id) == (scene_id, image_id))
    (annotation,) = sample.annotations
    raw = show.scaled_image(sample.load_image())
    tile = sheet[y:y + h, x:x + w]
    assert tile.shape == raw.shape == (240, 320, 3)
    camera = sample.camera.resized(w, h)
    corners = camera.project(Pose(annotation.R, annotation.t).transform(
        dataset.object_set.by_id(annotation.object_id).keypoints[:8]))
    changed = np.abs(tile.astype(int) - raw.astype(int)).max(axis=2) > 30
    on_edges = [changed[int(round(py)), int(round(px))]
                for a, b in BOX_EDGES for s in (0.25, 0.5, 0.75)
                for px, py in [corners[a] + s * (corners[b] - corners[a])]
                if 0 <= px < w - 0.5 and 0 <= py < h - 0.5]
    assert len(on_edges) >= 18 and np.mean(on_edges) > 0.8
    assert changed.mean() < 0.2  # the rest is the image itself


def test_an_image_without_instances_still_appears(tiny_dataset, tmp_path):
    data = tmp_path / 'data'
    shutil.copytree(tiny_dataset, data)
    scene = data / 'train' / '000000'
    for name in ('scene_gt.json', 'scene_gt_info.json'):
        entries = json.loads((scene / name).read_text())
        entries['0'] = []  # image 0 holds none of the objects
        (scene / name).write_text(json.dumps(entries))

    summary = show.show_dataset(data, tmp_path / 'sheet.png', images=3)
    scene_id, image_id, (x, y, w, h) = summary['tiles'][0]
    assert (scene_id, image_id) == (0, 0)
    raw = show.scaled_image(BopDataset(data)[0].load_image())
    tile = read_rgb(tmp_path / 'sheet.png')[y:y + h, x:x + w]
    np.testing.assert_array_equal(tile, raw)  # drawn as it is, nothing on it


def test_the_command_prints_the_sheet_and_picks_by_seed(tiny_dataset, tmp_path, capsys):
    out = tmp_path / 'nested' / 'sheet.png'
    assert cli.main(['show', '--data', str(tiny_dataset), '--out', str(out), '--images', '5',
                     '--seed', '4']) == 0
    assert str(out) in capsys.readouterr().out
    assert read_rgb(out).shape[1] == 4 * 320 + 5 * show.GAP
    assert sorted(p.name for p in out.parent.iterdir()) == ['sheet.png']  # no temporary file
    assert show.pick(24, 5, seed=4) == show.pick(24, 5, seed=4) != show.pick(24, 5)
    assert show.pick(24, 4) == [0, 6, 12, 18]
    assert show.pick(3, 12) == [0, 1, 2]


def test_the_visible_mask_outline_follows_the_mask_at_any_scale():
    mask = np.zeros((20, 30), bool)
    mask[5:15, 10:20] = True
    image = np.zeros((40, 60, 3), np.uint8)
    draw_outline(image, mask, (255, 0, 0))
    drawn = image[:, :, 0] > 100
    assert drawn[20, 20] and drawn[20, 38] and drawn[10, 30] and drawn[28, 30]  # the border
    assert not drawn[20, 30] and not drawn[2, 2]  # not inside, not outside


@pytest.mark.parametrize('case, expected', [
    ('missing', 'not found; expected a BOP-format dataset folder'),
    ('not_bop', 'no scene_gt.json anywhere in'),
    ('exists', 'exists; pass --force to replace it'),
    ('zero', '--images 0: expected a positive number of images'),
    ('negative', '--images -2: expected a positive number of images'),
    ('scene', 'scene 7 is not in'),
    ('not_png', 'expected a .png file'),
])
def test_bad_input_is_one_line_and_writes_nothing(tiny_dataset, tmp_path, capsys, case,
                                                  expected):
    out = tmp_path / 'out' / 'sheet.png'
    data, extra = tiny_dataset, []
    if case == 'missing':
        data = tmp_path / 'no_such_dataset'
    elif case == 'not_bop':
        data = tmp_path / 'photos'
        data.mkdir()
        (data / 'cat.jpg').write_bytes(b'not a dataset')
    elif case == 'exists':
        out.parent.mkdir()
        out.write_bytes(b'an earlier sheet')
    elif case in ('zero', 'negative'):
        extra = ['--images', {'zero': '0', 'negative': '-2'}[case]]
    elif case == 'scene':
        extra = ['--scene', '7']
    elif case == 'not_png':
        out = out.with_suffix('.jpg')
    status = cli.main(['show', '--data', str(data), '--out', str(out), *extra])
    assert status != 0
    err = capsys.readouterr().err
    assert err.startswith('pose6d: error: ') and err.count('\n') == 1
    assert expected in err
    if case == 'exists':
        assert out.read_bytes() == b'an earlier sheet'
        assert sorted(p.name for p in out.parent.iterdir()) == ['sheet.png']
    else:
        assert not out.parent.exists()
