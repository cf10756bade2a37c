"""OpenMP threads that sleep when they wait: fits that slow down no more than a busy machine does.

PyTorch's CPU kernels run on OpenMP threads (GNU libgomp here). Between parallel regions an idle
thread *spins* for a while before it sleeps (``OMP_WAIT_POLICY`` unset: libgomp spins about 300k
iterations). That is fast on an idle machine; on a machine whose cores are taken by other
processes, a spinning thread burns the time slice its sibling needs to finish the region, and a
small network, which is little but parallel regions, crawls. Measured on this project's 2-core
machine with six busy processes beside the fit (docs/RESULTS.md, "Fits on a busy machine"): NMM-EM
on iris took 65 s with spinning threads and 11 s with ``OMP_WAIT_POLICY=PASSIVE``, digits 81 s and
15 s, where the busy machine alone explains about 4x.

:func:`prefer_passive_waiting` sets ``OMP_WAIT_POLICY=PASSIVE`` for this process and the
processes it starts, unless the variable is already set. libgomp reads it once, when PyTorch first
loads it, so the call must come before ``import torch``: the ``routemix`` command makes it first
thing. Python users who share a machine set the variable themselves (``export
OMP_WAIT_POLICY=PASSIVE``) before starting Python.
"""

from __future__ import annotations

import os
import sys

WAIT_POLICY = "OMP_WAIT_POLICY"


def prefer_passive_waiting() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless it is set; True when the setting takes effect here
    (False when the user chose a policy or PyTorch was imported already)."""
    if WAIT_POLICY in os.environ:
        return False
    os.environ[WAIT_POLICY] = "PASSIVE"
    return "torch" not in sys.modules
