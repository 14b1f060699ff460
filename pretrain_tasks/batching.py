"""The mixture of several signals' examples as one dataset, and its batching.

:func:`collate` builds next-token labels: ``labels[i, j] = tokens[i, j + 1]`` for
``prefix_len[i] - 1 <= j <= n_i - 2`` (``n_i`` = unpadded length), i.e. the SEP
position predicts the first target token, every target position predicts the
next one, and the last target token predicts EOS. Every other position is
``-100`` (ignored by ``cross_entropy``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from kgc.errors import KGCError

from .examples import IGNORE_INDEX, PAD, SignalExamples


@dataclass
class SignalBatch:
    """One batch of pretraining sequences (all int64; ``pretrain_tasks.batching.collate``).

    tokens (B, L) (PAD=0, right-padded); prefix_len (B,); labels (B, L): the next token at target
    positions, -100 elsewhere; task (B,): each row's index in ``vocab.tasks``.
    """

    tokens: torch.Tensor
    prefix_len: torch.Tensor
    labels: torch.Tensor
    task: torch.Tensor

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def to(self, device) -> "SignalBatch":
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})


class SignalDataset(Dataset):
    """Concatenation of several signals' examples, stored flat (CSR) to avoid padding waste.

    ``dataset[i]`` -> ``(tokens int64 1-D tensor, prefix_len int, task int)``.
    ``task_index[t]`` lists the positions of task id ``t`` (index in the vocabulary's task list);
    ``task_names[t]`` is that task's signal name and ``task_ids`` the inverse mapping.
    """

    def __init__(self, parts: Sequence[SignalExamples]):
        parts = [p for p in parts if len(p)]
        if not parts:
            raise KGCError("no signal examples to train on (every selected signal produced 0 sequences)")
        lens = [p.lengths for p in parts]
        self.lengths = np.concatenate(lens).astype(np.int64)
        self.offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])
        flat = []
        for p, ln in zip(parts, lens):
            mask = np.arange(p.tokens.shape[1])[None, :] < ln[:, None]
            flat.append(p.tokens[mask])
        self.flat = torch.from_numpy(np.concatenate(flat))
        self.prefix_len = np.concatenate([p.prefix_len for p in parts])
        self.task = np.concatenate([p.task for p in parts])
        self.names = [p.name for p in parts]
        self.task_names: dict[int, str] = {int(p.task[0]): p.name for p in parts}
        self.task_ids: dict[str, int] = {n: t for t, n in self.task_names.items()}
        self.task_index: dict[int, np.ndarray] = {
            int(t): np.flatnonzero(self.task == t) for t in np.unique(self.task)
        }

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int):
        i = int(i)
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.flat[a:b], int(self.prefix_len[i]), int(self.task[i])

    def task_sizes(self) -> dict[str, int]:
        return {self.task_names[t]: len(ix) for t, ix in self.task_index.items()}


def collate(batch) -> SignalBatch:
    """Pad a batch of ``(tokens, prefix_len, task)`` to its longest sequence.

    Returns a :class:`kgc.models.batch.SignalBatch`: ``tokens`` (B, L) int64 (PAD=0), ``prefix_len`` (B,), ``labels``
    (B, L) with ``labels[i, j] = tokens[i, j + 1]`` at target positions
    (``prefix_len - 1 <= j < len_i - 1``) and -100 elsewhere, ``task`` (B,).
    """
    b = len(batch)
    lens = torch.tensor([len(x[0]) for x in batch], dtype=torch.long)
    width = int(lens.max()) if b else 0
    tokens = torch.zeros((b, width), dtype=torch.long)
    for i, (toks, _, _) in enumerate(batch):
        tokens[i, : len(toks)] = torch.as_tensor(toks, dtype=torch.long)
    prefix_len = torch.tensor([int(x[1]) for x in batch], dtype=torch.long)
    task = torch.tensor([int(x[2]) for x in batch], dtype=torch.long)
    return SignalBatch(tokens=tokens, prefix_len=prefix_len, labels=make_labels(tokens, prefix_len, lens), task=task)


def make_labels(tokens: torch.Tensor, prefix_len: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token labels at target positions (see module docstring)."""
    if lengths is None:
        lengths = (tokens != PAD).sum(1)
    j = torch.arange(tokens.shape[1], device=tokens.device)[None, :]
    shifted = torch.full_like(tokens, IGNORE_INDEX)
    shifted[:, :-1] = tokens[:, 1:]
    active = (j >= (prefix_len[:, None] - 1)) & (j < (lengths[:, None] - 1))
    return torch.where(active, shifted, torch.full_like(tokens, IGNORE_INDEX))
