"""Training: the three SEED-Story stages on one ``accelerate`` trainer (the release's training scripts).

Example::

    from seed_story.training import TrainConfig, train

    cfg = TrainConfig.for_stage("stage2", output_dir="runs/s2", max_steps=100, data={"kind": "toy"})
    result = train(cfg)          # result.checkpoint is a native checkpoint folder
"""

from seed_story.training.config import TrainConfig, load_train_config
from seed_story.training.run import train
from seed_story.training.trainer import Trainer, TrainResult

__all__ = ["TrainConfig", "TrainResult", "Trainer", "load_train_config", "train"]
