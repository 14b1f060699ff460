"""Shared test setup.

- Triton kernels run in the interpreter when no CUDA device is present; the
  variable must be set before any kernel module is imported.
- Real datasets come from the shared mirror (``../shared/datasets``) unless
  ``KGC_DATA_MIRROR`` is already set; the parsed-data cache lives in a
  per-checkout folder so repeated test runs are fast and never touch ~/.cache.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # pragma: no cover
        return False


if not _cuda_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

_mirror = ROOT.parent / "shared" / "datasets"
if "KGC_DATA_MIRROR" not in os.environ and _mirror.is_dir():
    os.environ["KGC_DATA_MIRROR"] = str(_mirror)
os.environ.setdefault("KGC_HOME", str(ROOT / ".kgc" / "test-home"))

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def mirror() -> Path:
    path = Path(os.environ.get("KGC_DATA_MIRROR", _mirror))
    if not path.is_dir():  # a test setup error, never a skip: the real datasets are part of the suite
        pytest.fail(f"dataset mirror {path} not found: set KGC_DATA_MIRROR to a folder of the dataset files")
    return path
