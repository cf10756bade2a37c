"""routemix.allocator: freed large blocks are reused instead of being mapped and faulted in again.

The setting is process-wide and cannot be undone, so each case runs in a fresh interpreter, with
glibc's malloc variables removed from its environment (an in-process CLI test may have set them).
"""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from routemix import allocator
from routemix.errors import RoutemixError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a glibc malloc setting")

# Page faults per training step of a 4-path convolution, batch norm and ReLU whose activations
# (33.5 MB) are above glibc's largest mmap threshold (32 MiB): without the setting every step maps,
# faults in (4 KiB at a time) and unmaps each of them afresh, about 74,000 faults a step. With it a
# step reuses the freed blocks and faults nothing, except in the odd step in which the fragmented
# heap still grows by a 32 MiB block (0-4 blocks over steps 4-7 in repeated runs, on 2 cores): the
# median step of the eight after four warm-up steps is the steady state.
FAULTS_OF_TRAINING_STEPS = textwrap.dedent("""
    import resource, statistics, subprocess, sys, torch
    from routemix import allocator
    from routemix.nn import PathBatchNorm2d, PathConv2d
    mode = sys.argv[1]
    if mode in ("call", "inherit"):
        print("applied", allocator.keep_freed_memory(), flush=True)
    if mode == "inherit":  # the child gets only the environment this process now has
        sys.exit(subprocess.call([sys.executable, "-c", sys.argv[2], "measure", sys.argv[2]]))
    torch.manual_seed(0)
    conv, norm = PathConv2d(4, 32, 32, 3), PathBatchNorm2d(4, 32)
    x = torch.randn(64, 4, 32, 32, 32)
    faults = []
    for step in range(12):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.relu(norm(conv(x))).sum().backward()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print("faults", statistics.median(faults[4:]))
""")


def _run(mode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in allocator.CHILD_ENVIRONMENT and k != "GLIBC_TUNABLES"}
    out = subprocess.run(
        [sys.executable, "-c", FAULTS_OF_TRAINING_STEPS, mode, FAULTS_OF_TRAINING_STEPS],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def _glibc() -> bool:
    return platform.libc_ver()[0] == "glibc"


@pytest.fixture(scope="module")
def plain():
    return _run("measure")


@pytest.mark.skipif(not _glibc(), reason="needs glibc's malloc")
def test_freed_large_blocks_are_reused_not_faulted_in_again(plain):
    kept = _run("call")
    assert kept["applied"] == "True"
    assert float(plain["faults"]) > 8192, "without the setting every step should fault its 33.5 MB blocks in afresh"
    assert float(kept["faults"]) < float(plain["faults"]) / 10


@pytest.mark.skipif(not _glibc(), reason="needs glibc's malloc")
def test_child_processes_inherit_the_setting(plain):
    assert float(_run("inherit")["faults"]) < float(plain["faults"]) / 10


def test_opt_out_variable_leaves_malloc_alone(monkeypatch):
    monkeypatch.setenv(allocator.OPT_OUT_VARIABLE, "0")
    assert allocator.keep_freed_memory_unless_opted_out() is False


def test_unreadable_opt_out_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(allocator.OPT_OUT_VARIABLE, "disable")
    with pytest.raises(RoutemixError, match="ROUTEMIX_KEEP_FREED_MEMORY.*'disable'.*0 to turn"):
        allocator.keep_freed_memory_unless_opted_out()
