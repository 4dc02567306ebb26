"""The one training loop shared by every objective."""

from embtune.training.trainer import train

__all__ = ["train"]
