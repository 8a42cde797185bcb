"""Backgrounds, compositing and photometric jitter: sizes, reproducibility, effects, errors."""

import cv2
import numpy as np
import pytest

from pose6d_ros.core.data.augment import (
    apply_gains,
    Backgrounds,
    composite,
    disk_kernel,
    list_images,
    motion_kernel,
    Photometric,
    procedural_background,
    Shadows,
)
from pose6d_ros.core.errors import Pose6dError

W, H = 96, 72


def _photo(seed, width=120, height=80):
    """A smooth colourful 'photograph' made with numpy."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


@pytest.fixture
def photo_folder(tmp_path):
    (tmp_path / 'sub').mkdir()
    cv2.imwrite(str(tmp_path / 'a.png'), _photo(0))
    cv2.imwrite(str(tmp_path / 'sub' / 'b.JPG'), _photo(1, 50, 40))  # small: upscaled
    cv2.imwrite(str(tmp_path / 'sub' / 'c.bmp'), _photo(2))
    (tmp_path / 'notes.txt').write_text('not an image')
    (tmp_path / 'broken.png').write_bytes(b'not a png at all')
    return tmp_path


def _image(seed=0):
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(30, 220, (6, 8, 3), dtype=np.uint8), (W, H))


# --- backgrounds ------------------------------------------------------------------------------


def test_backgrounds_lists_readable_images_recursively(photo_folder):
    names = [p.name for p in list_images(photo_folder)]
    assert names == ['a.png', 'b.JPG', 'c.bmp']  # no text file, no broken PNG


@pytest.mark.parametrize('size', [(W, H), (33, 17), (300, 200)])
def test_background_samples_have_the_requested_size(photo_folder, size):
    rng = np.random.default_rng(0)
    for backgrounds in (Backgrounds(photo_folder), Backgrounds(None)):
        for _ in range(6):
            image = backgrounds.sample(rng, *size)
            assert image.shape == (size[1], size[0], 3) and image.dtype == np.uint8


def test_backgrounds_are_reproducible_and_varied(photo_folder):
    backgrounds = Backgrounds(photo_folder, procedural_probability=0.5)
    first = [backgrounds.sample(np.random.default_rng([7, i]), W, H) for i in range(8)]
    again = [Backgrounds(photo_folder, procedural_probability=0.5).sample(
        np.random.default_rng([7, i]), W, H) for i in range(8)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert len({image.tobytes() for image in first}) == 8
    assert all(image.std() > 1.0 for image in first)  # never a blank image


def test_procedural_backgrounds_are_reproducible():
    a = procedural_background(np.random.default_rng(3), W, H)
    b = procedural_background(np.random.default_rng(3), W, H)
    assert np.array_equal(a, b) and a.shape == (H, W, 3)


def test_missing_backgrounds_folder_is_a_clear_error(tmp_path):
    with pytest.raises(Pose6dError, match='backgrounds folder not found: .*nowhere'):
        Backgrounds(tmp_path / 'nowhere')


def test_backgrounds_folder_without_images_names_folder_and_extensions(tmp_path):
    (tmp_path / 'readme.txt').write_text('hello')
    (tmp_path / 'fake.jpg').write_bytes(b'\x00' * 100)
    with pytest.raises(Pose6dError) as info:
        Backgrounds(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and 'no readable image' in message
    assert '.jpg .jpeg .png .bmp' in message


# --- compositing ------------------------------------------------------------------------------


def test_composite_keeps_object_and_background_away_from_the_edge():
    rgb = np.full((H, W, 3), 200, np.uint8)
    background = np.full((H, W, 3), 10, np.uint8)
    mask = np.zeros((H, W), bool)
    mask[20:50, 30:70] = True
    out = composite(rgb, mask, background, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    assert (out[25:45, 35:65] == 200).all()          # inside: the object
    assert (out[:10] == 10).all()                     # far outside: the background
    edge = out[20, 40, 0]
    assert 10 < edge < 200                            # softened edge: a blend


# --- photometric ------------------------------------------------------------------------------


def test_photometric_is_reproducible_and_keeps_shape_and_dtype():
    image = _image()
    jitter = Photometric()
    a = jitter.apply(image, np.random.default_rng(5))
    b = jitter.apply(image, np.random.default_rng(5))
    assert np.array_equal(a, b)
    assert a.shape == image.shape and a.dtype == np.uint8
    assert a is not image
    outputs = {jitter.apply(image, np.random.default_rng(s)).tobytes() for s in range(6)}
    assert len(outputs) == 6


@pytest.mark.parametrize('field, value', [
    ('hue', 0.3), ('saturation', (0.2, 0.2)), ('exposure', (1.8, 1.8)),
    ('contrast', (0.3, 0.3)),
])
def test_each_colour_jitter_changes_the_image(field, value):
    off = {'hue': 0.0, 'saturation': (1.0, 1.0), 'exposure': (1.0, 1.0),
           'contrast': (1.0, 1.0), 'blur_probability': 0.0, 'motion_blur_probability': 0.0,
           'noise_probability': 0.0, 'jpeg_probability': 0.0}
    image = _image()
    assert np.array_equal(Photometric(**off).apply(image, np.random.default_rng(0)), image)
    off[field] = value
    changed = Photometric(**off).apply(image, np.random.default_rng(0))
    assert np.abs(changed.astype(int) - image).mean() > 3.0


def test_blur_noise_and_jpeg_change_the_image():
    image = _image()
    base = {'hue': 0.0, 'saturation': (1.0, 1.0), 'exposure': (1.0, 1.0),
            'contrast': (1.0, 1.0), 'blur_probability': 0.0, 'motion_blur_probability': 0.0,
            'noise_probability': 0.0, 'jpeg_probability': 0.0}
    noisy_input = image.copy()
    noisy_input[::2, ::2] = 255  # detail for the blurs and JPEG to remove
    for effect in ('blur_probability', 'motion_blur_probability', 'noise_probability',
                   'jpeg_probability'):
        out = Photometric(**{**base, effect: 1.0}).apply(noisy_input, np.random.default_rng(1))
        assert np.abs(out.astype(int) - noisy_input).mean() > 0.5, effect


def test_motion_kernel_is_normalised():
    for length, angle in ((3, 0.0), (7.5, 33.0), (9, 90.0)):
        kernel = motion_kernel(length, angle)
        assert kernel.shape[0] % 2 == 1 and abs(kernel.sum() - 1.0) < 1e-5


@pytest.mark.parametrize('kwargs, message', [
    ({'saturation': (1.5, 0.5)}, 'photometric.saturation'),
    ({'noise_probability': 2.0}, 'photometric.noise_probability'),
    ({'hue': 'lots'}, 'photometric.hue'),
])
def test_bad_photometric_values_are_named(kwargs, message):
    with pytest.raises(Pose6dError, match=message):
        Photometric(**kwargs)


def test_unknown_photometric_key_is_an_error():
    with pytest.raises(Pose6dError, match='unknown key.*brightness'):
        Photometric.from_dict({'brightness': 2})


# --- shadows ----------------------------------------------------------------------------------


def _square_scene():
    """Instance ids (-1 background) with one 20x20 object, and a uniform grey background."""
    ids = np.full((H, W), -1, np.int32)
    ids[26:46, 20:40] = 0
    return ids, np.full((H, W, 3), 180, np.uint8)


def test_shadows_darken_only_the_background_near_the_object_along_the_light():
    ids, background = _square_scene()
    shadows = Shadows(probability=1.0, strength=(0.6, 0.6), offset=(0.5, 0.5),
                      softness=(0.1, 0.1))
    light = (0.8, 0.0, 0.6)   # travelling right, 53 degrees from the view: shadow to the right
    out = shadows.apply(background, ids, light, np.random.default_rng(0))
    darker = 180 - out[:, :, 0].astype(int)
    assert (darker >= 0).all() and darker.max() > 40
    assert (out[:, :, 0] == out[:, :, 2]).all()           # grey stays grey
    assert (darker[:, 60:] == 0).all() and (darker[:10] == 0).all()  # far away: untouched
    beside = darker[30:42, 41:50].mean()                  # right of the object: in its shadow
    opposite = darker[30:42, 10:19].mean()
    assert beside > 20 and beside > 3 * opposite
    image = composite(np.full((H, W, 3), 90, np.uint8), ids >= 0, out, np.random.default_rng(0))
    assert (image[28:44, 22:38] == 90).all()              # the object is never darkened


def test_shadows_are_reproducible_and_draw_nothing_when_off():
    ids, background = _square_scene()
    shadows = Shadows(probability=1.0)
    a = shadows.apply(background, ids, (0.3, 0.4, 0.87), np.random.default_rng(3))
    b = shadows.apply(background, ids, (0.3, 0.4, 0.87), np.random.default_rng(3))
    assert np.array_equal(a, b) and not np.array_equal(a, background)
    rng = np.random.default_rng(3)
    assert Shadows().apply(background, ids, (0, 0, 1), rng) is background
    assert rng.bit_generator.state == np.random.default_rng(3).bit_generator.state
    assert Shadows(probability=1.0).apply(background, np.full((H, W), -1), (0, 0, 1),
                                          rng) is not None      # nothing rendered: no shadow


@pytest.mark.parametrize('data, message', [
    ({'probability': 1.5}, 'shadows.probability'),
    ({'strength': [0.2, 1.5]}, 'shadows.strength'),
    ({'offset': [0.4, 0.1]}, 'shadows.offset must be .min, max. with min <= max'),
    ({'blur': 2}, 'shadows has unknown key.*blur'),
])
def test_bad_shadow_values_are_named(data, message):
    with pytest.raises(Pose6dError, match=message):
        Shadows.from_dict(data)


# --- camera effects ---------------------------------------------------------------------------

OFF = {'hue': 0.0, 'saturation': (1.0, 1.0), 'exposure': (1.0, 1.0), 'contrast': (1.0, 1.0),
       'blur_probability': 0.0, 'motion_blur_probability': 0.0, 'noise_probability': 0.0,
       'jpeg_probability': 0.0}


def _only(**effect):
    return Photometric(**OFF, **effect)


def test_white_balance_gains_red_and_blue():
    image = np.full((H, W, 3), 100, np.uint8)
    out = _only(white_balance_probability=1.0, white_balance_red=(1.2, 1.2),
                white_balance_blue=(0.7, 0.7)).apply(image, np.random.default_rng(0))
    assert (out[0, 0] == [120, 100, 70]).all() and (out == out[0, 0]).all()
    assert (apply_gains(image, (2.0, 1.0, 3.0))[0, 0] == [200, 100, 255]).all()  # saturates


def test_gamma_is_a_tone_curve():
    levels = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    image = np.stack([levels] * 3, axis=2)
    out = _only(gamma_probability=1.0, gamma=(2.0, 2.0)).apply(image, np.random.default_rng(0))
    expected = np.round(255 * (np.arange(256) / 255.0) ** 2)
    assert np.abs(out[0, :, 1].astype(int) - expected).max() <= 0
    assert out[0, 0, 0] == 0 and out[0, 255, 0] == 255       # black and white stay


def test_defocus_spreads_a_point_over_a_disk():
    kernel = disk_kernel(2.5)
    assert kernel.shape == (7, 7) and kernel.sum() == pytest.approx(1.0)
    assert np.allclose(kernel, kernel.T) and np.allclose(kernel, kernel[::-1])
    image = np.zeros((31, 31, 3), np.uint8)
    image[15, 15] = 255
    out = _only(defocus_probability=1.0, defocus_radius=(3.0, 3.0)).apply(
        image, np.random.default_rng(0))[:, :, 0].astype(int)
    rows, cols = np.nonzero(out)
    assert rows.min() == cols.min() == 12 and rows.max() == cols.max() == 18  # radius 3
    assert out[15, 15] == out[15, 14] == out[14, 15] > 0        # a flat disk, not a Gaussian


def test_sharpening_steepens_edges_and_grey_discards_colour():
    step = np.full((H, W, 3), 60, np.uint8)
    step[:, W // 2:] = 180
    step = cv2.GaussianBlur(step, (0, 0), 1.0)
    sharp = _only(sharpen_probability=1.0, sharpen_amount=(1.0, 1.0)).apply(
        step, np.random.default_rng(0))[:, :, 0].astype(int)
    slope = np.diff(step[:, :, 0].astype(int), axis=1).max()
    assert np.diff(sharp, axis=1).max() > 1.2 * slope            # a steeper edge ...
    assert sharp.max() > 180 + 2 and sharp.min() < 60 - 2         # ... with the usual halo
    assert (sharp[:, :W // 2 - 6] == 60).all()                    # flat areas stay
    grey = _only(grey_probability=1.0).apply(_image(), np.random.default_rng(0))
    assert (grey[:, :, 0] == grey[:, :, 1]).all() and (grey[:, :, 1] == grey[:, :, 2]).all()
    assert grey.std() > 5


def test_camera_effects_are_reproducible_and_absent_ones_draw_nothing():
    image = _image()
    every = Photometric(white_balance_probability=0.5, gamma_probability=0.5,
                        defocus_probability=0.5, sharpen_probability=0.5, grey_probability=0.5)
    outputs = [every.apply(image, np.random.default_rng(s)) for s in range(8)]
    assert all(np.array_equal(a, every.apply(image, np.random.default_rng(s)))
               for s, a in enumerate(outputs))
    assert len({a.tobytes() for a in outputs}) == 8
    # Without camera effects: the images and the random stream of earlier versions.
    old, new = np.random.default_rng(4), np.random.default_rng(4)
    legacy = Photometric(gamma=(0.5, 0.6), defocus_radius=(2.0, 2.0))   # ranges alone: off
    assert np.array_equal(Photometric().apply(image, old), legacy.apply(image, new))
    assert old.bit_generator.state == new.bit_generator.state
    assert set(Photometric().to_dict()) == {
        'hue', 'saturation', 'exposure', 'contrast', 'blur_probability', 'blur_sigma',
        'motion_blur_probability', 'motion_blur_length', 'noise_probability', 'noise_sigma',
        'jpeg_probability', 'jpeg_quality'}
    assert Photometric.from_dict(every.to_dict()) == every


@pytest.mark.parametrize('kwargs, message', [
    ({'gamma': (0.0, 1.0)}, 'photometric.gamma'),
    ({'grey_probability': 2.0}, 'photometric.grey_probability'),
    ({'white_balance_red': (1.2, 0.9)}, 'photometric.white_balance_red'),
    ({'defocus_radius': 'wide'}, 'photometric.defocus_radius'),
])
def test_bad_camera_effect_values_are_named(kwargs, message):
    with pytest.raises(Pose6dError, match=message):
        Photometric(**kwargs)
