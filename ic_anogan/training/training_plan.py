"""Settings that depend on how many good images there are, resolved once they are loaded.

A user who sets a value always wins; otherwise:
  - base_filters: 64 (the study's DCGAN) from FULL_SIZE_IMAGES good images
    up, 32 below: a few hundred images do not fill the larger network, which
    then memorises them and costs four times the compute;
  - augmentation (DiffAugment, augment.py): off unless asked for. Measured
    on the synthetic validation split, it lowered every small defect type's
    AUROC with 360 and with 2949 training images (README, "The generator"),
    while R1 did the job augmentation is meant for (keeping D from learning
    a few hundred images by heart);
  - length: `updates` generator updates (config.DEFAULT_UPDATES unless
    given), cut into epochs of one pass over the images but at least
    config.MIN_UPDATES_PER_EPOCH updates; `epochs` given instead keeps one
    pass per epoch, as before.
The plan is logged and stored in the model's config.json with the reason
for each choice.
"""

from __future__ import annotations

import dataclasses
import math

from ic_anogan import config as config_lib
from ic_anogan.config import ModelConfig, TrainConfig

FULL_SIZE_IMAGES = 2000


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """What a run will do, every size-dependent choice resolved."""

    base_filters: int
    augment: bool
    updates_per_epoch: int
    epochs: int
    monitor_every_epochs: int
    # Why each value was chosen: "flag" or the rule that chose it.
    reasons: dict

    @property
    def updates(self) -> int:
        return self.updates_per_epoch * self.epochs


def plan_training(train_images: int, global_batch: int, model_config: ModelConfig,
                  train_config: TrainConfig) -> TrainingPlan:
    """Resolves the settings left as None for `train_images` images in batches of `global_batch`."""
    reasons = {}
    if model_config.base_filters is not None:
        base_filters, reasons["base_filters"] = model_config.base_filters, "given"
    else:
        base_filters = 64 if train_images >= FULL_SIZE_IMAGES else 32
        reasons["base_filters"] = (f"{train_images} training images "
                                   f"{'>=' if base_filters == 64 else '<'} {FULL_SIZE_IMAGES}")
    if train_config.augment is not None:
        augment, reasons["augment"] = train_config.augment, "given"
    else:
        augment = False
        reasons["augment"] = "default: it lowered detection at every data size measured"
    batches = max(train_images // global_batch, 1)
    if train_config.epochs is not None:
        updates_per_epoch, epochs = batches, train_config.epochs
        reasons["length"] = f"{epochs} epochs given, one pass each"
    else:
        wanted = train_config.updates or config_lib.DEFAULT_UPDATES
        per_pass = max(batches, config_lib.MIN_UPDATES_PER_EPOCH)
        epochs = max(1, round(wanted / per_pass))
        updates_per_epoch = math.ceil(wanted / epochs)
        reasons["length"] = (f"{wanted} updates {'given' if train_config.updates else '(default)'}"
                             f", {epochs} epochs of {updates_per_epoch}")
    if train_config.monitor_every_epochs is not None:
        every = train_config.monitor_every_epochs
    else:
        every = max(1, math.ceil(epochs / config_lib.SELECTION_EVALUATIONS))
    return TrainingPlan(base_filters, augment, updates_per_epoch, epochs, every, reasons)


def describe(plan: TrainingPlan, train_images: int, batch: int) -> str:
    """One log line: what was chosen and why."""
    passes = plan.updates * batch / max(train_images, 1)
    monitor = (f"every {plan.monitor_every_epochs} epochs" if plan.monitor_every_epochs
               else "off")
    return (f"base_filters {plan.base_filters} ({plan.reasons['base_filters']}); augmentation "
            f"{'on' if plan.augment else 'off'} ({plan.reasons['augment']}); "
            f"{plan.updates} generator updates = {plan.epochs} epochs of {plan.updates_per_epoch}"
            f" ({passes:.1f} passes over the images; {plan.reasons['length']}); held-out "
            f"monitor {monitor}")


def fitting_batch(train_images: int, replicas: int = 1) -> int:
    """The largest power-of-two batch per replica of which `train_images` hold one global
    batch: what a refusal of too large a batch suggests (at least 1)."""
    per_replica = max(train_images // max(replicas, 1), 1)
    return 2 ** int(math.log2(per_replica))
