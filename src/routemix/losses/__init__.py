"""Objectives, each a small module with buffers where it needs state."""

from routemix.losses.consistency import consistency_kl
from routemix.losses.nmm import NMMLoss, NMMOutput, gamma_for_batch_size, zscore_bound

__all__ = ["NMMLoss", "NMMOutput", "consistency_kl", "gamma_for_batch_size", "zscore_bound"]
