"""The glibc allocator tuning (kgc.utils.alloc) takes effect, once, and can be turned off."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import ctypes, sys
from kgc.utils.alloc import tune_cpu_allocator
first = tune_cpu_allocator()
print(first, tune_cpu_allocator())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_tuning_applies_once_and_env_turns_it_off():
    on = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True).stdout.split()
    assert on == ["True", "True"]
    off = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True,
                         env={"KGC_MALLOC_TUNING": "0", "PATH": ""}).stdout.split()
    assert off == ["False", "False"]
