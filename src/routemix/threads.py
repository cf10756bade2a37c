"""OpenMP threads on a shared CPU: fits that slow down no more than a busy machine does.

PyTorch's CPU kernels run on OpenMP threads (GNU libgomp here). Between parallel regions an idle
thread *spins* for a while before it sleeps (``OMP_WAIT_POLICY`` unset). That is fast on an idle
machine; on one whose cores other processes take, a spinning thread burns the time slice its
sibling needs to finish the region, and a small network, which is little else than short parallel
regions, crawls. Measured on this project's 2-core machine beside six busy processes, where the
load explains 3.5-4x (docs/RESULTS.md, "Fits on a busy machine"): NMM-EM on iris took 44x its idle
time with spinning threads, 3x with ``OMP_WAIT_POLICY=PASSIVE``; the image network 8x and 4x.
Passive waiting costs small networks 2-3x on an idle machine, one thread costs them nothing, so
the ``routemix`` command

* calls :func:`prefer_passive_waiting` first thing (libgomp reads the variable once, when PyTorch
  loads it, so this must come before ``import torch``), and
* fits vector data inside :func:`torch_threads` ``(1)`` unless ``OMP_NUM_THREADS`` is set.

Python users who share a machine set ``OMP_WAIT_POLICY=PASSIVE`` themselves before starting Python.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

WAIT_POLICY = "OMP_WAIT_POLICY"


def prefer_passive_waiting() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless it is set; True when the setting takes effect here
    (False when the user chose a policy or PyTorch was imported already)."""
    if WAIT_POLICY in os.environ:
        return False
    os.environ[WAIT_POLICY] = "PASSIVE"
    return "torch" not in sys.modules


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``count`` inside the block, restored after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
