"""``kgc.training.losses.direct_anchors``: the entity each relation step of a signal sequence leaves from.

The fast path (a vectorised rule over token classes) against the meaning of the sequences: on real signal
sequences every ``(anchor, relation, next entity)`` it yields is a train edge (with inverses), and every
train-graph step of a walk or path gets an anchor.
"""

from __future__ import annotations

import doctest

import pytest
import torch

from kgc.training.losses import TokenLayout, direct_anchors
from pretrain_tasks import get_signal


def test_docstring_example():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(verbose=False)
    for test in finder.find(direct_anchors, globs={"torch": torch, "TokenLayout": TokenLayout,
                                                   "direct_anchors": direct_anchors}):
        runner.run(test)
    res = runner.summarize(verbose=False)
    assert res.failed == 0 and res.attempted >= 1


@pytest.mark.parametrize("signal", ["random_walk", "shortest_path", "khop", "ig_path"])
def test_every_anchored_step_is_a_train_edge(kg, signal):
    v = kg.vocab
    ex = get_signal(signal).generate(kg.ds, kg.graph, v, num_examples=80, seed=0)
    tokens = torch.as_tensor(ex.tokens)
    anchor = direct_anchors(tokens, TokenLayout.of(v))
    steps = torch.nonzero(anchor >= 0).tolist()
    assert steps, f"{signal}: no anchored step"
    hop1_items = 0
    for i, j in steps:
        h, lab, t = int(anchor[i, j]), int(tokens[i, j]) - v.relation_offset, int(tokens[i, j + 1]) - v.entity_offset
        assert 0 <= t < v.num_entities, (signal, i, j)
        assert (h, lab, t) in kg.train_steps, (signal, v.decode(ex.tokens[i]), j)
        hop1_items += int(tokens[i, j - 1]) == v.hop(1)
    if signal == "khop":
        assert hop1_items == len(steps)  # only 1-hop items step from the centre
    else:  # a walk/path: every relation token of the target is an anchored step
        for i in range(tokens.shape[0]):
            p = int(ex.prefix_len[i])
            rel = [j for j in range(p, tokens.shape[1]) if v.relation_offset <= int(tokens[i, j]) < v.entity_offset]
            assert rel == [j for r, j in steps if r == i and j >= p], (signal, v.decode(ex.tokens[i]))


def test_packed_rows_take_each_sequence_head():
    lay = TokenLayout(relation_offset=10, entity_offset=20, num_entities=5, sep=3, hop1=7)
    a = [6, 21, 3, 11, 22, 2]          # [TASK] e1 SEP r e2 EOS
    b = [6, 23, 3, 7, 12, 24, 2]       # [TASK] e3 SEP HOP_1 r e4 EOS
    tokens = torch.tensor([a + b + [0]])
    seg = torch.tensor([[1] * len(a) + [2] * len(b) + [0]])
    got = direct_anchors(tokens, lay, seg)[0].tolist()
    want = [-1] * len(a + b + [0])
    want[3] = 1                 # r after SEP steps from e1
    want[len(a) + 4] = 3        # the 1-hop item's relation steps from the centre e3
    assert got == want
    # unpacked, the second sequence would wrongly take the first's head: the segments matter
    assert direct_anchors(tokens, lay)[0, len(a) + 4].item() == 1
