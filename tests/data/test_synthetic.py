import os

import numpy as np
import pytest

from ic_anogan.config import DataConfig
from ic_anogan.data import loading as data, synthetic


def test_deterministic_and_independent_of_count():
    a = synthetic.render_set("test", 32, good=3, short_fill=2, seed=5)
    b = synthetic.render_set("test", 32, good=5, short_fill=1, seed=5)
    np.testing.assert_array_equal(a.images[:3], b.images[:3])
    np.testing.assert_array_equal(a.images[3], b.images[5])  # short_fill #0 in both
    c = synthetic.render_set("test", 32, good=3, seed=6)
    assert not np.array_equal(a.images[:3], c.images)
    # Train and test splits never share images.
    train = synthetic.render_set("train", 32, good=3, seed=5)
    assert not np.array_equal(train.images, a.images[:3])


def test_labels_masks_and_range():
    images = synthetic.render_set("test", 32, good=2, seed=0, short_fill=2, void=2,
                                  chipped_edge=1, scratch=1)
    assert images.labels.tolist() == [0, 0, 1, 1, 1, 1, 1, 1]
    assert images.images.min() >= -1 and images.images.max() <= 1
    assert images.masks[:2].sum() == 0
    assert all(images.masks[i].sum() > 0 for i in range(2, 8))
    assert images.has_mask.tolist() == [False, False] + [True] * 6


def test_a_short_fill_changes_the_package_where_its_mask_is():
    rng_state = 11
    defect, mask = synthetic.render_package(np.random.default_rng(rng_state), 64, "short_fill")
    good, _ = synthetic.render_package(np.random.default_rng(rng_state), 64, "good")
    # Same stream up to the defect: not identical, but the difference sits in the mask.
    diff = np.abs(defect.astype(float) - good.astype(float))
    inside = diff[mask > 0].mean()
    assert mask.sum() > 0 and inside > 40


def test_unknown_defect_type():
    with pytest.raises(ValueError, match="unknown defect type 'crack'"):
        synthetic.render_set("test", 32, crack=1)


def test_write_mvtec_layout_loads_back(tmp_path):
    root = str(tmp_path / "syn")
    synthetic.write_mvtec(root, 32, train_good=3, test_counts={"good": 2, "void": 2}, seed=1)
    assert sorted(os.listdir(root)) == ["ground_truth", "test", "train"]
    loaded = data.load_scoring_set(DataConfig(data_dir=root), 32)
    assert loaded.labels.tolist() == [0, 0, 1, 1]
    assert loaded.has_mask.tolist() == [False, False, True, True]
    rendered = synthetic.render_set("test", 32, good=2, void=2, seed=1)
    np.testing.assert_allclose(loaded.images, rendered.images, atol=1e-6)
    np.testing.assert_array_equal(loaded.masks, rendered.masks)
    with pytest.raises(FileExistsError):
        synthetic.write_mvtec(root, 32, train_good=1, test_counts={})


def test_package_types():
    sop = synthetic.render_set("train", 32, good=4, seed=2, package="sop")
    qfp = synthetic.render_set("train", 32, good=4, seed=2, package="qfp")
    assert not np.array_equal(sop.images, qfp.images)
    # QFP leads stick out left and right of the body; SOP has none there.
    def side_brightness(images):
        return images[:, 12:20, 4:7].mean()
    assert side_brightness(qfp.images) > side_brightness(sop.images)
    with pytest.raises(ValueError, match="unknown package 'bga'"):
        synthetic.render_set("train", 32, good=1, package="bga")
