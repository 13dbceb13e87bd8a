"""Data: files on disk (`readers`), whole data sets for training (`images`), proxy batches (`batches`),
the user cache and downloads (`paths`). Imports flow readers -> images -> batches."""

from vit_space.data.batches import BatchSpec, DatasetInfo, get_dataset, make_batch, register_dataset
from vit_space.data.images import ImageData, fetch_fmnist, load_images

__all__ = [
    "BatchSpec",
    "DatasetInfo",
    "ImageData",
    "fetch_fmnist",
    "get_dataset",
    "load_images",
    "make_batch",
    "register_dataset",
]
