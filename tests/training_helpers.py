from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY_MODEL = """
model:
  name: transformer
  dim: 32
  layers: 2
  heads: 2
  mlp_ratio: 2.0
  dropout: 0.0
  attn_dropout: 0.0
  max_len: 96
"""

TINY_PRETRAIN = TINY_MODEL + """signals:
  num_examples: 300
optim:
  lr: 3.0e-3
  warmup_steps: 5
trainer:
  max_steps: 40
  batch_size: 32
  val_every: 20
  ckpt_every: 20
  log_every: 5
  progress_bar: false
"""

TINY_FINETUNE = TINY_MODEL + """optim:
  lr: 3.0e-3
  warmup_steps: 5
trainer:
  max_steps: 40
  batch_size: 128
  val_every: 20
  ckpt_every: 20
  log_every: 5
  progress_bar: false
eval:
  val_max_queries: 300
"""


def run_module(module: str, *args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` from the repo root; returns the completed process (text)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def tampered_checkpoint(src: Path, dst: Path, extra_task: str | None = None, extra_entity: str | None = None,
                        drop_tasks: bool = False, grow_embedding: bool = True) -> Path:
    """A copy of checkpoint ``src`` whose stored vocabulary (``kgc.vocab``) has one more task or entity (the
    token embedding grown by one row to match, unless ``grow_embedding`` is False) or no task list at all (a
    checkpoint written before the list was stored)."""
    import torch

    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    voc = ckpt["kgc"]["vocab"]
    grow = 0
    if extra_task is not None:
        voc["tasks"] = list(voc["tasks"]) + [extra_task]
        grow += 1
    if extra_entity is not None:
        voc["entity_names"] = list(voc["entity_names"]) + [extra_entity]
        grow += 1
    if drop_tasks:
        del voc["tasks"]
    if grow and grow_embedding:
        w = ckpt["state_dict"]["model.tok_emb.weight"]
        ckpt["state_dict"]["model.tok_emb.weight"] = torch.cat([w, w[:grow]])
    torch.save(ckpt, dst)
    return dst


class FixedTaskSampler:
    """A task sampler with fixed probabilities: the ``WeightedTaskSampler`` interface that
    ``StepTaskBatchSampler`` reads (``probabilities()`` and ``len``)."""

    def __init__(self, probs: dict, n: int):
        self.probs, self.n = probs, n

    def probabilities(self) -> dict:
        return dict(self.probs)

    def __len__(self) -> int:
        return self.n
