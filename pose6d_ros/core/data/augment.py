"""Backgrounds, compositing and photometric augmentation for synthetic training images.

The papers' recipe for synthetic-to-real transfer: objects pasted on real photographs, then
hue, saturation, exposure and contrast jitter, blur and sensor noise. For real photographs,
optionally more: approximate shadows of the rendered things on the background (`Shadows`),
and the camera's own marks (`Photometric`: white balance, tone curve, defocus, sharpening,
grey images). Everything here is drawn from a `numpy.random.Generator`, so one seed
reproduces an image exactly, and works on uint8 RGB images (H, W, 3) with OpenCV (LUTs,
separable filters) to stay fast on a CPU.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pose6d_ros.core.config_fields import dataclass_kwargs
from pose6d_ros.core.errors import Pose6dError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')


# --- backgrounds ------------------------------------------------------------------------------


class Backgrounds:
    """Random backgrounds: crops of photographs from a folder, or procedural images.

    folder: a folder searched recursively for .jpg .jpeg .png .bmp images; None for
    procedural backgrounds only. procedural_probability: chance that a sample is procedural
    although photographs are there (photographs are few; procedural ones add variety).
    crop_scale: side of the random crop as a fraction of the largest crop of the photo's
    aspect. Decoded photographs are kept in a small cache (`cache_size` images), which does
    not change the output.
    """

    def __init__(self, folder=None, procedural_probability=0.2, crop_scale=(0.3, 1.0),
                 cache_size=64):
        self.folder = None if folder is None else Path(folder)
        self.procedural_probability = 1.0 if folder is None else float(procedural_probability)
        self.crop_scale = _range(crop_scale, 'crop_scale', low=1e-3, high=1.0)
        self.paths = [] if folder is None else list_images(self.folder)
        self._cache = OrderedDict()
        self._cache_size = int(cache_size)

    def __len__(self):
        """Number of photographs (0 for procedural backgrounds only)."""
        return len(self.paths)

    def sample(self, rng, width, height):
        """A random background (height, width, 3) uint8 RGB."""
        procedural = rng.random() < self.procedural_probability or not self.paths
        if procedural:
            return procedural_background(rng, width, height)
        path = self.paths[int(rng.integers(len(self.paths)))]
        photo = self._photo(path, width, height)
        if photo is None:  # listed as readable but fails to decode: use a procedural one
            return procedural_background(rng, width, height)
        return _random_crop(rng, photo, width, height, self.crop_scale)

    def _photo(self, path, width, height):
        """The decoded photo (RGB), reduced while decoding when much larger than needed."""
        key = (path, width, height)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        photo = _decode_reduced(path, width, height)
        self._cache[key] = photo
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return photo


def list_images(folder):
    """Sorted paths of the readable images (.jpg .jpeg .png .bmp) below `folder`, recursive."""
    folder = Path(folder)
    accepted = ' '.join(IMAGE_EXTENSIONS)
    if not folder.is_dir():
        raise Pose6dError(f'backgrounds folder not found: {folder}; expected a folder of '
                          f'photographs ({accepted})')
    paths = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()  # a fixed order, so a seed gives the same backgrounds on every machine
        for name in sorted(files):
            path = Path(root) / name
            # haveImageReader reads the file's signature only, not the whole image.
            if path.suffix.lower() in IMAGE_EXTENSIONS and cv2.haveImageReader(str(path)):
                paths.append(path)
    if not paths:
        raise Pose6dError(f'backgrounds folder {folder} holds no readable image; expected '
                          f'photographs with the extensions {accepted} (searched recursively)')
    return paths


def _decode_reduced(path, width, height):
    """Decode a photo as RGB; JPEGs far larger than (width, height) are decoded at 1/2..1/8."""
    flags = cv2.IMREAD_COLOR
    try:
        with Image.open(path) as image:  # reads the header only: the size without decoding
            photo_w, photo_h = image.size
        # Keep at least twice the output size so that half-size crops stay sharp.
        for factor, reduced in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                                (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if photo_w / factor >= 2 * width and photo_h / factor >= 2 * height:
                flags = reduced
                break
    except Exception:  # noqa: BLE001 - PIL cannot size every file OpenCV reads
        pass
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _random_crop(rng, photo, width, height, crop_scale):
    """A random crop of the output's aspect, resized to (width, height), flipped, jittered."""
    photo_h, photo_w = photo.shape[:2]
    aspect = width / height
    max_w = min(photo_w, photo_h * aspect)
    crop_w = max(1.0, max_w * rng.uniform(*crop_scale))
    crop_h = max(1.0, crop_w / aspect)
    x0 = rng.uniform(0.0, photo_w - crop_w)
    y0 = rng.uniform(0.0, photo_h - crop_h)
    flip = rng.random() < 0.5
    gains = rng.uniform(0.8, 1.2, 3)  # per-channel colour cast
    offset = rng.uniform(-20.0, 20.0)
    x0, y0 = int(x0), int(y0)
    crop = photo[y0:y0 + max(1, int(round(crop_h))), x0:x0 + max(1, int(round(crop_w)))]
    # INTER_AREA averages when shrinking (no aliasing); a view is resized, never copied first.
    interpolation = cv2.INTER_AREA if crop.shape[1] > width else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (width, height), interpolation=interpolation)
    if flip:
        crop = cv2.flip(crop, 1)
    levels = np.arange(256, dtype=np.float64)[:, None] * gains + offset
    lut = np.clip(levels, 0, 255).astype(np.uint8).reshape(256, 1, 3)
    return cv2.LUT(crop, lut)


