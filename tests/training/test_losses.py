"""kgc.training.losses: the injected loss objects against dense, hand-computed references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kgc import KGCError
from kgc.models import build_model, load_model_config
from kgc.training.losses import KvsAllLoss, LabelSmoothedCE, OneVsAllLoss, SignalLoss, lp_loss_for
from lp_fakes import B, E, FakeLPModel, lp_batch
from pretrain_tasks import collate


@pytest.mark.parametrize("pointer", [False, True])
def test_one_vs_all_is_label_smoothed_cross_entropy(pointer):
    model = FakeLPModel(pointer)
    batch = lp_batch([3, 0, 6, 2])
    scores = model.lp_output_scores(model.lp_forward(batch))  # dense (B, E)
    want = F.cross_entropy(scores, batch.target, label_smoothing=0.2)
    got = OneVsAllLoss(0.2)(model, batch)
    torch.testing.assert_close(got, want)
    got.backward()
    assert model.w.grad is not None and model.qv.grad is not None


@pytest.mark.parametrize("pointer", [False, True])
def test_kvsall_with_duplicate_answers_is_hand_computed_smoothed_ce(pointer):
    model = FakeLPModel(pointer)
    # row 0: answers {1, 4}; row 1: {2}; row 2: {0, 5, 6}; row 3: answer 3 listed twice (counts double)
    indptr, indices = [0, 2, 3, 6, 8], [1, 4, 2, 0, 5, 6, 3, 3]
    batch = lp_batch([1, 2, 0, 3], indptr, indices)
    eps = 0.1
    logp = torch.log_softmax(model.lp_output_scores(model.lp_forward(batch)), -1).detach()
    want = []
    for i in range(B):
        answers = indices[indptr[i] : indptr[i + 1]]
        p = torch.zeros(E, dtype=torch.float64)
        for a in answers:
            p[a] += 1.0 / len(answers)
        q = (1 - eps) * p + eps / E
        want.append(-(q * logp[i]).sum())
    want = torch.stack(want).mean()
    torch.testing.assert_close(KvsAllLoss(eps)(model, batch).detach(), want)


def test_kvsall_needs_the_batch_answers_and_lp_loss_for():
    with pytest.raises(KGCError, match="targets='all'"):
        KvsAllLoss(0.1)(FakeLPModel(), lp_batch([1, 2, 0, 3]))
    assert type(lp_loss_for("single", 0.3)) is OneVsAllLoss and lp_loss_for("single", 0.3).label_smoothing == 0.3
    assert type(lp_loss_for("all", 0.0)) is KvsAllLoss and isinstance(lp_loss_for("all", 0.0), LabelSmoothedCE)
    with pytest.raises(ValueError, match="targets"):
        lp_loss_for("some", 0.1)


@pytest.mark.parametrize("preset", ["transformer-tiny", "hybrid-tiny"])
def test_signal_loss_is_next_token_ce_over_the_vocabulary(preset):
    V, NE, OFF = 60, 30, 25
    torch.manual_seed(0)
    model = build_model(load_model_config(preset, []), V, NE, OFF).double().eval()
    g = torch.Generator().manual_seed(1)
    items = [(torch.randint(1, V, (n,), generator=g), 2, t) for n, t in ((6, 1), (9, 2), (4, 1))]
    batch = collate(items)
    loss, stats = SignalLoss()(model, batch)
    h = model.encode(batch.tokens, batch.prefix_len)
    sel = batch.labels != -100
    logits = model.token_logits(h)[sel]  # dense (N, V), the tied head with the entity bias
    y = batch.labels[sel]
    torch.testing.assert_close(loss, F.cross_entropy(logits, y))
    torch.testing.assert_close(stats["tok_loss"], F.cross_entropy(logits, y, reduction="none"))
    assert stats["correct"].tolist() == (logits.argmax(-1) == y).double().tolist()
    assert stats["row"].tolist() == torch.nonzero(sel, as_tuple=True)[0].tolist()
    assert model.token_weight() is model.tok_emb.weight


# ---- the cheap signal losses: typed softmax, sampled softmax with the logQ correction ---------------
def _typed_model(direct="none", V=55, NE=30, OFF=25):
    cfg = load_model_config("transformer-tiny", [f"direct={direct}"] if direct != "none" else [])
    torch.manual_seed(0)
    model = build_model(cfg, V, NE, OFF).double().eval()
    if model.ent_bias is not None:
        torch.nn.init.normal_(model.ent_bias, 0.0, 0.3)
    g = torch.Generator().manual_seed(1)
    # sequences over the whole vocabulary: structure (< OFF) and entity (>= OFF) targets alike
    items = [(torch.randint(1, V, (n,), generator=g), 2, t) for n, t in ((12, 1), (9, 2), (14, 1))]
    return model, collate(items)


def test_typed_loss_scores_each_target_over_its_class():
    model, batch = _typed_model()
    loss, stats = SignalLoss("typed")(model, batch)
    h = model.encode(batch.tokens, batch.prefix_len)
    sel = batch.labels != -100
    logits = model.token_logits(h)[sel]  # (N, V) dense, tied head with the entity bias
    y = batch.labels[sel]
    off = model.entity_offset
    want = torch.where(y < off,
                       F.cross_entropy(logits[:, :off], y.clamp_max(off - 1), reduction="none"),
                       F.cross_entropy(logits[:, off:], (y - off).clamp_min(0), reduction="none"))
    assert bool((y < off).any()) and bool((y >= off).any())
    torch.testing.assert_close(stats["tok_loss"], want)
    torch.testing.assert_close(loss, want.mean())
    pred = torch.where(y < off, logits[:, :off].argmax(-1), logits[:, off:].argmax(-1) + off)
    assert stats["correct"].tolist() == (pred == y).double().tolist()
    # and it is not the full-vocabulary loss (which is larger: more competitors)
    assert SignalLoss("full")(model, batch)[0] > loss


def test_sampled_loss_is_exact_when_the_negatives_cover_the_entities():
    model, batch = _typed_model()
    typed = SignalLoss("typed")(model, batch)[1]["tok_loss"]
    for k in (model.num_entities, 5000):
        torch.testing.assert_close(SignalLoss("sampled", negatives=k)(model, batch)[1]["tok_loss"], typed)
    # validation asks a sampled loss for the exact typed one
    torch.testing.assert_close(SignalLoss("sampled", negatives=3)(model, batch, exact=True)[1]["tok_loss"], typed)


@pytest.mark.parametrize("in_batch", [True, False])
def test_sampled_partition_estimate_is_unbiased(in_batch):
    """E[Z_hat] = Z exactly: averaging Z_hat over every possible single draw (K = 1, the uniform
    proposal enumerated) gives the full entity partition function of each row."""
    torch.manual_seed(3)
    n, E, D = 7, 13, 5
    q, W, b = torch.randn(n, D, dtype=torch.float64), torch.randn(E, D, dtype=torch.float64), torch.randn(E, dtype=torch.float64)
    y = torch.tensor([0, 4, 4, 9, 12, 4, 0])
    loss = SignalLoss("sampled", negatives=1, in_batch=in_batch)
    z_full = torch.logsumexp(q @ W.T + b, 1).exp()  # (n,)
    z_hat = []
    for j in range(E):  # every possible draw, each with probability 1 / E
        lj, _ = loss.sampled_entity_loss(q, y, W, b, negatives=torch.tensor([j]))
        s_y = (q * W[y]).sum(-1) + b[y]
        z_hat.append((lj + s_y).exp())  # loss = log Z_hat - s_y
    torch.testing.assert_close(torch.stack(z_hat).mean(0), z_full)


@pytest.mark.parametrize("in_batch", [True, False])
def test_sampled_loss_converges_to_the_full_entity_loss(in_batch):
    """Consistency: with many negatives the sampled loss approaches the exact entity loss, and the
    logQ correction is what makes it do so (without it the estimate stays far off)."""
    torch.manual_seed(4)
    n, E, D = 6, 50, 8
    q, W = torch.randn(n, D, dtype=torch.float64), torch.randn(E, D, dtype=torch.float64)
    y = torch.tensor([1, 7, 7, 30, 49, 2])
    exact = F.cross_entropy(q @ W.T, y, reduction="none")
    loss = SignalLoss("sampled", negatives=40000, in_batch=in_batch)
    torch.manual_seed(5)
    got, _ = loss.sampled_entity_loss(q, y, W, None)
    torch.testing.assert_close(got, exact, atol=0.03, rtol=0.0)
    few = SignalLoss("sampled", negatives=20, in_batch=in_batch)
    negs = torch.randint(0, E, (20,), generator=torch.Generator().manual_seed(6))
    with_q, _ = few.sampled_entity_loss(q, y, W, None, negatives=negs)
    # the uncorrected sampled softmax (each draw counted once) underestimates the loss badly
    U = torch.unique(y) if in_batch else None
    raw = []
    for i in range(n):
        cand = torch.unique(torch.cat([U if in_batch else y[i : i + 1], negs]))
        raw.append(F.cross_entropy((q[i] @ W[cand].T)[None], (cand == y[i]).nonzero()[0]))
    raw = torch.stack(raw)
    assert (exact - raw).mean() > 0.5 and (exact - with_q).abs().mean() < (exact - raw).abs().mean()


def test_direct_term_joins_the_query_of_entity_steps():
    from kgc.training.losses import TokenLayout, direct_anchors

    V, NE, OFF = 55, 30, 25
    model, _ = _typed_model("complex", V, NE, OFF)
    lay = TokenLayout(relation_offset=15, entity_offset=OFF, num_entities=NE, sep=3, hop1=9)
    # [TASK] e2 SEP r16 e5 r17 e7 EOS: two anchored steps (e2 -r16-> e5, e5 -r17-> e7)
    toks = torch.tensor([7, OFF + 2, 3, 16, OFF + 5, 17, OFF + 7, 2])
    batch = collate([(toks, 3, 1)])
    _, stats = SignalLoss("typed", direct=True, layout=lay)(model, batch)
    _, plain = SignalLoss("typed")(model, batch)
    h = model.encode(batch.tokens, batch.prefix_len)
    sel = batch.labels != -100
    q = model.query_vectors(h[sel])  # targets: r16 e5 r17 e7 EOS
    anchors = direct_anchors(batch.tokens, lay)[sel]
    assert anchors.tolist() == [-1, 2, -1, 5, -1]
    W = model.entity_weight()
    for k, (src, rel, tgt) in {1: (2, 16, 5), 3: (5, 17, 7)}.items():
        qd = model.direct(torch.tensor([[src]]), torch.zeros(1, 1, dtype=torch.long), torch.tensor([rel]),
                          torch.ones(1, dtype=torch.long), W)[0]
        logits = (q[k] + qd) @ W.T + (0 if model.entity_bias() is None else model.entity_bias())
        torch.testing.assert_close(stats["tok_loss"][k], F.cross_entropy(logits[None], torch.tensor([tgt])))
    # structure targets are untouched by the direct term
    torch.testing.assert_close(stats["tok_loss"][[0, 2, 4]], plain["tok_loss"][[0, 2, 4]])
    loss, _ = SignalLoss("sampled", negatives=4, direct=True, layout=lay)(model.train(), batch)
    loss.backward()
    assert model.direct.rel.weight.grad is not None and model.direct.rel.weight.grad[16].abs().sum() > 0


def test_signal_loss_config_errors():
    with pytest.raises(KGCError, match="kind"):
        SignalLoss("approx")
    with pytest.raises(KGCError, match="TokenLayout"):
        SignalLoss("typed", direct=True)
    with pytest.raises(KGCError, match="balance"):
        SignalLoss("typed", balance="rows")


def test_task_balanced_loss_is_the_mean_of_each_tasks_loss_alone():
    """balance="tasks": the loss of a mixed-task batch is the mean over its tasks of the loss each
    task's sequences give alone (typed, exact), and so are its gradients; "tokens" weighs task 1 by
    its 2x share of target tokens instead. One task: both are the token mean."""
    model, _ = _typed_model()
    g = torch.Generator().manual_seed(5)
    items = [(torch.randint(1, 55, (n,), generator=g), 2, t) for n, t in ((20, 1), (18, 1), (9, 2))]
    mixed, alone = collate(items), [collate(items[:2]), collate(items[2:])]
    bal, tok = SignalLoss("typed", balance="tasks"), SignalLoss("typed")
    per_task = [tok(model, b)[0] for b in alone]
    torch.testing.assert_close(bal(model, mixed)[0], (per_task[0] + per_task[1]) / 2)
    n = [int((b.labels != -100).sum()) for b in alone]
    assert n[0] >= 2 * n[1]
    torch.testing.assert_close(tok(model, mixed)[0], (per_task[0] * n[0] + per_task[1] * n[1]) / sum(n))
    assert not torch.allclose(bal(model, mixed)[0], tok(model, mixed)[0])
    torch.testing.assert_close(bal(model, alone[0])[0], per_task[0])
    # gradients: of the balanced loss = mean of the per-task gradients
    p = model.token_weight()  # (V, D) the tied embedding / output layer: every target's gradient reaches it
    grad = lambda loss: torch.autograd.grad(loss, p)[0]  # noqa: E731
    torch.testing.assert_close(grad(bal(model, mixed)[0]),
                               (grad(tok(model, alone[0])[0]) + grad(tok(model, alone[1])[0])) / 2)
