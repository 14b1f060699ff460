"""Our filtered evaluator agrees with PyKEEN's RankBasedEvaluator on a PyKEEN-trained model (issue 9).

Needs pykeen (the ``bench`` extra). CI installs it (``.ci/run`` sets ``KGC_CI=1``), and there a
missing pykeen fails this module instead of skipping it; elsewhere the module skips, naming the
extra. The model is a tiny ComplEx trained with LCWA for a few seconds on Nations; both evaluators
rank the full test split, filtered against train+valid+test, both directions, under all three tie
policies.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

if os.environ.get("KGC_CI"):
    import pykeen  # noqa: F401 - CI asserts the bench extra is installed
else:
    pytest.importorskip("pykeen", reason="pykeen is not installed (pip install -e '.[bench]')")


def _load_common():
    """benchmarks/_common.py by path (putting benchmarks/ on sys.path would shadow the kernels package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "_common.py"
    spec = importlib.util.spec_from_file_location("kgc_bench_common", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


C = _load_common()

POLICIES = ("realistic", "optimistic", "pessimistic")


@pytest.fixture(scope="module")
def trained():
    from kgc.data import load_dataset

    ds = load_dataset("nations")
    torch.set_num_threads(2)
    factories = C.pykeen_factories(ds)
    recipe = dict(C.pykeen_recipe("complex", "nations"), lr=1e-2)
    out = C.train_pykeen(recipe, factories, budget_s=3.0, seed=0, ds=None)
    assert out["epochs"] > 0
    return ds, factories, out["model"]


def _assert_close(ours, theirs, tol=1e-4):
    for policy in POLICIES:
        for k in C.METRIC_KEYS:
            assert ours[policy][k] == pytest.approx(theirs[policy][k], abs=tol), (policy, k)


def test_filtered_metrics_equal_pykeen(trained):
    ds, factories, model = trained
    test = ds.triples("test")
    ours = C.our_eval_of_pykeen(model, ds, test)
    theirs = C.pykeen_eval(model, factories, test)
    _assert_close(ours, theirs)
    assert ours["realistic"]["count"] == 2 * len(test)


def test_tie_policies_equal_pykeen_under_heavy_ties(trained):
    """Scores rounded to steps of 0.5 create many ties: optimistic < realistic < pessimistic, and each
    policy still matches PyKEEN's."""
    ds, factories, model = trained
    orig_t, orig_h = model.score_t, model.score_h
    model.score_t = lambda *a, **k: torch.round(orig_t(*a, **k) * 2) / 2
    model.score_h = lambda *a, **k: torch.round(orig_h(*a, **k) * 2) / 2
    try:
        test = ds.triples("test")
        ours = C.our_eval_of_pykeen(model, ds, test)
        theirs = C.pykeen_eval(model, factories, test)
    finally:
        del model.score_t, model.score_h
    _assert_close(ours, theirs)
    assert ours["optimistic"]["mrr"] > ours["realistic"]["mrr"] > ours["pessimistic"]["mrr"]


def test_seen_only_test_set_is_a_subset(trained):
    ds, _, _ = trained
    full = C.eval_triples(ds, "test", "full")
    seen = C.eval_triples(ds, "test", "seen")
    assert len(seen) <= len(full)
    assert int(C.seen_in_train_mask(ds, "test").sum()) == len(seen)
