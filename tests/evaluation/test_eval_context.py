"""Contextual link prediction: the context of real queries obeys the leakage rule, the model's
scores equal a brute-force reading of its parts, and evaluation/prediction are deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kgc import KGCError
from kgc.data import load_dataset
from kgc.evaluation import LinkPredictionQueries, evaluate
from kgc.evaluation.context import QueryContext
from kgc.evaluation.evaluator import ModelScorer
from kgc.evaluation.queries import compact_batch
from kgc.models import build_model
from kgc.models.base import _cmul
from kgc.models.config import ContextConfig, ModelConfig
from kgc.training.lp_data import kvsall_queries
from kgc.vocab import Vocabulary


def _check_leakage(ds, budget: int = 12):
    """Every item of every train (KvsAll), valid and test query is a train edge, and no item comes
    from a fact that answers its query (the evaluated fact, its inverse, any KvsAll target)."""
    ctx = QueryContext.for_dataset(ds, ContextConfig(budget=budget, sampling="degree"))
    train = ds.splits["train"].numpy()
    g = ctx.graph
    edge_fact = {}
    for e in range(g.num_edges):
        edge_fact.setdefault((int(g.src[e]), int(g.label[e]), int(g.dst[e])), []).append(int(g.fact[e]))
    tq = LinkPredictionQueries.from_dataset(ds, "train")
    uniq, _ = kvsall_queries(tq, ds.num_entities)
    checked = 0
    for name, q in (("train", uniq), ("valid", LinkPredictionQueries.from_dataset(ds, "valid")),
                    ("test", LinkPredictionQueries.from_dataset(ds, "test"))):
        ent, lab, anc = (t.numpy() for t in ctx.items(q))
        pos = q.anchor_positions().numpy()
        ctxe = q.context.numpy()
        rel = q.relation.numpy()
        for i in range(len(q)):
            for k in range(budget):
                if ent[i, k] < 0:
                    assert (ent[i, k:] < 0).all(), "items are left-packed"
                    break
                a = ctxe[i, anc[i, k]]
                facts = edge_fact[(int(a), int(lab[i, k]), int(ent[i, k]))]  # KeyError = not a train edge
                # some train fact behind the item does not answer the query
                ok = False
                for f in facts:
                    row = train[f]
                    answers = row[0] == rel[i] and all(row[1 + p] == c for p, c in zip(pos[i], ctxe[i]) if c >= 0)
                    ok |= not answers
                assert ok, f"{name} query {i}: item {k} comes from a fact that answers the query"
                checked += 1
        if ds.is_binary:
            # the query's own answer edge (the evaluated fact, as read from the anchor) is never an item
            own = (lab == q.label.numpy()[:, None]) & (ent == q.target.numpy()[:, None])
            assert not own.any(), f"{name}: a query sees its own answer edge"
    assert checked > 0


@pytest.mark.parametrize("name", ["umls", "nations"])
def test_context_never_leaks_small(name):
    _check_leakage(load_dataset(name))


@pytest.mark.slow
def test_context_never_leaks_wn18rr():
    ds = load_dataset("wn18rr")
    _check_leakage(ds, budget=8)
    # WN18RR's test entities unseen in train get an empty context
    ctx = QueryContext.for_dataset(ds, ContextConfig(budget=8))
    q = LinkPredictionQueries.from_dataset(ds, "test")
    seen = np.zeros(ds.num_entities, bool)
    seen[ds.splits["train"][:, 1:].numpy().ravel()] = True
    unseen = ~seen[q.context[:, 0].numpy()]
    assert unseen.sum() > 0
    ent, _, _ = ctx.items(q)
    assert (ent[torch.from_numpy(unseen)] < 0).all()


def _model(ds, vocab, direct="complex", budget=6, seed=0, layers=1):
    torch.manual_seed(seed)
    cfg = ModelConfig(dim=16, layers=layers, heads=2, dropout=0.0, attn_dropout=0.0, max_len=32, num_roles=8,
                      direct=direct, context=ContextConfig(budget=budget))
    model = build_model(cfg, len(vocab), vocab.num_entities, vocab.entity_offset).double().eval()
    with torch.no_grad():  # a trained-looking model: non-zero encoder output, non-identity roles
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("layers", [1, 2])
def test_lp_scores_equal_brute_force_umls(layers):
    """Scores of the contextual model, rebuilt from the full encoding: ComplEx direct term + query
    vector at the MASK + each item's pointer logit against its final hidden state."""
    ds = load_dataset("umls")
    vocab = Vocabulary.build(ds)
    model = _model(ds, vocab, layers=layers)
    ctx = QueryContext.for_dataset(ds, model.cfg.context)
    q = LinkPredictionQueries.from_dataset(ds, "valid")[:40]
    batch = compact_batch(ctx.batch(q, vocab))
    with torch.no_grad():
        scores = model.lp_scores(batch)
        h = model.encode(batch.tokens, None, batch.roles, batch.extra)
        W, b = model.entity_weight(), model.entity_bias()
        ent, lab, _ = ctx.items(q)
        for i in range(len(q)):
            last = int((batch.tokens[i] != 0).nonzero().max())
            hq = h[i, last]
            e_h = W[int(q.context[i, 0])]
            a = _cmul(e_h, model.direct.role_in.weight[0])  # binary: anchor role 0, target role 1
            direct = _cmul(_cmul(a, model.direct.rel.weight[vocab.rel(int(q.label[i]))]),
                           model.direct.role_out.weight[1])
            qv = model.query_vectors(hq) + direct
            want = W @ qv + b
            items = (batch.extra[i] != 0).nonzero(as_tuple=True)[0]
            assert len(items) == int((ent[i] >= 0).sum())
            for col in items.tolist():
                e = int(batch.tokens[i, col]) - vocab.entity_offset
                want[e] += (h[i, col] @ model.pointer(hq)) / 4.0  # sqrt(dim 16)
            torch.testing.assert_close(scores[i], want, rtol=1e-10, atol=1e-10)


