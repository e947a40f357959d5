"""The process settings the commands apply, checked in fresh processes: the allocator (with
glibc's counters) and the garbage collector at exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from calcinet.runtime import glibc

glibc_only = pytest.mark.skipif(glibc() is None, reason="glibc malloc only")

# Allocate 8 MiB (above glibc's initial 128 KiB mmap threshold) and count the new blocks glibc
# serves with their own mmap (mallinfo2().hblks) while it is held; again after tune_malloc().
PROBE = """
import ctypes, json, os, sys
from calcinet.runtime import glibc, tune_malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = glibc()
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2

def new_mappings_while_holding(mib: int) -> int:
    mapped = libc.mallinfo2().hblks
    block = libc.malloc(mib * 1024 * 1024)
    count = libc.mallinfo2().hblks - mapped
    libc.free(block)
    return count

before = new_mappings_while_holding(8)
applied = tune_malloc()
# A larger size: glibc's dynamic threshold has already risen to 8 MiB after the first free.
after = new_mappings_while_holding(16)
print(json.dumps({
    "before": before, "after": after, "applied": applied,
    "env": {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")},
}))
"""


def probe(**env: str) -> dict:
    clean = {
        k: v for k, v in os.environ.items()
        if not k.startswith("MALLOC_") and k != "CALCINET_MALLOC_TUNING"
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
        timeout=60, check=True,
    )
    return json.loads(result.stdout)


@glibc_only
def test_large_blocks_stay_on_the_heap_after_tuning_and_children_inherit_it() -> None:
    result = probe()
    assert result["before"] == 1  # the default: its own mapping, unmapped again on free
    assert result["applied"] is True
    assert result["after"] == 0  # 16 MiB now comes from the heap and is reused
    assert result["env"] == {
        "MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
        "MALLOC_TRIM_THRESHOLD_": str(1024 * 1024 * 1024),
    }


@glibc_only
def test_opt_out_leaves_the_allocator_alone() -> None:
    result = probe(CALCINET_MALLOC_TUNING="0")
    assert result["applied"] is False
    assert result["after"] == 1
    assert result["env"] == {"MALLOC_MMAP_THRESHOLD_": None, "MALLOC_TRIM_THRESHOLD_": None}


@glibc_only
def test_a_users_own_malloc_settings_win() -> None:
    result = probe(MALLOC_MMAP_THRESHOLD_="65536")
    assert result["applied"] is False
    assert result["before"] == 1 and result["after"] == 1
    assert result["env"]["MALLOC_MMAP_THRESHOLD_"] == "65536"
    assert result["env"]["MALLOC_TRIM_THRESHOLD_"] is None


EXIT_PROBE = """
import atexit, gc, sys
# Registered before the command's handler, so it runs after it (atexit runs in reverse order).
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0, flush=True))
from calcinet.runtime import skip_exit_collection
skip_exit_collection()
skip_exit_collection()
cycle = []
cycle.append(cycle)
del cycle  # garbage only the collector can free
print("frozen while running:", gc.get_freeze_count() > 0, "collected:", gc.collect() > 0,
      flush=True)
"""


def test_the_collector_is_frozen_only_at_exit_and_later_handlers_still_run() -> None:
    done = subprocess.run([sys.executable, "-c", EXIT_PROBE], capture_output=True, text=True,
                          check=True)
    assert done.stdout.splitlines() == ["frozen while running: False collected: True",
                                        "frozen at exit: True"]

