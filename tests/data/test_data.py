import gzip
import os
import struct

import numpy as np
import pytest
import tensorflow as tf
from conftest import write_image

from ic_anogan.config import DataConfig
from ic_anogan.data import idx_files, image_files, image_set, loading as data, sources


def test_formats_and_bit_depths_decode_to_gray_in_range(tmp_path, rng):
    gray8 = rng.integers(0, 256, (20, 24), dtype=np.uint8)
    write_image(str(tmp_path / "a.png"), gray8)
    write_image(str(tmp_path / "sub" / "b.bmp"), gray8)
    write_image(str(tmp_path / "sub" / "deeper" / "c.tif"), gray8)
    write_image(str(tmp_path / "d.jpg"), np.stack([gray8] * 3, -1), quality=95)
    write_image(str(tmp_path / "e.png"), (gray8.astype(np.uint16) * 257))  # 16-bit PNG
    (tmp_path / "notes.txt").write_text("not an image")
    images = image_files.load_folder(str(tmp_path), image_size=16)
    assert [os.path.basename(p) for p in images.ids] == ["a.png", "d.jpg", "e.png", "b.bmp",
                                                          "c.tif"]
    assert images.images.shape == (5, 16, 16, 1)
    assert images.images.dtype == np.float32
    assert images.images.min() >= -1.0 and images.images.max() <= 1.0
    # 8-bit, 16-bit, BMP and TIFF of the same pixels give the same input.
    for i in (2, 3, 4):
        np.testing.assert_allclose(images.images[i], images.images[0], atol=1e-5)
    np.testing.assert_allclose(images.images[1], images.images[0], atol=0.05)  # JPEG is lossy


def test_colour_is_converted_with_tf_weights(tmp_path):
    pixel = np.zeros((4, 4, 3), np.uint8)
    pixel[...] = (200, 100, 50)
    write_image(str(tmp_path / "c.png"), pixel)
    gray = image_files.read_gray(str(tmp_path / "c.png"))
    expected = tf.image.rgb_to_grayscale(tf.constant(pixel, tf.float32) / 255.0).numpy()[..., 0]
    np.testing.assert_allclose(gray, expected, atol=1e-6)


def test_exact_size_images_are_not_resampled(tmp_path):
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    write_image(str(tmp_path / "x.png"), pixels)
    images = image_files.load_folder(str(tmp_path), image_size=16)
    np.testing.assert_allclose(images.images[0, ..., 0], pixels / 127.5 - 1.0, atol=1e-6)


