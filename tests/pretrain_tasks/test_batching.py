"""pretrain_tasks.batching: SignalDataset, collate and the next-token labels."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from kgc import KGCError
from pretrain_tasks import SignalDataset, SignalExamples, WeightedTaskSampler, collate
from pretrain_tasks.registry import TASKS

from toy_examples import toy


def test_collate_labels():
    a = toy("random_walk", 2, prompt_len=1, target_len=[2, 4])
    b = toy("lcc", 1, prompt_len=1, target_len=2)
    ds = SignalDataset([a, b])
    batch = collate([ds[0], ds[1], ds[2]])
    toks, labels = batch.tokens, batch.labels
    assert toks.shape == (3, 8) and toks.dtype == torch.long
    assert batch.prefix_len.tolist() == [3, 3, 3]
    assert batch.task.tolist() == [TASKS.index("random_walk")] * 2 + [TASKS.index("lcc")]
    # row 1: [T, e, SEP, t1, t2, t3, t4, EOS] -> labels at j = 2..6 = tokens[3..7]
    assert labels[1].tolist() == [-100, -100] + toks[1, 3:8].tolist() + [-100]
    # row 0 (length 6): [T, e, SEP, t1, t2, EOS, PAD, PAD]
    assert labels[0].tolist() == [-100, -100, toks[0, 3].item(), toks[0, 4].item(), 2, -100, -100, -100]
    # generic rule: labels[i, j] = tokens[i, j+1] exactly at target positions
    for i in range(3):
        n = int((toks[i] != 0).sum())
        for j in range(8):
            exp = toks[i, j + 1].item() if 2 <= j <= n - 2 else -100
            assert labels[i, j].item() == exp
    assert (labels[toks == 0] == -100).all()


def test_dataset_and_dataloader():
    ds = SignalDataset([toy("random_walk", 5), toy("lcc", 3), SignalExamples.empty("khop")])
    assert len(ds) == 8
    assert ds.task_sizes() == {"random_walk": 5, "lcc": 3}
    assert ds.task_names == {TASKS.index("random_walk"): "random_walk", TASKS.index("lcc"): "lcc"}
    assert ds.task_ids == {"random_walk": TASKS.index("random_walk"), "lcc": TASKS.index("lcc")}
    toks, pl, task = ds[6]
    assert task == TASKS.index("lcc") and pl == 3 and toks[-1].item() == 2
    loader = DataLoader(ds, batch_size=4, collate_fn=collate, sampler=WeightedTaskSampler(ds, "uniform", 8, seed=0))
    batches = list(loader)
    assert len(batches) == 2 and all(b.tokens.shape[0] == 4 for b in batches)
    with pytest.raises(KGCError, match="no signal examples"):
        SignalDataset([SignalExamples.empty("lcc")])
