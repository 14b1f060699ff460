"""pretrain_tasks.sampling: mixing weights and the task samplers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kgc import KGCError
from pretrain_tasks import SignalDataset, UncertaintyTaskSampler, WeightedTaskSampler, resolve_weights
from pretrain_tasks.registry import TASKS

from toy_examples import toy


def test_resolve_weights():
    sizes = {"random_walk": 300, "lcc": 100}
    assert resolve_weights("size", sizes) == {"random_walk": 0.75, "lcc": 0.25}
    assert resolve_weights("uniform", sizes) == {"random_walk": 0.5, "lcc": 0.5}
    assert resolve_weights({"random_walk": 1, "lcc": 3}, sizes) == {"random_walk": 0.25, "lcc": 0.75}
    with pytest.raises(KGCError, match="not a selected signal"):
        resolve_weights({"khop": 1}, sizes)
    with pytest.raises(KGCError, match="'size', 'uniform'"):
        resolve_weights("bogus", sizes)
    with pytest.raises(KGCError, match=">= 0"):
        resolve_weights({"lcc": -1}, sizes)


def test_weighted_sampler_proportions_and_determinism():
    ds = SignalDataset([toy("random_walk", 90), toy("lcc", 10)])
    s = WeightedTaskSampler(ds, "uniform", num_samples=4000, seed=1)
    idx = np.array(list(iter(s)))
    frac_lcc = (ds.task[idx] == TASKS.index("lcc")).mean()
    assert 0.45 < frac_lcc < 0.55
    s2 = WeightedTaskSampler(ds, "size", num_samples=4000, seed=1)
    assert 0.07 < (ds.task[np.array(list(s2))] == TASKS.index("lcc")).mean() < 0.13
    a = list(WeightedTaskSampler(ds, "uniform", 50, seed=5))
    b = list(WeightedTaskSampler(ds, "uniform", 50, seed=5))
    assert a == b and len(set(a)) > 10


def test_uncertainty_sampler_prefers_uncertain_tasks():
    ds = SignalDataset([toy("random_walk", 50), toy("khop", 50), toy("lcc", 50)])
    s = UncertaintyTaskSampler(ds, num_samples=3000, temperature=0.2, floor=0.05, seed=0)
    p0 = s.probabilities()
    assert np.allclose(list(p0.values()), 1 / 3)  # nothing observed yet: uniform
    rw, kh, lc = (TASKS.index(n) for n in ("random_walk", "khop", "lcc"))
    s.update(torch.tensor([rw, kh, lc]), torch.tensor([2.0, 5.0, 1.0]))  # initial values
    for _ in range(50):
        # random_walk stays as uncertain as at first; khop and lcc are learned (relative drop)
        s.update(torch.tensor([rw, rw, kh, lc]), torch.tensor([2.0, 2.0, 1.0, 0.1]))
    p = s.probabilities()
    assert p["random_walk"] > p["khop"] > p["lcc"]
    assert min(p.values()) >= 0.05 - 1e-9 and abs(sum(p.values()) - 1) < 1e-9
    idx = np.array(list(iter(s)))
    counts = {n: (ds.task[idx] == TASKS.index(n)).mean() for n in ("random_walk", "khop", "lcc")}
    assert counts["random_walk"] > 0.6 and counts["lcc"] >= 0.02
    # the direction reverses when random_walk is learned and lcc becomes hard
    for _ in range(100):
        s.update(torch.tensor([rw, lc]), torch.tensor([0.1, 3.0]))
    p2 = s.probabilities()
    assert p2["lcc"] > p2["random_walk"]
    # unnormalised, higher temperature -> flatter
    flat = UncertaintyTaskSampler(ds, temperature=100.0)
    flat.load_state_dict(s.state_dict())
    assert max(flat.probabilities().values()) < 0.4
    with pytest.raises(KGCError, match="temperature"):
        UncertaintyTaskSampler(ds, temperature=0)
