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
    with pytest.raises(ValueError, match="unknown defect type 'crack' for sop"):
        synthetic.render_set("test", 32, crack=1)
    with pytest.raises(ValueError, match="unknown defect type 'void' for texture; expected one "
                                         "of \\('pit', 'crack', 'uneven', 'frayed'\\)"):
        synthetic.render_set("test", 32, package="texture", void=1)


def test_texture_set_has_its_own_defects_and_default_counts():
    surfaces = synthetic.render_set("test", 32, good=2, seed=0, package="texture", pit=1,
                                    crack=1, uneven=1, frayed=1)
    assert surfaces.defect_types == ["good", "good", "pit", "crack", "uneven", "frayed"]
    assert surfaces.masks[:2].sum() == 0 and all(surfaces.masks[i].sum() > 0
                                                 for i in range(2, 6))
    again = synthetic.render_set("test", 32, good=2, seed=0, package="texture")
    np.testing.assert_array_equal(again.images, surfaces.images[:2])
    # A textured surface: good images vary within themselves, unlike a flat patch.
    assert surfaces.images[:2].std(axis=(1, 2, 3)).min() > 0.05
    # The large faint ones are large: bigger masks than a pit's.
    assert surfaces.masks[4].sum() > 4 * surfaces.masks[2].sum()
    assert DataConfig(synthetic_package="texture").synthetic_test_counts == {
        "good": 1100, "pit": 200, "crack": 200, "uneven": 200, "frayed": 200}


def test_a_pasted_defect_changes_the_image_where_its_mask_is():
    rng = np.random.default_rng(3)
    from ic_anogan.data.synthetic_defects import SURFACE_DEFECT_TYPES, paste_defect
    base = np.full((64, 64), 0.5)
    for defect in SURFACE_DEFECT_TYPES:
        pasted, mask = paste_defect(rng, base, defect)
        assert mask.any() and pasted.min() >= 0 and pasted.max() <= 1
        changed = np.abs(pasted - base)
        assert changed[mask].mean() > 2 * changed[~mask].mean() + 1e-3, defect
    with pytest.raises(ValueError, match="square 2-D image"):
        paste_defect(rng, np.zeros((4, 5)), "pit")
    with pytest.raises(ValueError, match="unknown surface defect 'dent'"):
        paste_defect(rng, base, "dent")


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
