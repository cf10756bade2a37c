"""Datasets (registry, offline roots, user files) and transforms (Sobel input, augmentation)."""

from routemix.data.registry import LoadedDataset, default_data_root, get_dataset_spec, list_datasets, load_dataset

__all__ = ["LoadedDataset", "default_data_root", "get_dataset_spec", "list_datasets", "load_dataset"]
