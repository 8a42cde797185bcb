"""Backgrounds, compositing and photometric jitter: sizes, reproducibility, effects, errors."""

import cv2
import numpy as np
import pytest

from pose6d_ros.core.data.augment import (
    Backgrounds,
    composite,
    list_images,
    motion_kernel,
    Photometric,
    procedural_background,
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
