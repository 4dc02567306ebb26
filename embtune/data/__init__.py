"""Data: training-file readers, named datasets, duplicate-free batching."""

from embtune.data.readers import TrainData, read_train_file, read_text_lines
from embtune.data.registry import resolve_dataset
from embtune.data.sampler import duplicate_free_batches

__all__ = ["TrainData", "read_train_file", "read_text_lines", "resolve_dataset", "duplicate_free_batches"]