def test_direct_term_is_complex_at_init():
    """At initialisation the encoder's query contribution is zero and the roles are the identity, so a
    binary query scores exactly ComplEx's Re(<e_h, w_r, conj(e_t)>)."""
    ds = load_dataset("umls")
    vocab = Vocabulary.build(ds)
    cfg = ModelConfig(dim=16, layers=1, heads=2, max_len=32, direct="complex")
    model = build_model(cfg, len(vocab), vocab.num_entities, vocab.entity_offset).double().eval()
    q = LinkPredictionQueries.from_dataset(ds, "test")[:10]
    with torch.no_grad():
        scores = model.lp_scores(q.to_batch(vocab))
        W = model.entity_weight()
        c = torch.complex(W[:, :8], W[:, 8:])
        r = model.direct.rel.weight[vocab.rel(q.label)]
        rc = torch.complex(r[:, :8], r[:, 8:])
        want = torch.real((c[q.context[:, 0]] * rc) @ c.conj().T) + model.entity_bias()
    torch.testing.assert_close(scores, want)


def test_items_are_a_set():
    """Permuting the context items leaves the query vector and each entity's score unchanged."""
    ds = load_dataset("umls")
    vocab = Vocabulary.build(ds)
    model = _model(ds, vocab, budget=6)
    ctx = QueryContext.for_dataset(ds, model.cfg.context)
    q = LinkPredictionQueries.from_dataset(ds, "valid")[:20]
    ent, lab, anc = ctx.items(q)
    perm = torch.tensor([5, 3, 1, 0, 2, 4])
    # keep pads last: permute only rows whose six items are all present
    full = (ent >= 0).all(1)
    assert full.any()
    sub = q[full.nonzero(as_tuple=True)[0]]
    items = tuple(t[full] for t in (ent, lab, anc))
    shuffled = tuple(t[:, perm] for t in items)
    with torch.no_grad():
        a = model.lp_scores(sub.to_batch(vocab, items))
        b = model.lp_scores(sub.to_batch(vocab, shuffled))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_evaluate_and_predict_share_context_and_are_deterministic(tmp_path):
    ds = load_dataset("umls")
    vocab = Vocabulary.build(ds)
    model = _model(ds, vocab).float()
    r1 = evaluate(ModelScorer(model, vocab), ds, "test")
    r2 = evaluate(ModelScorer(model, vocab), ds, "test")  # builds its context anew
    assert torch.equal(r1.ranks.optimistic, r2.ranks.optimistic)
    assert torch.equal(r1.ranks.pessimistic, r2.ranks.pessimistic)
    # the scorer refuses to run a contextual model without its context
    q = LinkPredictionQueries.from_dataset(ds, "test")[:3]
    with pytest.raises(KGCError, match="context"):
        ModelScorer(model, vocab).scores(q)
    s1 = ModelScorer(model, vocab).with_context_for(ds).scores(q)
    s2 = ModelScorer(model, vocab, QueryContext.for_dataset(ds, model.cfg.context)).scores(q)
    assert torch.equal(s1, s2)


