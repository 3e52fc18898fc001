"""Image augmentation in the spirit of Keras's ``ImageDataGenerator``.

    gen = ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1,
                             horizontal_flip=True, seed=0)
    for epoch in range(5):
        for x_batch, y_batch in gen.flow(x_train, y_train, batch_size=64):
            ...

Images are NHWC (N, H, W, C) or grayscale (N, H, W).  Rotation, zoom and
shift are combined into one affine map and applied with
``scipy.ndimage.affine_transform`` (bilinear, as Keras), so each image is
resampled only once.  The dtype is kept: uint8 in, uint8 out.
"""
import math

import numpy as np
from scipy import ndimage

# Keras fill_mode names -> scipy.ndimage modes.  Plain "wrap" in scipy is off
# by one pixel at the border; "grid-wrap" is the periodic tiling Keras means.
FILL_MODES = {"nearest": "nearest", "constant": "constant", "reflect": "reflect", "wrap": "grid-wrap"}


class ImageDataGenerator:
    """Random shifts, flips, rotations and zooms for batches of images.

    Args:
        width_shift_range, height_shift_range: a float < 1 is a fraction of
            the width/height, a float >= 1 a number of pixels (both drawn
            uniformly from (-r, r)); an int r draws whole pixels from -r..r.
        horizontal_flip: flip left-right with probability 1/2.
        rotation_range: degrees, drawn uniformly from (-r, r).
        zoom_range: a float z draws zoom factors from [1 - z, 1 + z], or pass
            (lo, hi).  As in Keras a factor below 1 enlarges the content.
        fill_mode: how to fill pixels coming from outside the image:
            "nearest", "constant", "reflect" or "wrap".
        cval: the fill value for fill_mode="constant".
        seed: seeds the generator's own ``np.random.Generator``.
    """

    def __init__(self, width_shift_range=0.0, height_shift_range=0.0, horizontal_flip=False,
                 rotation_range=0.0, zoom_range=0.0, fill_mode="nearest", cval=0.0, seed=None):
        if fill_mode not in FILL_MODES:
            raise ValueError(f"fill_mode must be one of {sorted(FILL_MODES)}, got {fill_mode!r}")
        if np.isscalar(zoom_range):
            zoom_range = (1.0 - zoom_range, 1.0 + zoom_range)
        if len(zoom_range) != 2 or min(zoom_range) <= 0:
            raise ValueError(f"zoom_range must be a float in [0, 1) or a pair of positive factors, got {zoom_range!r}")
        self.width_shift_range = width_shift_range
        self.height_shift_range = height_shift_range
        self.horizontal_flip = horizontal_flip
        self.rotation_range = rotation_range
        self.zoom_range = tuple(float(z) for z in zoom_range)
        self.fill_mode = fill_mode
        self.cval = cval
        self.rng = np.random.default_rng(seed)

    def get_random_transform(self, image_shape, rng=None):
        """Draw the parameters for one image of shape (H, W[, C]); see ``apply_transform``."""
        rng = self.rng if rng is None else rng
        height, width = image_shape[:2]
        return {
            "rotation": rng.uniform(-self.rotation_range, self.rotation_range) if self.rotation_range else 0.0,
            "shift_y": _draw_shift(rng, self.height_shift_range, height),
            "shift_x": _draw_shift(rng, self.width_shift_range, width),
            "zoom_y": rng.uniform(*self.zoom_range) if self.zoom_range != (1.0, 1.0) else 1.0,
            "zoom_x": rng.uniform(*self.zoom_range) if self.zoom_range != (1.0, 1.0) else 1.0,
            "flip_horizontal": bool(self.horizontal_flip and rng.random() < 0.5),
        }

    def apply_transform(self, image, params):
        """Apply fixed transform parameters to one image (H, W) or (H, W, C).

        ``params`` keys (all optional): ``rotation`` (degrees),
        ``shift_y``/``shift_x`` (pixels; positive moves content down/right),
        ``zoom_y``/``zoom_x`` (factors), ``flip_horizontal`` (bool).
        Returns an array of the same shape and dtype.
        """
        image = np.asarray(image)
        out = _affine(image, params, FILL_MODES[self.fill_mode], self.cval)
        if params.get("flip_horizontal"):
            out = out[:, ::-1]
        return np.ascontiguousarray(out)

    def random_transform(self, image, seed=None):
        """Apply a freshly drawn random transform to one image (H, W) or (H, W, C)."""
        rng = self.rng if seed is None else np.random.default_rng(seed)
        return self.apply_transform(image, self.get_random_transform(np.shape(image), rng))

    def transform_batch(self, x, rng=None):
        """Randomly transform every image of a batch (N, H, W[, C]); returns a new array."""
        rng = self.rng if rng is None else rng
        return np.stack([self.apply_transform(img, self.get_random_transform(img.shape, rng))
                         for img in x]) if len(x) else np.array(x, copy=True)

    def flow(self, x, y=None, batch_size=32, shuffle=True, seed=None):
        """An iterable over augmented batches; one full pass per ``iter()``.

        ``len(flow)`` is the number of batches per epoch (the last may be
        short).  Each new pass reshuffles.  With a seed here (or on the
        generator) the whole sequence of passes is reproducible.
        """
        if seed is None:
            seed = int(self.rng.integers(2**63))
        return BatchFlow(self, x, y, batch_size, shuffle, seed)


