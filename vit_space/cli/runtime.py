"""Where a command's work runs: `--device` and `--cluster`, shared by the sub-commands."""

from __future__ import annotations

import argparse
from contextlib import AbstractContextManager, nullcontext

import torch

from vit_space.device import resolve_device


def cluster_client(args: argparse.Namespace) -> AbstractContextManager:
    """A Dask client for `--cluster` (`vit_space.cluster.connect`), or None without it."""
    if not getattr(args, "cluster", None):
        return nullcontext(None)
    from vit_space.cluster import connect

    return connect(args.cluster)


def work_device(args: argparse.Namespace) -> str | torch.device:
    """`--device` resolved here, or as given when `--cluster` workers resolve it on their own machines."""
    return args.device if getattr(args, "cluster", None) else resolve_device(args.device)
