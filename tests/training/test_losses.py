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
