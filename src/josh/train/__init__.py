"""Training on harvested data: TRL trainers with PEFT LoRA adapters (the `[train]` extra).

Importing this package imports no torch; `train` imports the training stack when it runs."""

from josh.train.config import TrainConfig
from josh.train.trainer import TrainProgress, TrainResult, train

__all__ = ["TrainConfig", "TrainProgress", "TrainResult", "train"]
