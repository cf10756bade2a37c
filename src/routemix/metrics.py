"""Clustering metrics (accuracy under the best one-to-one matching, NMI, ARI) and gate statistics.

Clustering accuracy (Table 4.3 of the thesis, following the Hungarian approach) matches predicted
cluster indices to true labels with a linear sum assignment on the contingency table and counts
the samples that fall on matched pairs. When the number of clusters differs from the number of
classes, unmatched clusters (or classes) count as errors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix


def _check_labels(labels_true, labels_pred) -> tuple[np.ndarray, np.ndarray]:
    labels_true = np.asarray(labels_true).ravel()
    labels_pred = np.asarray(labels_pred).ravel()
    if labels_true.shape != labels_pred.shape:
        raise ValueError(
            f"labels_true has {labels_true.size} entries but labels_pred has {labels_pred.size}; "
            "pass one predicted label per true label."
        )
    if labels_true.size == 0:
        raise ValueError("cannot score an empty clustering: pass at least one label.")
    return labels_true, labels_pred


def cluster_accuracy(labels_true, labels_pred) -> float:
    """Share of samples correctly labelled after the best one-to-one cluster-to-class matching."""
    labels_true, labels_pred = _check_labels(labels_true, labels_pred)
    counts = contingency_matrix(labels_true, labels_pred)  # (classes, clusters)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / labels_true.size)


def nmi(labels_true, labels_pred) -> float:
    """Normalised mutual information (arithmetic normalisation, scikit-learn's default)."""
    return float(normalized_mutual_info_score(*_check_labels(labels_true, labels_pred)))


def ari(labels_true, labels_pred) -> float:
    """Adjusted Rand index."""
    return float(adjusted_rand_score(*_check_labels(labels_true, labels_pred)))


def clustering_scores(labels_true, labels_pred) -> dict[str, float]:
    """ACC, NMI and ARI in one dict, the three numbers every routemix table reports."""
    return {
        "acc": cluster_accuracy(labels_true, labels_pred),
        "nmi": nmi(labels_true, labels_pred),
        "ari": ari(labels_true, labels_pred),
    }


# --- gate statistics (thesis ch. 5.1) ------------------------------------------------------------

SKEW_THRESHOLD = 0.9  # a gating vector is skewed when one of its gates averages above this


def gate_statistics(gates: Mapping[str, torch.Tensor]) -> list[dict]:
    """Statistics of every gating vector ``G_i`` (eq. 3.5) over a set of samples.

    ``gates`` maps each router's gate network to its gates for all N samples, ``(N, P_in, P_out)``
    (rows sum to 1). One dict per (router, incoming path i) with, over the N samples:

    * ``mean``, ``std``: per outgoing path j, the mean and spread of gate ``g_ij``;
    * ``low``, ``high``: per j, the 5th and 95th percentiles of ``g_ij`` (how far a gate stretches:
      the thesis' Fig. 5.1 shows a gate that stays below 0.4 without the regulariser and reaches
      above 0.5 with it);
    * ``entropy``: the entropy of the mean gating vector, divided by ``log P_out`` so that 1 means
      every outgoing path gets the same share on average and 0 means one path gets everything;
    * ``skewed``: whether one gate averages above :data:`SKEW_THRESHOLD` (0.9) over the data. This
      is the thesis' "a particular gate predominantly activates for all samples" (ch. 5.1) made
      a number: the vector sends over 90% of its input to one outgoing path, whatever the input.
      (A vector that is one-hot per sample but spreads its choices over the data is not skewed:
      that is routing, not collapse.)
    """
    stats = []
    for name, values in gates.items():
        values = values.detach().double().cpu()
        if values.dim() != 3 or values.shape[0] == 0:
            raise ValueError(f"gates of {name!r} must be (N, P_in, P_out) with N >= 1, got {tuple(values.shape)}.")
        mean = values.mean(0)
        std = values.std(0, correction=0)
        low, high = values.quantile(torch.tensor([0.05, 0.95], dtype=values.dtype), dim=0)
        num_out = values.shape[2]
        for i in range(values.shape[1]):
            m = mean[i]
            entropy = float(-(m * m.clamp_min(1e-12).log()).sum() / math.log(num_out)) if num_out > 1 else 0.0
            stats.append(
                {
                    "router": name,
                    "incoming": i,
                    "mean": m.tolist(),
                    "std": std[i].tolist(),
                    "low": low[i].tolist(),
                    "high": high[i].tolist(),
                    "entropy": entropy,
                    "skewed": bool(m.max() > SKEW_THRESHOLD),
                }
            )
    return stats


def summarize_gate_statistics(stats: list[dict]) -> dict[str, float]:
    """Network-level figures from :func:`gate_statistics`: the share of skewed gating vectors,
    their mean normalised entropy, the mean spread (std) of a gate over the data, and the mean 95th
    percentile of each vector's least-used gate (does the minority gate ever win?)."""
    if not stats:
        return {}
    return {
        "skewed_share": float(np.mean([s["skewed"] for s in stats])),
        "entropy": float(np.mean([s["entropy"] for s in stats])),
        "spread": float(np.mean([np.mean(s["std"]) for s in stats])),
        "minority_high": float(np.mean([s["high"][int(np.argmin(s["mean"]))] for s in stats])),
    }


USED_SHARE = 0.01  # an outgoing path counts as used when it receives at least this share of a router's traffic


def path_usage(
    gates: Mapping[str, torch.Tensor], top_k: Mapping[str, int] | None = None, min_share: float = USED_SHARE
) -> list[dict]:
    """How much of each router's traffic every outgoing path receives, over a set of samples.

    ``gates`` as for :func:`gate_statistics`, ``(N, P_in, P_out)`` per gate network. A router named
    in ``top_k`` is sparse (:class:`~routemix.nn.sparse.SparseRouting`): each (sample, incoming
    path) goes to its ``k`` most probable paths, and a path's share is its share of those
    assignments. Any other router is soft, every path computes on every sample, and a path's share
    is its share of the gate mass (the mean of ``g_ij`` over samples and incoming paths).

    One dict per router: ``share`` (P_out values summing to 1), ``used`` (how many paths get at
    least ``min_share``) and ``peak``, the busiest path's share times P_out (1 when the paths are
    used evenly, P_out when one takes everything). This is what a layer with an upper bound on its
    paths reports as the paths it needs (thesis ch. 6).
    """
    top_k = top_k or {}
    usage = []
    for name, values in gates.items():
        values = torch.as_tensor(values).detach().double().cpu()
        if values.dim() != 3 or values.shape[0] == 0:
            raise ValueError(f"gates of {name!r} must be (N, P_in, P_out) with N >= 1, got {tuple(values.shape)}.")
        num_out = values.shape[-1]
        rows = values.flatten(0, 1)
        if name in top_k:
            chosen = rows.topk(min(top_k[name], num_out), dim=-1).indices.flatten()
            share = torch.bincount(chosen, minlength=num_out).double() / chosen.numel()
        else:
            share = rows.mean(0) / rows.mean(0).sum()
        usage.append(
            {
                "router": name,
                "share": share.tolist(),
                "used": int((share >= min_share).sum()),
                "peak": float(share.max() * num_out),
                "sparse": name in top_k,
            }
        )
    return usage