def test_missing_empty_and_file_paths(tmp_path):
    with pytest.raises(image_set.DataError, match="nope: folder not found"):
        image_files.load_folder(str(tmp_path / "nope"), 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(image_set.DataError, match="empty: no image files"):
        image_files.load_folder(str(tmp_path / "empty"), 16)
    (tmp_path / "f.png").write_bytes(b"")
    with pytest.raises(image_set.DataError, match="expected a folder"):
        sources.resolve_source(str(tmp_path / "f.png"))


def test_corrupt_and_truncated_files_fail_or_are_skipped(tmp_path, rng):
    write_image(str(tmp_path / "good.png"), rng.integers(0, 256, (32, 32), dtype=np.uint8))
    (tmp_path / "garbage.png").write_bytes(b"this is not a png")
    full = tmp_path / "full.png"
    write_image(str(full), rng.integers(0, 256, (64, 64), dtype=np.uint8))
    (tmp_path / "truncated.png").write_bytes(full.read_bytes()[:200])
    os.remove(full)
    with pytest.raises(image_set.DataError, match="garbage.png: not a decodable"):
        image_files.load_folder(str(tmp_path), 16)
    images = image_files.load_folder(str(tmp_path), 16, skip_corrupt=True)
    assert [os.path.basename(p) for p in images.ids] == ["good.png"]
    assert sorted(os.path.basename(p) for p, _ in images.skipped) == ["garbage.png",
                                                                        "truncated.png"]
    assert "skipped 2 unreadable files" in image_set.describe(images)


def test_no_decodable_image_at_all(tmp_path):
    (tmp_path / "a.png").write_bytes(b"junk")
    with pytest.raises(image_set.DataError, match="no decodable image among 1 files"):
        image_files.load_folder(str(tmp_path), 16, skip_corrupt=True)


def _mvtec(root, rng, mask_size=(32, 32)):
    for split, kind, n in (("train", "good", 3), ("test", "good", 2), ("test", "void", 2)):
        for i in range(n):
            write_image(str(root / split / kind / f"{i:03d}.png"),
                        rng.integers(0, 256, (32, 32), dtype=np.uint8))
    mask = np.zeros(mask_size, np.uint8)
    mask[:mask_size[0] // 2] = 255
    write_image(str(root / "ground_truth" / "void" / "000_mask.png"), mask)
    return root


def test_mvtec_root_labels_types_and_masks(tmp_path, rng):
    root = _mvtec(tmp_path / "part", rng)
    assert sources.resolve_source(str(root)).kind == "mvtec"
    train = data.load_training_set(DataConfig(data_dir=str(root)), 16)
    assert len(train) == 3 and set(train.defect_types) == {"good"}
    test = data.load_scoring_set(DataConfig(data_dir=str(root)), 16)
    assert test.defect_types == ["good", "good", "void", "void"]
    assert test.labels.tolist() == [0, 0, 1, 1]
    assert test.has_mask.tolist() == [False, False, True, False]
    assert test.masks[2, :8].min() == 1.0 and test.masks[2, 8:].max() == 0.0
    # A bare test/ folder works too, labels from folder names.
    bare = data.load_scoring_set(DataConfig(data_dir=str(root / "test")), 16)
    assert bare.labels.tolist() == [0, 0, 1, 1]


def test_mask_of_wrong_size_is_an_error(tmp_path, rng):
    root = _mvtec(tmp_path / "part", rng, mask_size=(30, 32))
    with pytest.raises(image_set.DataError,
                       match=r"000_mask.png: mask is 32x30 but its image .* is 32x32"):
        data.load_scoring_set(DataConfig(data_dir=str(root)), 16)


def _write_idx(path, array, magic, compress):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        with open(path, "wb") as f:
            f.write(payload)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_one_class_protocol(tmp_path, rng, compress):
    suffix = ".gz" if compress else ""
    classes = np.array([0, 1, 2, 1, 0, 1], np.uint8)
    pixels = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    for split in ("train", "t10k"):
        _write_idx(str(tmp_path / f"{split}-images-idx3-ubyte{suffix}"), pixels, 0x803, compress)
        _write_idx(str(tmp_path / f"{split}-labels-idx1-ubyte{suffix}"), classes, 0x801, compress)
    train = data.load_training_set(DataConfig(data_dir=f"idx:{tmp_path}:1"), 16)
    assert len(train) == 3 and train.labels.tolist() == [0, 0, 0]
    assert train.images.shape == (3, 16, 16, 1)
    test = data.load_scoring_set(DataConfig(data_dir=f"idx:{tmp_path}:1"), 16)
    assert test.labels.tolist() == [1, 0, 1, 0, 1, 0]
    assert test.defect_types[:3] == ["class_0", "good", "class_2"]


def test_idx_wrong_magic_and_bad_spec(tmp_path, rng):
    path = str(tmp_path / "train-images-idx3-ubyte")
    _write_idx(path, rng.integers(0, 256, (2, 4, 4), dtype=np.uint8), 0x801, False)
    with pytest.raises(image_set.DataError, match="magic number 0x00000801, expected 0x00000803"):
        idx_files.read_idx(path, 0x803)
    with pytest.raises(image_set.DataError, match="idx:FOLDER:CLASS"):
        sources.resolve_source("idx:nowhere")


def test_holdout_is_disjoint_seeded_and_never_empty(rng):
    images = image_set.ImageSet(rng.uniform(-1, 1, (50, 16, 16, 1)).astype(np.float32),
                           [f"i{k}" for k in range(50)], np.zeros(50, np.int64), ["good"] * 50)
    train, held = data.split_holdout(images, 0.1, seed=3)
    assert len(train) == 45 and len(held) == 5
    assert not set(train.ids) & set(held.ids)
    assert data.split_holdout(images, 0.1, seed=3)[1].ids == held.ids
    assert data.split_holdout(images, 0.1, seed=4)[1].ids != held.ids
    with pytest.raises(image_set.DataError, match="nothing left"):
        data.split_holdout(images.subset([0]), 0.5, seed=0)


def test_training_stream_is_a_function_of_the_seed_and_the_batch_index():
    images = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)

    def take(dataset, count):
        return [b.numpy().ravel().astype(int).tolist() for b in dataset.take(count)]

    stream = take(data.training_stream(images, 4, seed=1), 6)
    assert stream == take(data.training_stream(images, 4, seed=1), 6)
    assert all(len(b) == 4 for b in stream)
    flat = sum(stream, [])
    # Every pass is a permutation, reshuffled from pass to pass; batches run across passes.
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert flat[:10] != flat[10:20]
    # Started at batch 3 (a resumed run), it is the same stream from batch 3 on.
    assert take(data.training_stream(images, 4, seed=1, start_batch=3), 3) == stream[3:6]
    # A second iterator over the same dataset starts at the same batch again.
    again = data.training_stream(images, 4, seed=1)
    take(again, 2)
    assert take(again, 2) == stream[:2]
    assert take(data.training_stream(images, 4, seed=2), 6) != stream
    ordered = [b.numpy().ravel().tolist() for b in data.make_dataset(images, 4)]
    assert ordered == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
