import os
import platform
import subprocess
import sys

import pytest

CHURN = """
import resource
import torch
from gp_proxy.memory import freed_memory_kept


def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def churn():
    start = faults()
    for _ in range(20):
        torch.ones(16 * 2**20)  # 64 MiB allocated, written and freed
    return faults() - start


def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


before = churn()
with freed_memory_kept() as kept:
    churn()  # the first 64 MiB come from the OS once
    inside, held = churn(), resident()
print(kept, before, inside, held, resident())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="sets glibc's malloc")
@pytest.mark.parametrize("trim", [None, "65536"])  # glibc's own default, and what Dask's nanny sets on its workers
def test_freed_memory_is_reused_within_the_block_and_returned_after_it(trim):
    """Measured in a process of its own: the settings hold for a whole process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | {"OMP_NUM_THREADS": "1"}
    env |= {"MALLOC_TRIM_THRESHOLD_": trim} if trim else {}
    out = subprocess.run([sys.executable, "-c", CHURN], env=env, capture_output=True, text=True, timeout=120)
    kept, before, inside, held, released = out.stdout.split()
    pages = 20 * 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")  # what 20 fresh 64 MiB blocks fault in
    assert kept == "True" and int(before) > pages / 2
    assert int(inside) < pages / 100  # the same block, reused
    assert int(released) < int(held) - 32 * 2**20  # handed back to the OS after the block


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="sets glibc's malloc")
def test_a_discovery_in_one_process_keeps_freed_memory_while_it_scores_and_returns_it_after(monkeypatch, tmp_path):
    from synthetic import planted_tasks

    import gp_proxy.memory
    from gp_proxy.discovery import DiscoveryConfig, discover
    from gp_proxy.objective import Objective

    holders, score, before = [], Objective.__call__, gp_proxy.memory._holders  # in-process Dask workers may hold too
    monkeypatch.setattr(
        Objective, "__call__", lambda self, tree: holders.append(gp_proxy.memory._holders) or score(self, tree)
    )
    discover(planted_tasks(), DiscoveryConfig(iterations=5, population=6, seed=0), tmp_path, progress=False)
    assert len(holders) >= 6 and set(holders) == {before + 1}  # every program scored with freed memory kept
    assert gp_proxy.memory._holders == before
