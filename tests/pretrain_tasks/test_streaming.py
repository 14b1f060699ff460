"""pretrain_tasks.streaming: StreamingSignalDataset."""

from __future__ import annotations

import pytest
import torch

from kgc import KGCError
from pretrain_tasks import StreamingSignalDataset, collate, get_signal
from pretrain_tasks.registry import TASKS


def test_streaming_dataset(synth):
    sigs = [get_signal("random_walk"), get_signal("lcc")]
    st = StreamingSignalDataset(sigs, synth.ds, synth.graph, synth.vocab, chunk_size=16, seed=0, num_chunks=6)
    items = list(st)
    assert len(items) == 6 * 16
    tasks = {t for _, _, t in items}
    assert tasks <= {TASKS.index("random_walk"), TASKS.index("lcc")}
    batch = collate(items[:8])
    assert batch.tokens.shape[0] == 8
    again = list(StreamingSignalDataset(sigs, synth.ds, synth.graph, synth.vocab, chunk_size=16, seed=0, num_chunks=6))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(items, again))
    with pytest.raises(KGCError, match="size"):
        StreamingSignalDataset(sigs, synth.ds, synth.graph, synth.vocab, weights="size")
