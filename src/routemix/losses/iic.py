"""Invariant Information Clustering (Ji et al., 2019): mutual information between the cluster
assignments of an image and of its transformed copy.

For softmax outputs ``z, z'`` (B, K) of a batch and its augmented copy, the joint distribution
of the two assignments is estimated over the batch and symmetrised,

    P = sym( 1/B sum_i z_i z'_i^T ),     sym(A) = (A + A^T) / 2,

and the objective is its mutual information ``I(z, z') = sum_cc' P_cc' log(P_cc' / (P_c P_c'))``,
with the row and column marginals ``P_c, P_c'``. Maximising it makes the two assignments agree
(the diagonal) while spreading the samples over all clusters (the marginals' entropy); the
maximum, ``log K``, is reached by confident, identical and balanced assignments.

The thesis (Table 4.3, "IIC in our setting") runs IIC with a single head, no over-clustering
and one augmented copy per image per batch, on the NMM-EM network and input; that is what
:class:`routemix.cluster.IICClustering` trains.
"""

from __future__ import annotations

import torch


def joint_assignment(z: torch.Tensor, z_aug: torch.Tensor) -> torch.Tensor:
    """Symmetrised joint distribution P (K, K) of two soft assignments (B, K)."""
    if z.shape != z_aug.shape or z.dim() != 2:
        raise ValueError(
            f"expected two (batch, K) assignment matrices of one shape, got {tuple(z.shape)} and {tuple(z_aug.shape)}."
        )
    joint = z.T @ z_aug / z.shape[0]
    return (joint + joint.T) / 2


def mutual_information(joint: torch.Tensor, eps: float = torch.finfo(torch.float32).eps) -> torch.Tensor:
    """``I = sum P log(P / (P_row P_col))`` of a joint distribution; ``eps`` keeps log finite."""
    joint = joint.clamp_min(eps)
    rows = joint.sum(dim=1, keepdim=True)
    cols = joint.sum(dim=0, keepdim=True)
    return (joint * (joint.log() - rows.log() - cols.log())).sum()


def iic_loss(z: torch.Tensor, z_aug: torch.Tensor) -> torch.Tensor:
    """The IIC objective to minimise: ``-I(z, z')`` of softmax assignments ``z, z_aug`` (B, K)."""
    return -mutual_information(joint_assignment(z, z_aug))
