"""BOP dataset reader and writer: round trip, real-BOP (mm) folders, resume, clear errors."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pose6d_ros.core.data.bop import Annotation, BopDataset, BopWriter
from pose6d_ros.core.errors import DatasetError, Pose6dError
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.objects import ObjectModel, ObjectSet, Symmetries
from pose6d_ros.core.geometry.poses import box_keypoints, random_rotation

W, H = 32, 24
FLIP_Z = np.diag([-1.0, -1.0, 1.0, 1.0])  # rotation by pi about z


def _object_set():
    box = box_keypoints([-0.02, -0.03, -0.01], [0.02, 0.03, 0.04])
    flip = FLIP_Z.copy()
    flip[:3, 3] = [0.0, 0.0, 0.002]
    return ObjectSet([
        ObjectModel('ape', 1, box, 0.07),
        ObjectModel('eggbox', 5, box * 0.5, 0.035, Symmetries(discrete=(flip,))),
        ObjectModel('glue', 6, box, 0.07, Symmetries(continuous=((np.array([0.0, 0.0, 1.0]),
                                                                  np.zeros(3)),))),
    ])


def _camera():
    return CameraModel([[30.25, 0.0, 15.75], [0.0, 31.5, 11.25], [0.0, 0.0, 1.0]],
                       width=W, height=H)


def _rect(x0, y0, x1, y1):
    """Bool mask with pixels x0..x1-1, y0..y1-1 set."""
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _smooth_image():
    """Smooth image with distinct channels (survives JPEG, shows a swapped channel order)."""
    x = np.linspace(0, 1, W)[None, :]
    y = np.linspace(0, 1, H)[:, None]
    channels = [200 + 40 * x + 0 * y, 60 + 100 * y + 0 * x, 20 + 50 * (x + y)]
    return np.clip(np.stack(channels, axis=2), 0, 255).astype(np.uint8)


def _frame(rng, tag):
    """An image and two annotations whose translation encodes `tag` (to find them back)."""
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    annotations = [Annotation(1, random_rotation(rng), [0.01, -0.02, 0.5 + 0.001 * tag]),
                   Annotation(5, random_rotation(rng), [-0.03, 0.01, 0.7 + 0.001 * tag])]
    masks = [_rect(2, 3, 10, 9), _rect(12, 5, 20, 20)]
    return image, annotations, masks


# --- writer -> reader round trip --------------------------------------------------------------


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    objects = _object_set()
    camera = _camera()
    frames = []
    with BopWriter(tmp_path, 'train_pbr', scene_id=3, objects=objects) as writer:
        for tag in range(3):
            image, annotations, masks = _frame(rng, tag)
            # full silhouette of the second object is larger than its visible part
            full_boxes = [(2, 3, 9, 8), (10.2, 4.6, 22.4, 19)]
            image_id = writer.add(image, camera, annotations, masks,
                                  full_pixel_counts=[48, 240], full_boxes=full_boxes)
            assert image_id == tag
            frames.append((image, annotations, masks))

    dataset = BopDataset(tmp_path)
    assert (dataset.split, dataset.scenes, len(dataset)) == ('train_pbr', [3], 3)
    assert sorted(obj.object_id for obj in dataset.object_set) == [1, 5, 6]
    for sample, (image, annotations, masks) in zip(dataset, frames):
        assert sample.image_path.name == f'{sample.image_id:06d}.png'
        np.testing.assert_allclose(sample.camera.K, camera.K)
        assert sample.camera.size == (W, H)
        np.testing.assert_array_equal(sample.load_image(), image)
        assert [a.object_id for a in sample.annotations] == [1, 5]
        for index, (got, want) in enumerate(zip(sample.annotations, annotations)):
            np.testing.assert_allclose(got.R, want.R, atol=1e-6)
            np.testing.assert_allclose(got.t, want.t, atol=1e-6)
            np.testing.assert_array_equal(sample.load_mask(index), masks[index])
        first, second = sample.annotations
        assert first.visib_fract == pytest.approx(1.0)
        assert second.visib_fract == pytest.approx(8 * 15 / 240, abs=1e-6)
        np.testing.assert_array_equal(first.box, [2, 3, 9, 8])    # pixel centres of the mask
        np.testing.assert_array_equal(second.box, [12, 5, 19, 19])
        np.testing.assert_array_equal(second.box_full, [10, 5, 22, 19])  # rounded to pixels

    # the files follow BOP: mm, [x, y, w, h] with w = x_max - x_min, counts
    scene = tmp_path / 'train_pbr' / '000003'
    info = json.loads((scene / 'scene_gt_info.json').read_text())['0'][1]
    assert info == {'bbox_obj': [10, 5, 12, 14], 'bbox_visib': [12, 5, 7, 14],
                    'px_count_all': 240, 'px_count_valid': 240, 'px_count_visib': 120,
                    'visib_fract': 0.5}
    gt = json.loads((scene / 'scene_gt.json').read_text())['2'][0]
    np.testing.assert_allclose(gt['cam_t_m2c'], [10.0, -20.0, 502.0])
    models_info = json.loads((tmp_path / 'models' / 'models_info.json').read_text())
    assert models_info['1']['diameter'] == pytest.approx(70.0)
    assert models_info['1']['min_y'] == pytest.approx(-30.0)
    assert models_info['5']['symmetries_discrete'][0][11] == pytest.approx(2.0)  # t_z, mm
    assert models_info['6']['symmetries_continuous'] == [{'axis': [0, 0, 1],
                                                          'offset': [0, 0, 0]}]
    eggbox = dataset.object_set.by_id(5)
    np.testing.assert_allclose(eggbox.symmetries.discrete[0][:3, 3], [0, 0, 0.002])
    np.testing.assert_allclose(eggbox.keypoints, objects.by_id(5).keypoints, atol=1e-9)
    assert dataset.object_set.by_id(6).uses_add_s


def test_writer_full_masks_jpg_and_visib_fract(tmp_path):
    rng = np.random.default_rng(1)
    _, annotations, masks = _frame(rng, 0)
    image = _smooth_image()
    full = [_rect(2, 3, 10, 9), _rect(8, 2, 24, 22)]
    annotations[0].visib_fract = 0.25  # ignored: full masks give the counts
    with BopWriter(tmp_path, 'train', image_ext='jpg') as writer:
        writer.add(image, _camera(), annotations, masks, full_masks=full)
        annotations[1].visib_fract = 0.5  # used: no full counts, masks or boxes
        writer.add(image, _camera(), annotations[1:], masks[1:])
    first, second = BopDataset(tmp_path / 'train')  # a split folder as root
    assert first.image_path.suffix == '.jpg'
    assert np.abs(first.load_image().astype(int) - image).max() < 12  # lossy, same colours
    assert first.annotations[1].visib_fract == pytest.approx(120 / 320)
    np.testing.assert_array_equal(first.annotations[1].box_full, [8, 2, 23, 21])
    assert (tmp_path / 'train' / '000000' / 'mask' / '000000_000001.png').is_file()
    assert second.annotations[0].visib_fract == pytest.approx(0.5)
    np.testing.assert_array_equal(second.annotations[0].box_full, second.annotations[0].box)


# --- a real BOP folder (LM-O like, millimetres) -----------------------------------------------

R_1 = np.round(Rotation.from_rotvec([0.1, -0.2, 0.3]).as_matrix(), 8)
R_10 = np.round(Rotation.from_rotvec([-1.0, 0.5, 2.0]).as_matrix(), 8)
K_3 = [30.0, 0.0, 16.0, 0.0, 30.5, 12.0, 0.0, 0.0, 1.0]
K_7 = [28.0, 0.0, 15.5, 0.0, 28.0, 11.5, 0.0, 0.0, 1.0]
BOX_MM = {'min_x': -37.9343, 'min_y': -38.7996, 'min_z': -45.8845,
          'size_x': 75.8686, 'size_y': 77.5992, 'size_z': 91.769}


def _write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _image(seed):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _write_lmo(root, camera_json=False):
    """Dataset folder with test/000002: image 3 (PNG, objects 1 and 10), image 7 (JPG)."""
    scene = root / 'test' / '000002'
    (scene / 'rgb').mkdir(parents=True)
    (scene / 'mask_visib').mkdir()
    cv2.imwrite(str(scene / 'rgb' / '000003.png'), _image(3)[..., ::-1])  # OpenCV takes BGR
    cv2.imwrite(str(scene / 'rgb' / '000007.jpg'), _smooth_image()[..., ::-1])
    cv2.imwrite(str(scene / 'mask_visib' / '000003_000000.png'),
                _rect(4, 3, 13, 12).astype(np.uint8) * 255)
    eggbox = dict(BOX_MM, diameter=169.0, symmetries_discrete=[
        [-1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]])
    _write_json(root / 'models' / 'models_info.json',
                {'1': dict(BOX_MM, diameter=102.099), '10': eggbox})
    if camera_json:
        _write_json(root / 'camera.json', {'cx': 16.0, 'cy': 12.0, 'depth_scale': 1.0,
                                           'fx': 30.0, 'fy': 30.5, 'height': H, 'width': W})
    _write_json(scene / 'scene_gt.json', {
        '3': [{'cam_R_m2c': R_1.ravel().tolist(), 'cam_t_m2c': [12.3456789, -45.678901, 987.6543],
               'obj_id': 1},
              {'cam_R_m2c': R_10.ravel().tolist(), 'cam_t_m2c': [-101.5, 20.25, 1100.0],
               'obj_id': 10}],
        '7': [{'cam_R_m2c': R_10.ravel().tolist(), 'cam_t_m2c': [5.0, 6.0, 800.0],
               'obj_id': 10}]})
    _write_json(scene / 'scene_camera.json', {'3': {'cam_K': K_3, 'depth_scale': 1.0},
                                              '7': {'cam_K': K_7, 'depth_scale': 0.1}})
    _write_json(scene / 'scene_gt_info.json', {
        '3': [{'bbox_obj': [2, 3, 10, 8], 'bbox_visib': [4, 3, 8, 8], 'px_count_all': 90,
               'px_count_valid': 88, 'px_count_visib': 81, 'visib_fract': 0.9},
              {'bbox_obj': [20, 1, 11, 13], 'bbox_visib': [-1, -1, -1, -1], 'px_count_all': 140,
               'px_count_valid': 140, 'px_count_visib': 0, 'visib_fract': 0.0}],
        '7': [{'bbox_obj': [5, 5, 9, 9], 'bbox_visib': [5, 6, 9, 8], 'px_count_all': 100,
               'px_count_valid': 100, 'px_count_visib': 50, 'visib_fract': 0.5}]})
    return scene


@pytest.mark.parametrize('camera_json', [False, True])
def test_reads_bop_folder_in_metres(tmp_path, camera_json):
    scene = _write_lmo(tmp_path, camera_json)
    dataset = BopDataset(tmp_path)
    assert (dataset.split, dataset.scenes, len(dataset)) == ('test', [2], 2)
    first, second = dataset
    assert (first.scene_id, first.image_id, second.image_id) == (2, 3, 7)
    assert second.image_path == scene / 'rgb' / '000007.jpg'
    np.testing.assert_allclose(first.camera.K.ravel(), K_3)
    np.testing.assert_allclose(second.camera.K.ravel(), K_7)
    assert first.camera.size == second.camera.size == (W, H)
    assert (first.depth_scale, second.depth_scale) == (1.0, 0.1)

    ape, eggbox = first.annotations
    assert (ape.object_id, eggbox.object_id) == (1, 10)
    np.testing.assert_allclose(ape.R, R_1)
    np.testing.assert_allclose(ape.t, [0.0123456789, -0.045678901, 0.9876543], atol=1e-12)
    np.testing.assert_allclose(eggbox.t, [-0.1015, 0.02025, 1.1])
    np.testing.assert_array_equal(ape.box, [4, 3, 12, 11])
    np.testing.assert_array_equal(ape.box_full, [2, 3, 12, 11])
    assert ape.visib_fract == 0.9
    assert np.isnan(eggbox.box).all()  # BOP writes [-1, -1, -1, -1] for an invisible object
    np.testing.assert_array_equal(eggbox.box_full, [20, 1, 31, 14])
    np.testing.assert_array_equal(first.load_image(), _image(3))  # RGB order
    assert np.abs(second.load_image().astype(int) - _smooth_image()).max() < 12
    np.testing.assert_array_equal(first.load_mask(0), _rect(4, 3, 13, 12))
    with pytest.raises(DatasetError, match=r'image 3, annotation 1 \(object 10\) has no '
                                           r'visible mask'):
        first.load_mask(1)

    objects = dataset.object_set
    assert objects.by_id(1).diameter == pytest.approx(0.102099)
    np.testing.assert_allclose(objects.by_id(1).keypoints[0], [-0.0379343, -0.0387996, -0.0458845])
    assert objects.by_id(10).uses_add_s and not objects.by_id(1).uses_add_s

    # the split folder and the scene folder work as roots too
    assert len(BopDataset(tmp_path / 'test')) == 2
    assert len(BopDataset(scene)) == 2


def test_filters(tmp_path):
    _write_lmo(tmp_path)
    visible = BopDataset(tmp_path, min_visib_fract=0.1)
    assert [(s.image_id, [a.object_id for a in s.annotations]) for s in visible] == [
        (3, [1]), (7, [10])]
    assert [s.image_id for s in BopDataset(tmp_path, min_visib_fract=0.6)] == [3]
    eggboxes = BopDataset(tmp_path, split='test', object_ids=[10])
    assert [(s.image_id, len(s.annotations)) for s in eggboxes] == [(3, 1), (7, 1)]
    assert eggboxes[0].annotations[0].mask_path is None  # gt index 1 has no mask file
    assert len(BopDataset(tmp_path, object_ids=[10], min_visib_fract=0.6)) == 0
    with pytest.raises(DatasetError, match=r'object_ids 4 are not in .*models_info.json; '
                                           r'it has ids 1, 10'):
        BopDataset(tmp_path, object_ids=[1, 4])


def test_boxes_from_projection_without_gt_info(tmp_path):
    scene = _write_lmo(tmp_path)
    (scene / 'scene_gt_info.json').unlink()
    sample = BopDataset(tmp_path)[1]
    annotation = sample.annotations[0]
    assert annotation.visib_fract == 1.0 and annotation.box_full is None
    corners = BopDataset(tmp_path).object_set.by_id(10).keypoints[:8]
    pixels = sample.camera.project(corners @ annotation.R.T + annotation.t)
    expected = np.clip(np.r_[pixels.min(axis=0), pixels.max(axis=0)], 0, [W - 1, H - 1] * 2)
    np.testing.assert_allclose(annotation.box, expected)


# --- resume -----------------------------------------------------------------------------------


def _add(writer, rng, tag):
    image, annotations, masks = _frame(rng, tag)
    return writer.add(image, _camera(), annotations, masks, full_pixel_counts=[48, 120]), image


def test_resume_after_interruption(tmp_path):
    rng = np.random.default_rng(2)
    images = {}
    writer = BopWriter(tmp_path, objects=_object_set(), flush_every=2)
    for tag in range(5):
        image_id, images[tag] = _add(writer, rng, tag)
        assert image_id == tag
    # interrupted: image 4 is on disk but not in the json files (flushed after 2 and 4 images),
    # plus a half-written temporary file; no close()
    scene = tmp_path / 'train' / '000000'
    assert (scene / 'rgb' / '000004.png').is_file()
    assert sorted(json.loads((scene / 'scene_gt.json').read_text()), key=int) == list('0123')
    (scene / 'rgb' / '000005.png.999.tmp').write_bytes(b'\x89PNG half')
    del writer

    writer = BopWriter(tmp_path, objects=_object_set(), resume=True)
    assert writer.dropped_image_ids == [4]
    assert not (scene / 'rgb' / '000004.png').exists()
    assert not list((scene / 'mask_visib').glob('000004_*'))
    assert not list(scene.rglob('*.tmp'))
    assert writer.image_ids == [0, 1, 2, 3]
    for tag in (10, 11):
        image_id, images[tag] = _add(writer, rng, tag)
        assert image_id == tag - 6  # 4, 5
    writer.close()

    # an orphan image (no annotation entry) left beside a cleanly closed scene
    cv2.imwrite(str(scene / 'rgb' / '000006.png'), _image(0))
    with BopWriter(tmp_path, resume=True) as writer:
        assert writer.dropped_image_ids == [6] and writer.next_image_id == 6
        image_id, images[12] = _add(writer, rng, 12)
        assert image_id == 6

    dataset = BopDataset(tmp_path)
    assert [s.image_id for s in dataset] == list(range(7))
    tags = [0, 1, 2, 3, 10, 11, 12]
    for sample, tag in zip(dataset, tags):
        assert sample.annotations[0].t[2] == pytest.approx(0.5 + 0.001 * tag, abs=1e-9)
        np.testing.assert_array_equal(sample.load_image(), images[tag])
        assert len(sample.annotations) == 2
    assert len(list((scene / 'mask_visib').iterdir())) == 2 * 7
    assert len(list((scene / 'rgb').iterdir())) == 7


def test_an_image_without_annotations_is_written_kept_and_resumed(tmp_path):
    """A negative image (none of the objects) is written, read back and resumed.

    An empty scene_gt list, no mask, read back with no annotations (and not dropped by the
    object filters), kept by a resumed writer.
    """
    rng = np.random.default_rng(3)
    with BopWriter(tmp_path, objects=_object_set()) as writer:
        _add(writer, rng, 0)
        negative = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        assert writer.add(negative, _camera(), [], []) == 1
    scene = tmp_path / 'train' / '000000'
    assert json.loads((scene / 'scene_gt.json').read_text())['1'] == []
    assert json.loads((scene / 'scene_gt_info.json').read_text())['1'] == []
    assert not list((scene / 'mask_visib').glob('000001_*'))
    with BopWriter(tmp_path, objects=_object_set(), resume=True) as writer:
        assert writer.dropped_image_ids == [] and writer.next_image_id == 2
    for dataset in (BopDataset(tmp_path), BopDataset(tmp_path, object_ids=[1]),
                    BopDataset(tmp_path, min_visib_fract=0.5)):
        sample = [s for s in dataset if s.image_id == 1]
        assert len(sample) == 1 and sample[0].annotations == []
        np.testing.assert_array_equal(sample[0].load_image(), negative)


def _scene_files(scene):
    """{folder: sorted file names} of a scene's image and mask folders."""
    return {name: sorted(p.name for p in (scene / name).iterdir())
            for name in ('rgb', 'mask_visib') if (scene / name).is_dir()}


