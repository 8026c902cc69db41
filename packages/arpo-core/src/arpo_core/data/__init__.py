"""Datasets as prompt samples: the paper's evaluation sets (JSONL) and its RL data (verl parquet)."""

from arpo_core.data.loaders import DatasetError, load_samples
from arpo_core.data.samples import TAG_PROTOCOL_SYSTEM_PROMPT, Sample

__all__ = ["TAG_PROTOCOL_SYSTEM_PROMPT", "DatasetError", "Sample", "load_samples"]