class BatchFlow:
    """Batches of augmented ``(x, y)`` (or only x when y is None), epoch after epoch.

    Shapes: x (N, H, W[, C]), y (N, ...); yields x_batch (B, H, W[, C]) and
    y_batch (B, ...) with B = batch_size except possibly for the last batch.
    """

    def __init__(self, generator, x, y, batch_size, shuffle, seed):
        self.generator, self.x = generator, np.asarray(x)
        self.y = None if y is None else np.asarray(y)
        if self.x.ndim not in (3, 4):
            raise ValueError(f"flow expects images (N, H, W) or (N, H, W, C), got shape {self.x.shape}")
        if self.y is not None and len(self.y) != len(self.x):
            raise ValueError(f"flow: x has {len(self.x)} samples but y has {len(self.y)}")
        if int(batch_size) < 1:
            raise ValueError(f"flow: batch_size must be at least 1, got {batch_size}")
        self.batch_size, self.shuffle = int(batch_size), shuffle
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        order = self.rng.permutation(len(self.x)) if self.shuffle else np.arange(len(self.x))
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            x_batch = self.generator.transform_batch(self.x[index], self.rng)
            yield x_batch if self.y is None else (x_batch, self.y[index])


def augment_dataset(x, y, generator_or_kwargs, copies=1, seed=None):
    """Return ``copies`` randomly transformed copies of every image, with their labels.

    The originals are not included: concatenate and shuffle yourself, e.g.
    ``x_all = np.concatenate([x, x_aug])``.

    Args:
        x: images (N, H, W[, C]); y: labels (N, ...).
        generator_or_kwargs: an ImageDataGenerator or a dict of its arguments.
        seed: seeds the draws, independently of the generator's own state.

    Returns:
        ``(x_aug, y_aug)`` of shapes (copies*N, H, W[, C]) and (copies*N, ...).
    """
    if copies < 1:
        raise ValueError(f"augment_dataset: copies must be at least 1, got {copies}")
    generator = generator_or_kwargs
    if isinstance(generator_or_kwargs, dict):
        generator = ImageDataGenerator(**generator_or_kwargs)
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x), np.asarray(y)
    x_aug = np.concatenate([generator.transform_batch(x, rng) for _ in range(copies)])
    return x_aug, np.concatenate([y] * copies)


def _draw_shift(rng, shift_range, size):
    """A shift in pixels following Keras's reading of ``*_shift_range``."""
    if not shift_range:
        return 0.0
    if isinstance(shift_range, (int, np.integer)):
        return float(rng.integers(-shift_range, shift_range + 1))
    limit = shift_range * size if shift_range < 1 else shift_range
    return float(rng.uniform(-limit, limit))


def _affine(image, params, mode, cval):
    """Rotate, zoom and shift one image about its centre with a single resampling."""
    theta = np.deg2rad(params.get("rotation", 0.0))
    shift = np.array([params.get("shift_y", 0.0), params.get("shift_x", 0.0)])
    zoom = np.diag([params.get("zoom_y", 1.0), params.get("zoom_x", 1.0)])
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    matrix = rotation @ zoom            # maps an output pixel to where it is read from
    if np.allclose(matrix, np.eye(2)) and not shift.any():
        return image.copy()             # identity: skip the resampling (and its rounding)
    centre = (np.array(image.shape[:2]) - 1) / 2.0
    offset = centre - matrix @ centre - shift
    if image.ndim == 3:                 # leave the channel axis untouched
        matrix3 = np.eye(3)
        matrix3[:2, :2] = matrix
        matrix, offset = matrix3, np.append(offset, 0.0)
    out = ndimage.affine_transform(image.astype(np.float64), matrix, offset=offset,
                                   order=1, mode=mode, cval=cval)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(image.dtype)
