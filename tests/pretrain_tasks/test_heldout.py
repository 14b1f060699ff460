"""pretrain_tasks.heldout: the seeded held-out split."""

from __future__ import annotations

import numpy as np

from pretrain_tasks import split_heldout

from toy_examples import toy


def test_split_heldout():
    ex = toy("random_walk", 500)
    tr, held = split_heldout(ex, 0.02, seed=0)
    assert len(held) == 10 and len(tr) == 490
    assert set(tr.source.tolist()).isdisjoint(held.source.tolist())
    assert sorted(tr.source.tolist() + held.source.tolist()) == list(range(500))
    tr2, held2 = split_heldout(ex, 0.02, seed=0)
    assert np.array_equal(held.tokens, held2.tokens)
    assert len(split_heldout(toy("lcc", 10), 0.02)[1]) == 1
    assert len(split_heldout(toy("lcc", 10), 0.0)[1]) == 0
