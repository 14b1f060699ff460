"""Streaming generation for graphs too large to precompute every signal's examples.

:class:`StreamingSignalDataset` is a ``torch.utils.data.IterableDataset`` that
generates examples chunk by chunk: for chunk ``c`` it picks a signal by the
mixing weights, calls ``signal.generate(ds, graph, vocab, num_examples=chunk_size,
seed=hash(seed, c, worker))`` and yields the chunk's examples (shuffled) as
``(tokens, prefix_len, task)`` items for :func:`pretrain_tasks.batching.collate`.
It never ends (the training loop bounds it by ``max_steps``); with
``num_chunks`` it stops after that many chunks. DataLoader workers each stream
their own chunks (worker id is part of the seed), so no two workers repeat work.
Mixing weights here may be ``"uniform"`` or a mapping (``"size"`` needs the
full example counts, which streaming avoids computing).
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from kgc.errors import KGCError

from .base import Signal
from .sampling import resolve_weights


class StreamingSignalDataset(IterableDataset):
    def __init__(self, signals: Sequence[Signal], dataset, graph, vocab, weights: str | Mapping[str, float] = "uniform",
                 chunk_size: int = 1024, seed: int = 0, num_chunks: int | None = None):
        if not signals:
            raise KGCError("streaming: no signals given")
        if chunk_size < 1:
            raise KGCError(f"streaming: chunk_size must be >= 1, got {chunk_size}")
        if weights == "size":
            raise KGCError("streaming: weights 'size' needs all examples; use 'uniform' or explicit weights")
        self.signals = {s.name: s for s in signals}
        self.probs = resolve_weights(weights, {n: 1 for n in self.signals})
        self.dataset, self.graph, self.vocab = dataset, graph, vocab
        self.chunk_size, self.seed, self.num_chunks = chunk_size, seed, num_chunks

    def __iter__(self) -> Iterator:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        names = list(self.probs)
        p = np.array([self.probs[n] for n in names])
        c = 0
        while self.num_chunks is None or c < self.num_chunks:
            rng = np.random.default_rng([self.seed, worker, c, 17])
            sig = self.signals[names[rng.choice(len(names), p=p)]]
            ex = sig.generate(self.dataset, self.graph, self.vocab, num_examples=self.chunk_size,
                              seed=int(rng.integers(0, 2**31 - 1)))
            lengths = ex.lengths
            for i in rng.permutation(len(ex)):
                yield torch.from_numpy(ex.tokens[i, : lengths[i]].copy()), int(ex.prefix_len[i]), int(ex.task[i])
            c += 1
