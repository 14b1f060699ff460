from __future__ import annotations

from pathlib import Path

import pytest
from training_helpers import TINY_FINETUNE, TINY_PRETRAIN


@pytest.fixture
def tiny_pretrain_cfg(tmp_path) -> Path:
    p = tmp_path / "tiny_pretrain.yaml"
    p.write_text(TINY_PRETRAIN)
    return p


@pytest.fixture
def tiny_finetune_cfg(tmp_path) -> Path:
    p = tmp_path / "tiny_finetune.yaml"
    p.write_text(TINY_FINETUNE)
    return p