def test_nary_queries_take_context_from_every_anchor():
    ds = load_dataset("jf17k")
    from graph_algos.graph import KGraph
    from pretrain_tasks import build_vocab

    vocab = build_vocab(ds, KGraph.from_dataset(ds))
    ctx = QueryContext.for_dataset(ds, ContextConfig(budget=10))
    q = LinkPredictionQueries.from_dataset(ds, "test")
    big = (q.arity >= 4).nonzero(as_tuple=True)[0][:200]
    sub = q[big]
    ent, lab, anc = ctx.items(sub)
    n_anchor = (anc >= 0).sum(1)
    # round robin: with enough edges, several anchors contribute
    multi = [(len(set(anc[i][anc[i] >= 0].tolist())) > 1) for i in range(len(sub))]
    assert sum(multi) > len(sub) // 2
    batch = ctx.batch(sub, vocab)
    ok = ent >= 0
    # each item's role token is its anchor's role
    K = ent.shape[1]
    roles = batch.roles[:, 1:1 + K]
    assert torch.equal(roles[ok], sub.context_roles.gather(1, anc.clamp_min(0))[ok])
    assert (n_anchor <= K).all()


@pytest.mark.parametrize("name", ["transformer", "hybrid"])
def test_both_encoders_train_on_context(name):
    """A few optimiser steps on UMLS contexts: finite losses, every new part gets a gradient, and the
    training loss falls."""
    import kernels

    ds = load_dataset("umls")
    vocab = Vocabulary.build(ds)
    torch.manual_seed(0)
    extra = dict(d_state=8, headdim=8, chunk_size=8, attn_every=1, use_mamba_ssm="never") if name == "hybrid" else {}
    cfg = ModelConfig(name=name, dim=32, layers=1, heads=2, dropout=0.0, attn_dropout=0.0, max_len=32, num_roles=4,
                      direct="complex", context=ContextConfig(budget=6), **extra)
    model = build_model(cfg, len(vocab), vocab.num_entities, vocab.entity_offset)
    ctx = QueryContext.for_dataset(ds, cfg.context)
    q = LinkPredictionQueries.from_dataset(ds, "train")[:256]
    batch = compact_batch(ctx.batch(q, vocab))
    assert batch.extra is not None and (batch.extra != 0).any()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = kernels.cross_entropy_from_logits(model.lp_scores(batch), batch.target, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        if not losses:
            for part in (model.pointer.weight, model.direct.rel.weight, model.tok_emb.weight):
                assert part.grad is not None and part.grad.abs().sum() > 0
        opt.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0] - 0.5
