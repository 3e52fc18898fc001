"""ImageDataGenerator, its flow() iterator, and augment_dataset."""
import numpy as np
import pytest

from minicnn.preprocessing import ImageDataGenerator, augment_dataset


@pytest.fixture
def images(rng):
    return rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)


def dot_image(row, col, size=9, channels=None):
    image = np.zeros((size, size) + ((channels,) if channels else ()), np.float32)
    image[row, col] = 1.0
    return image


ALL_ON = dict(width_shift_range=0.2, height_shift_range=2, horizontal_flip=True,
              rotation_range=20, zoom_range=0.1)


def test_zero_ranges_are_the_identity(images):
    gen = ImageDataGenerator(seed=0)
    for image in images:
        np.testing.assert_array_equal(gen.random_transform(image), image)
    batches = list(gen.flow(images, np.arange(10), batch_size=4, shuffle=False))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), images)


@pytest.mark.parametrize("channels", [None, 3])
def test_shift_moves_content(channels):
    gen = ImageDataGenerator()
    out = gen.apply_transform(dot_image(4, 4, channels=channels), {"shift_x": 2, "shift_y": -1})
    assert out.shape == dot_image(4, 4, channels=channels).shape
    assert np.argwhere(out > 0.5)[0][:2].tolist() == [3, 6]   # right by 2, up by 1


def test_integer_shift_range_moves_by_whole_pixels():
    gen = ImageDataGenerator(width_shift_range=3, seed=1)
    for _ in range(10):
        out = gen.random_transform(dot_image(4, 4))
        assert np.isclose(out.sum(), 1.0)                 # whole-pixel moves keep the dot sharp
        row, col = np.argwhere(out > 0.5)[0]
        assert row == 4 and abs(col - 4) <= 3


def test_flip_really_flips(images):
    gen = ImageDataGenerator(horizontal_flip=True, seed=0)
    seen = set()
    for _ in range(20):
        out = gen.random_transform(images[0])
        if np.array_equal(out, images[0][:, ::-1]):
            seen.add("flipped")
        elif np.array_equal(out, images[0]):
            seen.add("kept")
        else:
            pytest.fail("a flip-only generator changed pixel values")
    assert seen == {"flipped", "kept"}


def test_rotation_by_90_degrees_is_a_rotation():
    image = np.arange(25, dtype=np.float32).reshape(5, 5)
    out = ImageDataGenerator().apply_transform(image, {"rotation": 90})
    assert any(np.allclose(out, np.rot90(image, k)) for k in (1, 3))


def test_zoom_below_one_enlarges_content():
    image = np.zeros((9, 9), np.float32)
    image[3:6, 3:6] = 1.0
    out = ImageDataGenerator().apply_transform(image, {"zoom_x": 0.5, "zoom_y": 0.5})
    assert (out > 0.5).sum() > (image > 0.5).sum()


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_dtypes_and_shapes_are_kept(images, dtype):
    x = images.astype(dtype)
    gen = ImageDataGenerator(**ALL_ON, seed=0)
    out = gen.random_transform(x[0])
    assert out.dtype == dtype and out.shape == x[0].shape
    gray = gen.random_transform(x[0, :, :, 0])
    assert gray.dtype == dtype and gray.shape == (8, 8)


def test_seeded_generators_are_reproducible(images):
    a = ImageDataGenerator(**ALL_ON, seed=7)
    b = ImageDataGenerator(**ALL_ON, seed=7)
    np.testing.assert_array_equal(a.random_transform(images[0]), b.random_transform(images[0]))
    np.testing.assert_array_equal(a.random_transform(images[1], seed=3),
                                  b.random_transform(images[1], seed=3))


def test_flow_length_and_epochs(images):
    y = np.arange(10)
    flow = ImageDataGenerator(**ALL_ON).flow(images, y, batch_size=4, seed=0)
    assert len(flow) == 3
    epoch1 = list(flow)
    epoch2 = list(flow)
    assert [len(b[1]) for b in epoch1] == [4, 4, 2]
    assert epoch1[0][0].shape == (4, 8, 8, 3) and epoch1[0][0].dtype == np.uint8
    labels1 = np.concatenate([b[1] for b in epoch1])
    labels2 = np.concatenate([b[1] for b in epoch2])
    assert sorted(labels1) == sorted(labels2) == list(range(10))   # every sample once per epoch
    assert not np.array_equal(labels1, labels2)                    # reshuffled


def test_flow_seed_reproduces_every_epoch(images):
    def run():
        flow = ImageDataGenerator(**ALL_ON).flow(images, np.arange(10), batch_size=3, seed=5)
        return [np.concatenate([b[0] for b in flow]) for _ in range(2)]
    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)


def test_flow_without_labels_and_bad_input(images):
    batches = list(ImageDataGenerator().flow(images, batch_size=5, shuffle=False))
    assert len(batches) == 2 and batches[0].shape == (5, 8, 8, 3)
    with pytest.raises(ValueError, match="samples"):
        ImageDataGenerator().flow(images, np.arange(3))
    with pytest.raises(ValueError, match="batch_size"):
        ImageDataGenerator().flow(images, batch_size=0)
    with pytest.raises(ValueError, match="copies"):
        augment_dataset(images, np.arange(10), {}, copies=0)
    with pytest.raises(ValueError, match="fill_mode"):
        ImageDataGenerator(fill_mode="mirror")


def test_augment_dataset(images):
    y = np.arange(10).reshape(10, 1)
    x_aug, y_aug = augment_dataset(images, y, ALL_ON, copies=2, seed=0)
    assert x_aug.shape == (20, 8, 8, 3) and x_aug.dtype == np.uint8
    np.testing.assert_array_equal(y_aug, np.concatenate([y, y]))
    again, _ = augment_dataset(images, y, ImageDataGenerator(**ALL_ON), copies=2, seed=0)
    np.testing.assert_array_equal(x_aug, again)
    assert not np.array_equal(x_aug[:10], images)