def test_an_interrupt_inside_add_leaves_no_image_without_ground_truth(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    scene = tmp_path / 'train' / '000000'
    writer = BopWriter(tmp_path, objects=_object_set(), flush_every=100)
    for tag in range(2):
        _add(writer, rng, tag)
    real_replace = os.replace

    def interrupted_replace(source, target):
        if Path(target).name == '000002_000001.png':  # image 2 and its first mask are in
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(os, 'replace', interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        _add(writer, rng, 2)
    monkeypatch.setattr(os, 'replace', real_replace)
    writer.close()  # as `pose6d synth` does on Ctrl-C
    listed = sorted(json.loads((scene / 'scene_gt.json').read_text()), key=int)
    assert listed == ['0', '1'] and writer.next_image_id == 2
    assert _scene_files(scene) == {'rgb': ['000000.png', '000001.png'],
                                   'mask_visib': [f'00000{i}_00000{j}.png' for i in (0, 1)
                                                  for j in (0, 1)]}
    assert not list(scene.rglob('*.tmp'))
    with BopWriter(tmp_path, objects=_object_set(), resume=True) as writer:
        assert writer.dropped_image_ids == [] and _add(writer, rng, 2)[0] == 2
    assert [s.image_id for s in BopDataset(tmp_path)] == [0, 1, 2]


def test_a_bad_annotation_writes_nothing_of_its_image(tmp_path):
    rng = np.random.default_rng(5)
    scene = tmp_path / 'train' / '000000'
    with BopWriter(tmp_path, objects=_object_set()) as writer:
        _add(writer, rng, 0)
        image, annotations, masks = _frame(rng, 1)
        annotations[1].object_id = 99
        with pytest.raises(DatasetError, match=r'unknown object id 99 in annotation 1'):
            writer.add(image, _camera(), annotations, masks)
        assert writer.next_image_id == 1
    assert _scene_files(scene) == {'rgb': ['000000.png'],
                                   'mask_visib': ['000000_000000.png', '000000_000001.png']}


def test_writer_refuses_non_empty_folder_and_force_starts_over(tmp_path):
    rng = np.random.default_rng(3)
    with BopWriter(tmp_path, 'train', scene_id=1) as writer:
        _add(writer, rng, 0)
    with pytest.raises(DatasetError, match=r'output folder .*000001 is not empty; pass '
                                           r'force=True to overwrite it or resume=True'):
        BopWriter(tmp_path, 'train', scene_id=1)
    with BopWriter(tmp_path, 'train', scene_id=1, force=True) as writer:
        assert len(writer) == 0
    assert len(BopDataset(tmp_path)) == 0
    with BopWriter(tmp_path, 'train', scene_id=2):  # another scene of the split is fine
        pass


def test_writer_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match='not both'):
        BopWriter(tmp_path, force=True, resume=True)
    with pytest.raises(DatasetError, match=r"image_ext must be 'png' or 'jpg'; got 'bmp'"):
        BopWriter(tmp_path, image_ext='bmp')
    rng = np.random.default_rng(4)
    image, annotations, masks = _frame(rng, 0)
    annotations[1].object_id = 3
    with BopWriter(tmp_path, objects=_object_set()) as writer:
        with pytest.raises(DatasetError, match=r'unknown object id 3 in annotation 1 of image '
                                               r'0; the object set has ids 1, 5, 6'):
            writer.add(image, _camera(), annotations, masks)
        with pytest.raises(ValueError, match=r'visible_masks has 1 items for 2 annotations'):
            writer.add(image, _camera(), annotations, masks[:1])


# --- reader errors ----------------------------------------------------------------------------


def test_root_not_found(tmp_path):
    with pytest.raises(DatasetError, match=r'dataset folder not found: .*nowhere'):
        BopDataset(tmp_path / 'nowhere')


def test_no_scene_gt_anywhere(tmp_path):
    (tmp_path / 'models').mkdir()
    (tmp_path / 'test' / '000001' / 'rgb').mkdir(parents=True)
    with pytest.raises(DatasetError, match=r'no scene_gt.json anywhere in .*; expected '
                                           r'<dataset>/<split>/<scene_id>/scene_gt.json'):
        BopDataset(tmp_path)


def test_split_choice(tmp_path):
    _write_lmo(tmp_path)
    (tmp_path / 'train').mkdir()
    (tmp_path / 'test').rename(tmp_path / 'train' / 'pbr')  # not a split: nested too deep
    with pytest.raises(DatasetError, match='no scene_gt.json anywhere'):
        BopDataset(tmp_path)
    (tmp_path / 'train' / 'pbr').rename(tmp_path / 'test')
    with BopWriter(tmp_path, 'train'):
        pass
    with pytest.raises(DatasetError, match=r'holds several splits \(test, train\); choose one '
                                           r'with split='):
        BopDataset(tmp_path)
    assert len(BopDataset(tmp_path, split='test')) == 2
    with pytest.raises(DatasetError, match=r"split 'val' not found in .*; splits there: "
                                           r'test, train'):
        BopDataset(tmp_path, split='val')


def test_image_missing(tmp_path):
    scene = _write_lmo(tmp_path)
    (scene / 'rgb' / '000007.jpg').unlink()
    with pytest.raises(DatasetError, match=r'image file missing: scene 2, image 7 is annotated '
                                           r'in .*scene_gt.json but there is no .*000007'):
        BopDataset(tmp_path)


def test_image_unreadable(tmp_path):
    scene = _write_lmo(tmp_path, camera_json=True)
    (scene / 'rgb' / '000007.jpg').write_bytes(b'not a jpeg')
    sample = BopDataset(tmp_path)[1]
    with pytest.raises(DatasetError, match=r'cannot read image .*000007.jpg: the file is empty, '
                                           r'truncated or not an image'):
        sample.load_image()
    # without camera.json the size comes from the scene's first image: the error comes early
    (tmp_path / 'camera.json').unlink()
    (scene / 'rgb' / '000003.png').write_bytes(b'')
    with pytest.raises(DatasetError, match=r'cannot read image .*000003.png'):
        BopDataset(tmp_path / 'test')


def test_image_size_differs_from_camera(tmp_path):
    _write_lmo(tmp_path)
    _write_json(tmp_path / 'camera.json', {'width': 64, 'height': 48})
    with pytest.raises(DatasetError, match=r'000003.png is 32x24 pixels; its camera '
                                           r'\(scene_camera.json\) is 64x48'):
        BopDataset(tmp_path)[0].load_image()


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_scene_camera_entry_missing(tmp_path):
    scene = _write_lmo(tmp_path)
    _edit_json(scene / 'scene_camera.json', lambda data: data.pop('7'))
    with pytest.raises(DatasetError, match=r'scene_camera entry missing: .*scene_camera.json has '
                                           r'no entry for image 7'):
        BopDataset(tmp_path)


def test_zero_focal_length(tmp_path):
    scene = _write_lmo(tmp_path)
    _edit_json(scene / 'scene_camera.json', lambda data: data['7'].update(
        cam_K=[0.0, 0.0, 15.5, 0.0, 28.0, 11.5, 0.0, 0.0, 1.0]))
    with pytest.raises(DatasetError, match=r'scene_camera.json, image 7: camera K must have '
                                           r'positive focal lengths; got fx=0'):
        BopDataset(tmp_path)


def test_unknown_object_id(tmp_path):
    scene = _write_lmo(tmp_path)
    _edit_json(scene / 'scene_gt.json', lambda data: data['7'][0].update(obj_id=3))
    with pytest.raises(DatasetError, match=r'unknown object id 3 in .*scene_gt.json, image 7; '
                                           r"the dataset's models_info.json has ids 1, 10$"):
        BopDataset(tmp_path)
    (tmp_path / 'models' / 'models_info.json').unlink()  # no object set: any id is accepted
    assert BopDataset(tmp_path)[1].annotations[0].object_id == 3


def test_gt_info_inconsistent(tmp_path):
    scene = _write_lmo(tmp_path)
    _edit_json(scene / 'scene_gt_info.json', lambda data: data['3'].pop())
    with pytest.raises(DatasetError, match=r'scene_gt_info.json has 1 entries for image 3; '
                                           r'.*scene_gt.json has 2'):
        BopDataset(tmp_path)


def test_errors_are_user_errors():
    assert issubclass(DatasetError, Pose6dError)
