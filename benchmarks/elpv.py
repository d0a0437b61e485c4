"""Real inspection images: polycrystalline solar cells of the ELPV set, good against defective.

    .venv/bin/pip install elpv-dataset      # evaluation only: CC BY-NC-SA 4.0, never shipped
    .venv/bin/python benchmarks/elpv.py --work_dir /tmp/elpv

The project has no real IC images; electroluminescence images of solar cells
(Buerhop-Lutz et al. 2018, Deitsch et al. 2019) are the nearest public real
inspection set: cracks, broken fingers and dark regions on a textured,
varying background. Protocol, fixed before looking at any result:

  * polycrystalline cells only; labelled fully functional (defect
    probability 0) are good, fully defective (probability 1) are defective;
    the uncertain ones (1/3, 2/3) are left out;
  * the good cells are shuffled with --seed; --test_good of them are test
    images, the next --validation_good a good-only validation split (for
    choosing settings: map_candidates.py pastes synthetic defects into
    them, benchmarks/real_surfaces.py), the rest train (of which the
    library holds 10% out to calibrate);
  * --budget=demo trains at the demo's budget (16 base filters, 1380
    updates, encoder 20 epochs); --budget=default at the library's defaults
    for a set of this size (the training plan's base filters and updates);
    every other setting is the library's default;
  * the test folder (good/, defective/) is scored by benchmarks/map_candidates.py:
    every map setting of that table, the settings chosen on validation
    data, never on these images.

Cells are 300x300 and are resized to --image_size by the library's loader.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import common

HERE = os.path.dirname(os.path.abspath(__file__))


def write_folders(work_dir: str, test_good: int, validation_good: int, seed: int) -> dict:
    """train/, validation/good/, test/good/, test/defective/ as PNG files; returns the
    counts."""
    import numpy as np
    from PIL import Image
    try:
        from elpv_dataset.utils import load_dataset
    except ImportError:
        sys.exit("elpv_dataset is not installed: .venv/bin/pip install elpv-dataset "
                 "(CC BY-NC-SA 4.0: for evaluation only)")
    images, probabilities, types = load_dataset()
    poly = types == "poly"
    good = np.flatnonzero(poly & (probabilities == 0.0))
    defective = np.flatnonzero(poly & (probabilities == 1.0))
    good = np.random.default_rng(seed).permutation(good)
    split = test_good + validation_good
    parts = {"train": good[split:], os.path.join("validation", "good"): good[test_good:split],
             os.path.join("test", "good"): good[:test_good],
             os.path.join("test", "defective"): defective}
    for folder, rows in parts.items():
        path = os.path.join(work_dir, "data", folder)
        os.makedirs(path, exist_ok=True)
        for row in rows:
            Image.fromarray(images[row]).save(os.path.join(path, f"cell{row:04d}.png"))
    return {folder: len(rows) for folder, rows in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", default="/tmp/ic_anogan_elpv")
    parser.add_argument("--test_good", type=int, default=300)
    parser.add_argument("--validation_good", type=int, default=100)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--budget", choices=["demo", "default"], default="demo")
    parser.add_argument("--train_only", action="store_true",
                        help="stop after training (benchmarks/real_surfaces.py scores every map "
                        "candidate on validation/ and test/)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from ic_anogan.config import DataConfig, ModelConfig, TrainConfig
    from ic_anogan.models.model_dir import GENERATOR_FILE

    data_root = os.path.join(args.work_dir, "data")
    if not os.path.isdir(data_root):
        counts = write_folders(args.work_dir, args.test_good, args.validation_good, args.seed)
        print(f"ELPV polycrystalline cells: {counts}", flush=True)
    model_dir = os.path.join(args.work_dir, "model" if args.budget == "demo" else "model_default")
    if not os.path.exists(os.path.join(model_dir, GENERATOR_FILE)):
        if args.budget == "demo":
            model_config, train_config = ModelConfig(args.image_size, 100, 16), TrainConfig(
                updates=1380)
        else:  # the training plan resolves filters and length from the set's size
            model_config, train_config = ModelConfig(args.image_size, 100, None), TrainConfig()
        result = common.train(
            model_dir, model_config=model_config, train_config=train_config,
            data_config=DataConfig(data_dir=os.path.join(data_root, "train")))
        print(f"trained in {result.gan.seconds + result.encoder.seconds:.0f} s", flush=True)
    if args.train_only:
        return
    subprocess.run([sys.executable, os.path.join(HERE, "map_candidates.py"),
                    f"--model_dir={model_dir}", f"--data_dir={os.path.join(data_root, 'test')}"],
                   check=True)


if __name__ == "__main__":
    main()