# --- procedural backgrounds -------------------------------------------------------------------


def procedural_background(rng, width, height):
    """A random synthetic background (height, width, 3) uint8: noise, gradients, patterns."""
    # Smooth patterns are made at a quarter of the size and enlarged (4-8x faster); shapes
    # and fine texture are drawn at full size so that they keep sharp detail.
    small_w, small_h = max(2, -(-width // 4)), max(2, -(-height // 4))
    kind = int(rng.integers(5))
    if kind == 0:
        small = smooth_noise(rng, small_w, small_h)
    elif kind == 1:
        small = _gradient(rng, small_w, small_h)
    elif kind == 2:
        small = _stripes(rng, small_w, small_h)
    elif kind == 3:
        small = _checkerboard(rng, small_w, small_h)
    else:
        small = (_gradient if rng.random() < 0.5 else smooth_noise)(rng, small_w, small_h)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    shapes = int(rng.integers(10, 40)) if kind == 4 else int(rng.integers(0, 15))
    _draw_shapes(rng, image, shapes)
    if rng.random() < 0.5:  # fine grain, as real surfaces have
        grain = rng.integers(0, 256, (max(2, height // 3), max(2, width // 3), 3), np.uint8)
        grain = cv2.resize(grain, (width, height), interpolation=cv2.INTER_CUBIC)
        weight = rng.uniform(0.05, 0.25)
        image = cv2.addWeighted(image, 1.0 - weight, grain, weight, 0.0)
    return image


def smooth_noise(rng, width, height, octaves=None):
    """Colour value noise summed over several scales (cells of ~width/2 down to ~2 pixels)."""
    if octaves is None:
        octaves = [2 ** k for k in range(1, 10) if 2 ** k <= max(2, width // 2)]
    total = np.zeros((height, width, 3), np.float32)
    weights = 0.0
    for cells in octaves:
        weight = rng.uniform(0.2, 1.0) / np.sqrt(cells)
        grid = rng.random((max(2, round(cells * height / width)), cells, 3), dtype=np.float32)
        total += weight * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        weights += weight
    total /= weights
    low, high = np.percentile(total, [1, 99])
    colour_range = rng.uniform(60.0, 255.0)
    base = rng.uniform(0.0, 255.0 - colour_range)
    scaled = (total - low) * (colour_range / max(high - low, 1e-6)) + base
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _gradient(rng, width, height):
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ramp = (np.cos(angle) * np.arange(width, dtype=np.float32)[None, :] / width
            + np.sin(angle) * np.arange(height, dtype=np.float32)[:, None] / height)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    a, b = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    return (a + ramp[:, :, None] * (b - a)).astype(np.uint8)


def _rotated_coordinates(rng, width, height, period):
    """Pixel coordinates along and across a random direction, in periods."""
    angle = rng.uniform(0.0, np.pi)
    x = np.arange(width, dtype=np.float32)[None, :] / period
    y = np.arange(height, dtype=np.float32)[:, None] / period
    return np.cos(angle) * x + np.sin(angle) * y, -np.sin(angle) * x + np.cos(angle) * y


def _period(rng, width):
    """A pattern period in pixels: from about 1% to 20% of the width."""
    return 1.0 + width * rng.uniform(0.01, 0.2)


def _two_colours(rng):
    return rng.uniform(0, 255, (2, 3)).astype(np.float32)


def _stripes(rng, width, height):
    along, _ = _rotated_coordinates(rng, width, height, _period(rng, width))
    if rng.random() < 0.5:
        weight = (np.floor(along) % 2).astype(np.float32)  # hard stripes
    else:
        weight = (0.5 + 0.5 * np.sin(2.0 * np.pi * along)).astype(np.float32)
    a, b = _two_colours(rng)
    return (a + weight[:, :, None] * (b - a)).astype(np.uint8)


def _checkerboard(rng, width, height):
    along, across = _rotated_coordinates(rng, width, height, _period(rng, width))
    weight = ((np.floor(along) + np.floor(across)) % 2).astype(np.float32)
    a, b = _two_colours(rng)
    return (a + weight[:, :, None] * (b - a)).astype(np.uint8)


def _draw_shapes(rng, image, count):
    """Draw random filled rectangles, circles, ellipses, polygons and lines in place."""
    height, width = image.shape[:2]
    size = max(width, height)
    for _ in range(count):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = int(rng.integers(5))
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        radius = int(max(1, size * rng.uniform(0.02, 0.2)))
        if kind == 0:
            corner = (centre[0] + int(rng.integers(-radius, radius + 1)),
                      centre[1] + int(rng.integers(-radius, radius + 1)))
            cv2.rectangle(image, centre, corner, colour, -1)
        elif kind == 1:
            cv2.circle(image, centre, radius, colour, -1, cv2.LINE_AA)
        elif kind == 2:
            axes = (radius, int(max(1, radius * rng.uniform(0.2, 1.0))))
            cv2.ellipse(image, centre, axes, rng.uniform(0, 180), 0, 360, colour, -1,
                        cv2.LINE_AA)
        elif kind == 3:
            points = np.array(centre) + rng.integers(-radius, radius + 1, (int(rng.integers(3, 7)),
                                                                           2))
            cv2.fillPoly(image, [points.astype(np.int32)], colour, cv2.LINE_AA)
        else:
            end = (int(rng.integers(width)), int(rng.integers(height)))
            cv2.line(image, centre, end, colour, int(rng.integers(1, 6)), cv2.LINE_AA)


# --- compositing ------------------------------------------------------------------------------


def composite(rgb, foreground_mask, background, rng, softness=(0.4, 1.0)):
    """Paste the foreground pixels of `rgb` on `background`, with slightly softened edges.

    The mask is blurred by a Gaussian of sigma drawn from `softness` (pixels), so object
    edges blend into the photo instead of showing the renderer's hard, aliased border, a cue
    a network would otherwise learn. Returns a new uint8 RGB image.
    """
    if rgb.shape != background.shape:
        raise ValueError(f'rgb {rgb.shape} and background {background.shape} differ in shape')
    alpha = foreground_mask.astype(np.float32)
    sigma = rng.uniform(*softness)
    if sigma > 0.0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
    return cv2.blendLinear(rgb, background, alpha, 1.0 - alpha)


# --- shadows ----------------------------------------------------------------------------------


@dataclass
class Shadows:
    """Soft shadows of the rendered objects and shapes on the background, approximated.

    The renderer casts no shadows, but every object on a table in a photograph has one. Each
    rendered thing's visible mask is shifted along the key light's direction in the image (as
    far as the light is oblique: a headlight's shadow hides behind the thing, a soft rim
    remains), blurred, and multiplied into the background before compositing, so the things
    themselves are never darkened. Sizes are fractions of each caster's size in the image (the
    square root of its box's area). Ranges are [min, max], drawn once per image.
    """

    probability: float = 0.0       # chance that an image has shadows; 0 draws nothing
    strength: tuple = (0.3, 0.7)   # darkening of the background at a shadow's core (1: black)
    offset: tuple = (0.1, 0.4)     # shift along the light, for light at 90 degrees to the view
    softness: tuple = (0.05, 0.25)  # Gaussian sigma of a shadow's edge

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raise Pose6dError naming the first field with an impossible value."""
        _number(self.probability, 'shadows.probability', 0.0, 1.0)
        _range(self.strength, 'shadows.strength', low=0.0, high=1.0)
        _range(self.offset, 'shadows.offset', low=0.0, high=5.0)
        _range(self.softness, 'shadows.softness', low=0.0, high=2.0)

    @classmethod
    def from_dict(cls, data, where='shadows'):
        """Build from a mapping (a config file section); unknown keys are an error."""
        return cls(**dataclass_kwargs(cls, data, where, lists_as_tuples=True))

    def to_dict(self):
        """Plain values (lists for ranges), as `from_dict` reads them."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    def apply(self, background, instance_ids, light_direction, rng):
        """`background` (H, W, 3) uint8 with the shadows of `instance_ids` >= 0; may be itself.

        light_direction: the direction the key light travels, camera frame (Lighting's).
        """
        if not self.probability:
            return background
        u = rng.random()
        strength = rng.uniform(*self.strength)
        offset = rng.uniform(*self.offset)
        softness = rng.uniform(*self.softness)
        if u >= self.probability or strength <= 0.0:
            return background
        shadow = shadow_map(instance_ids, light_direction, offset, softness)
        factor = 1.0 - strength * shadow
        return cv2.multiply(background, cv2.merge([factor, factor, factor]),
                            dtype=cv2.CV_8U)


def shadow_map(instance_ids, light_direction, offset, softness):
    """(H, W) float32 in [0, 1]: the soft shadows of every id >= 0 (see Shadows)."""
    height, width = instance_ids.shape
    shadow = np.zeros((height, width), np.float32)
    travel = np.asarray(light_direction, dtype=np.float64).reshape(3)
    travel = travel / max(np.linalg.norm(travel), 1e-12)
    # In the image the shadow falls the way the light travels (x right, y down), the farther
    # the more oblique the light: |(x, y)| of the unit direction is the sine of its angle.
    shift = travel[:2] * offset
    counts = np.bincount(instance_ids.ravel() + 1)
    for index in np.flatnonzero(counts[1:]):
        mask = (instance_ids == index).view(np.uint8)
        x, y, w, h = cv2.boundingRect(mask)
        size = np.sqrt(w * h)
        dx, dy = shift * size
        sigma = max(softness * size, 0.3)
        pad_x, pad_y = int(np.ceil(abs(dx) + 3 * sigma)), int(np.ceil(abs(dy) + 3 * sigma))
        x0, y0 = max(0, x - pad_x), max(0, y - pad_y)
        x1, y1 = min(width, x + w + pad_x), min(height, y + h + pad_y)
        crop = mask[y0:y1, x0:x1].astype(np.float32)
        moved = cv2.warpAffine(crop, np.float32([[1, 0, dx], [0, 1, dy]]), (x1 - x0, y1 - y0))
        soft = cv2.GaussianBlur(moved, (0, 0), sigma)
        np.maximum(shadow[y0:y1, x0:x1], soft, out=shadow[y0:y1, x0:x1])
    return shadow


# --- photometric augmentation -----------------------------------------------------------------


@dataclass
class Photometric:
    """Photometric jitter applied to a whole composited image (ranges are inclusive).

    Defaults follow the papers (YOLO-style HSV jitter: saturation and exposure factors up to
    1.5) plus HRPose's blur, and sensor noise and compression as seen on webcams. The camera
    effects after `jpeg_quality` (white balance, tone curve, defocus, sharpening, grey) are off
    by default, and then draw nothing: the images of earlier configs stay as they were.
    Order of the effects: white balance and tone curve, hue and saturation, exposure and
    contrast, defocus, blur, motion blur, noise, sharpening, grey, JPEG.
    """

    hue: float = 0.05                 # max hue shift, fraction of the colour circle (+-)
    saturation: tuple = (0.67, 1.5)   # saturation factor
    exposure: tuple = (0.67, 1.5)     # brightness gain (multiplies every channel)
    contrast: tuple = (0.7, 1.3)      # contrast factor about the image's mean level
    blur_probability: float = 0.3     # chance of a Gaussian blur (defocus)
    blur_sigma: tuple = (0.3, 1.5)    # its sigma, pixels
    motion_blur_probability: float = 0.15  # chance of a linear motion blur
    motion_blur_length: tuple = (3, 9)     # its kernel length, pixels
    noise_probability: float = 0.6    # chance of Gaussian sensor noise
    noise_sigma: tuple = (1.0, 6.0)   # its standard deviation, grey levels (0..255)
    jpeg_probability: float = 0.1     # chance of JPEG compression artefacts
    jpeg_quality: tuple = (40, 90)    # their JPEG quality
    white_balance_probability: float = 0.0   # chance of a colour cast (white balance off)
    white_balance_red: tuple = (0.85, 1.15)  # its red gain (green stays 1)
    white_balance_blue: tuple = (0.85, 1.15)  # its blue gain
    gamma_probability: float = 0.0    # chance of a tone curve: out = 255 (in / 255) ** gamma
    gamma: tuple = (0.8, 1.25)        # its exponent (> 1: darker mid-tones)
    defocus_probability: float = 0.0  # chance of a defocus blur: a disk, the aperture's image
    defocus_radius: tuple = (1.0, 3.0)  # its radius, pixels
    sharpen_probability: float = 0.0  # chance of a camera's sharpening (unsharp mask)
    sharpen_amount: tuple = (0.3, 1.0)  # out = in + amount * (in - blurred in)
    grey_probability: float = 0.0     # chance of a grey image (colour discarded)

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raise Pose6dError naming the first field with an impossible value."""
        _number(self.hue, 'photometric.hue', 0.0, 0.5)
        _range(self.saturation, 'photometric.saturation', low=0.0)
        _range(self.exposure, 'photometric.exposure', low=0.0)
        _range(self.contrast, 'photometric.contrast', low=0.0)
        _range(self.blur_sigma, 'photometric.blur_sigma', low=0.0)
        _range(self.motion_blur_length, 'photometric.motion_blur_length', low=1.0)
        _range(self.noise_sigma, 'photometric.noise_sigma', low=0.0)
        _range(self.jpeg_quality, 'photometric.jpeg_quality', low=1.0, high=100.0)
        _range(self.white_balance_red, 'photometric.white_balance_red', low=0.0, high=4.0)
        _range(self.white_balance_blue, 'photometric.white_balance_blue', low=0.0, high=4.0)
        _range(self.gamma, 'photometric.gamma', low=0.05, high=20.0)
        _range(self.defocus_radius, 'photometric.defocus_radius', low=0.0, high=50.0)
        _range(self.sharpen_amount, 'photometric.sharpen_amount', low=0.0, high=10.0)
        for name in ('blur_probability', 'motion_blur_probability', 'noise_probability',
                     'jpeg_probability') + _CAMERA_PROBABILITIES:
            _number(getattr(self, name), f'photometric.{name}', 0.0, 1.0)

    @property
    def camera_effects(self):
        """True when any of the camera effects (white balance ... grey) can happen."""
        return any(getattr(self, name) > 0.0 for name in _CAMERA_PROBABILITIES)

    def to_dict(self):
        """Plain values (lists for ranges), as `from_dict` reads them.

        Camera-effect fields at their defaults are left out: the settings a synth run records
        (and a rerun must match to continue it) are then those of runs made before them.
        """
        defaults = {f.name: f.default for f in fields(Photometric)}
        values = {}
        for name, value in self.__dict__.items():
            if name in _CAMERA_FIELDS and value == defaults[name]:
                continue
            values[name] = list(value) if isinstance(value, tuple) else value
        return values

    @classmethod
    def from_dict(cls, data, where='photometric'):
        """Build from a mapping (a config file section); unknown keys are an error."""
        return cls(**dataclass_kwargs(cls, data, where, lists_as_tuples=True))

    def apply(self, image, rng):
        """Return a jittered copy of `image` (H, W, 3) uint8 RGB; reproducible from `rng`."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'image must be uint8 (H, W, 3); got {image.dtype} {image.shape}')
        # Draw every parameter first, in a fixed order: the stream does not depend on which
        # effects happen to be switched on.
        u = rng.random(5)
        hue = rng.uniform(-self.hue, self.hue)
        saturation = rng.uniform(*self.saturation)
        exposure = rng.uniform(*self.exposure)
        contrast = rng.uniform(*self.contrast)
        blur_sigma = rng.uniform(*self.blur_sigma)
        motion_length = rng.uniform(*self.motion_blur_length)
        motion_angle = rng.uniform(0.0, 180.0)
        noise_sigma = rng.uniform(*self.noise_sigma)
        noise_gray = rng.random() < 0.5
        noise_seed = int(rng.integers(2 ** 31 - 1))
        quality = int(round(rng.uniform(*self.jpeg_quality)))
        # The camera effects draw after those, and only when one is on, so that earlier
        # configs make the images they made before these effects existed.
        camera = self.camera_effects
        if camera:
            v = rng.random(5)
            red = rng.uniform(*self.white_balance_red)
            blue = rng.uniform(*self.white_balance_blue)
            gamma = rng.uniform(*self.gamma)
            defocus = rng.uniform(*self.defocus_radius)
            sharpen = rng.uniform(*self.sharpen_amount)

        out = image
        if camera and (v[0] < self.white_balance_probability or v[1] < self.gamma_probability):
            gains = (red, 1.0, blue) if v[0] < self.white_balance_probability else (1.0,) * 3
            out = _white_balance_gamma(out, gains,
                                       gamma if v[1] < self.gamma_probability else 1.0)
        out = _hue_saturation(out, hue, saturation)
        out = _exposure_contrast(out, exposure, contrast)
        if camera and v[2] < self.defocus_probability and defocus >= 0.5:
            out = cv2.filter2D(out, -1, disk_kernel(defocus))
        if u[0] < self.blur_probability and blur_sigma > 0.05:
            out = cv2.GaussianBlur(out, (0, 0), blur_sigma)
        if u[1] < self.motion_blur_probability and motion_length >= 2.0:
            out = cv2.filter2D(out, -1, motion_kernel(motion_length, motion_angle))
        if u[2] < self.noise_probability and noise_sigma > 0.0:
            out = _add_noise(out, noise_sigma, noise_gray, noise_seed)
        if camera and v[3] < self.sharpen_probability and sharpen > 0.0:
            # Unsharp masking, as camera firmware does after demosaicing (noise sharpens too).
            blurred = cv2.GaussianBlur(out, (0, 0), 1.0)
            out = cv2.addWeighted(out, 1.0 + sharpen, blurred, -sharpen, 0.0)
        if camera and v[4] < self.grey_probability:
            out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        if u[3] < self.jpeg_probability:
            ok, data = cv2.imencode('.jpg', out, [cv2.IMWRITE_JPEG_QUALITY, quality])
            out = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if ok else out
        return out if out is not image else image.copy()


_CAMERA_PROBABILITIES = ('white_balance_probability', 'gamma_probability', 'defocus_probability',
                         'sharpen_probability', 'grey_probability')
_CAMERA_FIELDS = _CAMERA_PROBABILITIES + ('white_balance_red', 'white_balance_blue', 'gamma',
                                          'defocus_radius', 'sharpen_amount')


def disk_kernel(radius):
    """A normalised disk of `radius` pixels, its rim anti-aliased (4x4 samples per pixel)."""
    half = int(np.ceil(radius))
    samples = (np.arange(4) + 0.5) / 4.0 - 0.5
    x = (np.arange(-half, half + 1)[:, None] + samples[None, :]).ravel()
    inside = (x[:, None] ** 2 + x[None, :] ** 2 <= radius * radius).astype(np.float32)
    kernel = inside.reshape(2 * half + 1, 4, 2 * half + 1, 4).mean(axis=(1, 3))
    return kernel / kernel.sum()


def motion_kernel(length, angle_deg):
    """A normalised line kernel of `length` pixels at `angle_deg` (linear motion blur)."""
    size = int(np.ceil(length)) | 1  # odd, so the kernel is centred
    kernel = np.zeros((size, size), np.float32)
    c = (size - 1) / 2.0
    dx, dy = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    half = (length - 1) / 2.0
    shift = 4  # sub-pixel end points (1/16 px) for a kernel that turns smoothly with the angle
    p0 = (int(round((c - dx * half) * 16)), int(round((c - dy * half) * 16)))
    p1 = (int(round((c + dx * half) * 16)), int(round((c + dy * half) * 16)))
    cv2.line(kernel, p0, p1, 1.0, 1, cv2.LINE_AA, shift)
    total = kernel.sum()
    if total <= 0:
        kernel[int(c), int(c)] = 1.0
        total = 1.0
    return kernel / total


def _hue_saturation(image, hue, saturation):
    if abs(hue) * 256 < 0.5 and abs(saturation - 1.0) < 1e-3:
        return image
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)  # hue over 0..255: the whole circle
    levels = np.arange(256)
    lut = np.stack([(levels + round(hue * 256)) % 256,
                    np.clip(levels * saturation, 0, 255),
                    levels], axis=1).astype(np.uint8).reshape(256, 1, 3)
    return cv2.cvtColor(cv2.LUT(hsv, lut), cv2.COLOR_HSV2RGB_FULL)


def apply_gains(image, gains):
    """`image` (H, W, 3) uint8 RGB with each channel multiplied by its gain (saturating)."""
    levels = np.arange(256, dtype=np.float64)[:, None] * np.asarray(gains, dtype=np.float64)
    return cv2.LUT(image, np.clip(np.round(levels), 0, 255).astype(np.uint8).reshape(256, 1, 3))


def _white_balance_gamma(image, gains, gamma):
    # One LUT per channel: x -> 255 (min(x gain, 255) / 255) ** gamma.
    levels = np.clip(np.arange(256, dtype=np.float64)[:, None] * np.asarray(gains), 0, 255)
    levels = 255.0 * (levels / 255.0) ** gamma
    return cv2.LUT(image, np.round(levels).astype(np.uint8).reshape(256, 1, 3))


def _exposure_contrast(image, exposure, contrast):
    # One LUT for both: x -> (x * exposure - mean) * contrast + mean, mean after the gain.
    mean = float(np.mean(cv2.mean(image)[:3])) * exposure
    levels = (np.arange(256, dtype=np.float64) * exposure - mean) * contrast + mean
    return cv2.LUT(image, np.clip(np.round(levels), 0, 255).astype(np.uint8))


def _add_noise(image, sigma, gray, seed):
    # OpenCV's generator fills a buffer ~4x faster than numpy's; seeding it from our rng keeps
    # the result reproducible. Grey noise (same in all channels) mimics luminance noise.
    channels = 1 if gray else 3
    noise = np.empty(image.shape[:2] + (channels,), np.int16)
    cv2.setRNGSeed(seed)
    cv2.randn(noise, 0.0, float(sigma))
    if gray:
        noise = cv2.merge([noise, noise, noise])
    return cv2.add(image, noise, dtype=cv2.CV_8U)


# --- validation helpers -----------------------------------------------------------------------


def _number(value, name, low=None, high=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise Pose6dError(f'{name} must be a number; got {value!r}')
    if (low is not None and value < low) or (high is not None and value > high):
        raise Pose6dError(f'{name} must be within [{low}, {high}]; got {value!r}')
    return float(value)


def _range(value, name, low=None, high=None):
    """A (min, max) pair of numbers with min <= max, within [low, high]."""
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise Pose6dError(f'{name} must be a [min, max] pair of numbers; got {value!r}') from None
    lo, hi = _number(lo, name, low, high), _number(hi, name, low, high)
    if lo > hi:
        raise Pose6dError(f'{name} must be [min, max] with min <= max; got {list(value)}')
    return lo, hi
