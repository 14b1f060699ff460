"""Packing of pretraining sequences: collate_packed, the token-budget sampler and the data module.

Packed rows must be a pure layout change: every sequence's hidden states, labels and per-token
losses are the ones it gets alone (unpacked)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kgc import KGCError
from kgc.config import ConfigError, from_dict
from kgc.models import build_model, load_model_config
from kgc.training.losses import SignalLoss
from kgc.training.pretrain_data import PretrainDataModule, SignalsConfig, StepTaskBatchSampler
from pretrain_tasks import collate, collate_packed, make_labels
from pretrain_tasks.batching import PACK_ROW_CAP, pack_rows, pack_width, padding_fraction
from pretrain_tasks.registry import TASKS
from training_helpers import FixedTaskSampler as Fixed


def placements(items, width):
    """(row, offset) of each item in ``collate_packed(items)``: one task's rows after another's."""
    lens = np.array([len(x[0]) for x in items])
    task = np.array([x[2] for x in items])
    row, off, base = np.zeros(len(items), int), np.zeros(len(items), int), 0
    for t in np.unique(task):
        ix = np.flatnonzero(task == t)
        r, o = pack_rows(lens[ix], width)
        row[ix], off[ix] = r + base, o
        base += r.max() + 1
    return row, off


def random_items(seed, n=30, V=60, tasks=(1,)):
    g = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ln = int(g.integers(3, 20))
        out.append((torch.from_numpy(g.integers(1, V, ln)), int(g.integers(1, ln)), int(g.choice(tasks))))
    return out


@pytest.fixture(scope="module")
def nations(mirror):
    """Nations' real signal mix (every signal) in a data module, packing on (transformer-tiny, max_len 64)."""
    dm = PretrainDataModule("nations", from_dict(SignalsConfig, {}), 32, seed=0, model_name="transformer", max_len=64)
    dm.prepare_data()
    dm.setup()
    return dm


def tiny_model(vocab_size, num_entities, entity_offset, **over):
    torch.manual_seed(0)
    cfg = load_model_config("transformer-tiny", [f"{k}={v}" for k, v in over.items()])
    return build_model(cfg, vocab_size, num_entities, entity_offset).double().eval()


# ---- layout ------------------------------------------------------------------------------------
def test_pack_rows_is_first_fit_decreasing():
    row, off = pack_rows([5, 12, 7, 3, 12, 9, 1, 1, 4], 12)
    # longest first, each into the first row with room: 12 | 12 | 9+3 | 7+5 | 4+1+1
    assert row.tolist() == [3, 0, 3, 2, 1, 2, 4, 4, 4] and off.tolist() == [7, 0, 0, 9, 0, 0, 4, 5, 0]
    g = np.random.default_rng(0)
    for _ in range(20):  # against a one-at-a-time reference
        lens = g.integers(1, 17, int(g.integers(1, 60)))
        used, ref = [], []
        for i in np.argsort(-lens, kind="stable"):
            r = next((k for k, u in enumerate(used) if u + lens[i] <= 16), len(used))
            used += [0] * (r == len(used))
            ref.append((i, r, used[r]))
            used[r] += lens[i]
        row, off = pack_rows(lens, 16)
        assert sorted(ref) == [(i, row[i], off[i]) for i in range(len(lens))]
    with pytest.raises(KGCError, match="cannot pack"):
        pack_rows([3, 17], 16)


def test_pack_width():
    assert pack_width(52) == 52 and pack_width(6) == 96 and pack_width(12, max_len=64) == 60
    assert pack_width(6, total=20) == 24  # a small batch does not get rows it cannot fill
    assert pack_width(PACK_ROW_CAP + 5, max_len=512) == PACK_ROW_CAP + 5  # longer than the cap: one per row
    with pytest.raises(KGCError, match="model.max_len 64"):
        pack_width(65, max_len=64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_packed_labels_are_each_sequences_own(seed):
    items = random_items(seed, tasks=(1, 4))
    b = collate_packed(items, max_len=64)
    assert b.packed and b.segments.shape == b.tokens.shape == b.labels.shape == b.prefix_mask.shape
    assert b.prefix_mask.dtype == torch.bool and b.segments.dtype == torch.long
    row, off = placements(items, b.tokens.shape[1])
    want = torch.full_like(b.labels, -100)
    for i, (toks, p, t) in enumerate(items):
        n = len(toks)
        cols = slice(off[i], off[i] + n)
        assert b.tokens[row[i], cols].tolist() == toks.tolist()
        assert int(b.task[row[i]]) == t  # one task per row
        assert (b.prefix_mask[row[i], cols] == (torch.arange(n) < p)).all()
        assert len(set(b.segments[row[i], cols].tolist())) == 1
        want[row[i], cols] = make_labels(toks[None], torch.tensor([p]))[0]  # its own labels
    assert torch.equal(b.labels, want)
    # the concatenation of the per-sequence labels, in (row, offset) order
    order = np.lexsort((off, row))
    cat = torch.cat([make_labels(items[i][0][None], torch.tensor([items[i][1]]))[0] for i in order])
    assert torch.equal(b.labels[b.tokens != 0], cat)
    assert (b.segments[b.tokens == 0] == 0).all() and not b.prefix_mask[b.tokens == 0].any()
    assert (b.labels[b.tokens == 0] == -100).all()
    for r in range(len(b)):  # segments 1..k in row order
        s = b.segments[r][b.segments[r] > 0]
        assert s.tolist() == sorted(s.tolist()) and s.unique().tolist() == list(range(1, int(s.max()) + 1))
    assert b.prefix_len.tolist() == b.prefix_mask.sum(1).tolist()
    moved = b.to("cpu")
    assert torch.equal(moved.segments, b.segments) and collate(items).to("cpu").segments is None


# ---- equivalence with the unpacked layout ------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_packed_hidden_states_equal_unpacked_random_mixes(seed):
    items = random_items(seed, tasks=(1, 4))
    model = tiny_model(60, 30, 25)
    b = collate_packed(items, max_len=model.cfg.max_len)
    h = b.encode_with(model)
    row, off = placements(items, b.tokens.shape[1])
    assert b.segments.max() > 2  # really packed
    for i, (toks, p, _) in enumerate(items):
        alone = model.encode(toks[None], torch.tensor([p]))[0]
        torch.testing.assert_close(h[row[i], off[i] : off[i] + len(toks)], alone, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("loss_kind", ["full", "typed+direct"])
def test_packed_equals_unpacked_on_real_signals_hidden_states_and_losses(nations, loss_kind):
    from kgc.training.losses import TokenLayout

    ds, vocab = nations.train_set, nations.vocab
    g = np.random.default_rng(0)
    ix = np.concatenate([g.choice(ix, size=min(8, len(ix)), replace=False) for ix in ds.task_index.values()])
    items = [ds[i] for i in ix]
    assert len({p for _, p, _ in items}) >= 3  # prompts of different lengths
    direct = loss_kind != "full"
    model = tiny_model(len(vocab), vocab.num_entities, vocab.entity_offset, **({"direct": "distmult"} if direct else {}))
    loss = SignalLoss("typed", direct=True, layout=TokenLayout.of(vocab)) if direct else SignalLoss()
    packed, plain = collate_packed(items, max_len=model.cfg.max_len), collate(items)
    assert len(packed) < len(plain)
    hp, hu = packed.encode_with(model), plain.encode_with(model)
    row, off = placements(items, packed.tokens.shape[1])
    for i, (toks, _, _) in enumerate(items):
        torch.testing.assert_close(hp[row[i], off[i] : off[i] + len(toks)], hu[i, : len(toks)], rtol=1e-10, atol=1e-10)
    # per-token losses through SignalLoss, ordered by sequence
    lp, sp = loss(model, packed)
    lu, su = loss(model, plain)
    assert sp["tok_loss"].shape == su["tok_loss"].shape
    r_tok, c_tok = torch.nonzero(packed.labels != -100, as_tuple=True)  # SignalLoss's token order
    assert torch.equal(sp["row"], r_tok)
    where = {(int(row[i]), int(off[i]) + j): (i, j) for i, (t, _, _) in enumerate(items) for j in range(len(t))}
    key = [where[(int(r), int(c))] for r, c in zip(r_tok, c_tok)]  # (sequence, position) of each token
    by_seq = sp["tok_loss"][sorted(range(len(key)), key=key.__getitem__)]
    torch.testing.assert_close(by_seq, su["tok_loss"], rtol=1e-9, atol=1e-9)  # unpacked: sequence order
    torch.testing.assert_close(lp, lu, rtol=1e-9, atol=1e-9)
    assert torch.equal(packed.task[sp["row"]].sort().values, plain.task[su["row"]].sort().values)


# ---- real mix: padding -------------------------------------------------------------------------
@pytest.mark.parametrize("step_tasks, most", [("single", 0.10), ("mixed", 0.15)])
def test_padding_of_a_real_mix_is_small(nations, step_tasks, most):
    """Token-budget steps of Nations' five signals fill the budget and carry little padding. Mixed-task
    steps pad a little more: each of the step's tasks ends in its own partly filled row."""
    dm = PretrainDataModule("nations", from_dict(SignalsConfig, {"step_tasks": step_tasks}), 32, seed=0,
                            model_name="transformer", max_len=64)
    dm.setup()
    ds, sampler = dm.train_set, dm.sampler
    assert dm.packing and dm.batch_tokens == 32 * 48
    loader = dm.train_dataloader()
    steps, collate_fn = loader.batch_sampler, loader.collate_fn
    first = next(iter(loader))
    assert torch.equal(first.tokens, collate_fn([ds[i] for i in steps.batch(0)]).tokens)
    pad = tot = 0
    for g in range(60):
        b = collate_fn([ds[i] for i in steps.batch(g)])
        assert b.packed and b.tokens.shape[1] <= 64
        real = int((b.tokens != 0).sum())
        assert dm.batch_tokens - int(ds.lengths.max()) < real <= dm.batch_tokens
        pad, tot = pad + int((b.tokens == 0).sum()), tot + b.tokens.numel()
    assert pad / tot < most, pad / tot
    # a mixed-task batch (the DDP path) is packed by task: far less padding than right-padded
    from torch.utils.data import DataLoader

    mixed = next(iter(DataLoader(ds, batch_size=256, sampler=sampler, collate_fn=collate)))
    idx = next(iter(DataLoader(ds, batch_size=256, sampler=sampler, collate_fn=lambda x: x)))
    packed = nations.train_collate()(idx)
    assert padding_fraction(packed) < 0.25 and padding_fraction(packed) < padding_fraction(mixed)


# ---- the token-budget sampler ------------------------------------------------------------------


def _sampler(step=0, seed=3, batch_tokens=200, mixed=False, probs=None):
    a, b, c = TASKS.index("lcc"), TASKS.index("khop"), TASKS.index("ig_path")
    task_index = {a: np.arange(0, 40), b: np.arange(40, 50), c: np.arange(50, 53)}
    lengths = np.concatenate([np.full(40, 5), 30 + np.arange(10), [8, 10, 12]])
    probs = probs or {"lcc": 0.5, "khop": 0.3, "ig_path": 0.2}
    ids = {n: TASKS.index(n) for n in probs}
    s = StepTaskBatchSampler(Fixed(probs, 100), task_index, ids, batch_size=8, seed=seed, step_fn=lambda: step,
                             lengths=lengths, batch_tokens=batch_tokens, mixed=mixed)
    plain = StepTaskBatchSampler(Fixed(probs, 100), task_index, ids, batch_size=8, seed=seed, step_fn=lambda: step)
    return s, plain, lengths, task_index


def test_budget_sampler_is_pure_in_the_step_and_respects_the_budget():
    s, plain, lengths, task_index = _sampler()
    assert len(s) == int(np.ceil(100 * lengths.mean() / 200))  # an epoch = its tokens / budget
    first = list(s)
    assert len(first) == len(s) and first == [s.batch(g) for g in range(len(s))]
    owner = {int(i): t for t, ix in task_index.items() for i in ix}
    for g in range(200):
        x = s.batch(g)
        assert len({owner[i] for i in x}) == 1  # one task per batch
        total = int(lengths[x].sum())
        assert total <= 200 and total > 200 - lengths[task_index[owner[x[0]]]].max()  # filled to the budget
        assert owner[x[0]] == owner[plain.batch(g)[0]]  # the same task as the unpacked stream's step g
    assert any(len(s.batch(g)) == 40 for g in range(50))  # lcc: 200 / 5 sequences
    # a fresh sampler (a resumed run) at step 17 yields the same batches as the first one's
    resumed, *_ = _sampler(step=17)
    assert list(resumed) == [s.batch(g) for g in range(17, (17 // len(s) + 1) * len(s))]
    other, *_ = _sampler(seed=4)
    assert [other.batch(g) for g in range(5)] != [s.batch(g) for g in range(5)]
    # a budget below one sequence still yields one
    tiny, *_ = _sampler(batch_tokens=1)
    assert all(len(tiny.batch(g)) == 1 for g in range(10))
    with pytest.raises(KGCError, match="batch_tokens"):
        StepTaskBatchSampler(Fixed({"lcc": 1.0}, 10), task_index, {"lcc": TASKS.index("lcc")}, 8, 0, lambda: 0,
                             batch_tokens=100)


def test_mixed_task_steps_follow_the_mixture_within_a_step_and_stay_pure_in_the_step():
    from scipy.stats import chisquare

    for batch_tokens in (None, 200):
        s, _, lengths, task_index = _sampler(batch_tokens=batch_tokens, mixed=True)
        owner = {int(i): t for t, ix in task_index.items() for i in ix}
        batches = [s.batch(g) for g in range(400)]
        assert batches[:len(s)] == list(s)  # pure in (seed, step), like single-task steps
        resumed, *_ = _sampler(step=17, batch_tokens=batch_tokens, mixed=True)
        assert list(resumed) == batches[17:(17 // len(s) + 1) * len(s)]  # the rest of step 17's epoch
        assert sum(len({owner[i] for i in x}) > 1 for x in batches) > 300  # steps hold several tasks
        if batch_tokens is None:
            assert all(len(x) == 8 for x in batches)
        else:
            # the budget cut as for one task: at most 200 tokens, and one more draw would pass it
            assert all(int(lengths[x].sum()) <= 200 for x in batches)
            assert sum(int(lengths[x].sum()) > 200 - 40 for x in batches) > 390
        # per draw, not per step: the draws of all steps follow the weights (the budget cut favours
        # short sequences, so the proportions are checked on the fixed-size stream)
        if batch_tokens is None:
            draws = np.array([owner[i] for x in batches for i in x])
            a, b, c = TASKS.index("lcc"), TASKS.index("khop"), TASKS.index("ig_path")
            observed = [int((draws == t).sum()) for t in (a, b, c)]
            assert chisquare(observed, [len(draws) * w for w in (0.5, 0.3, 0.2)]).pvalue > 1e-3
    # one task: mixed and single are the same stream
    one = {"khop": 1.0}
    m, *_ = _sampler(mixed=True, probs=one)
    single, *_ = _sampler(mixed=False, probs=one)
    assert [m.batch(g) for g in range(20)] == [single.batch(g) for g in range(20)]


def test_mixed_task_data_module_steps_hold_every_task_in_one_task_rows(nations):
    """``signals.step_tasks: mixed`` (the default) on Nations' five real signals: every step's packed
    batch holds several tasks, each row one task (the packed-vs-alone equivalence above already mixes
    tasks), the budget holds; ``single`` gives one task per step; a bad value is named."""
    loader = nations.train_dataloader()
    steps, ds = loader.batch_sampler, nations.train_set
    single = PretrainDataModule("nations", from_dict(SignalsConfig, {"step_tasks": "single"}), 32, seed=0,
                                model_name="transformer", max_len=64)
    single.setup()
    one = single.train_dataloader().batch_sampler
    assert steps.mixed and not one.mixed
    assert all(len({int(ds[i][2]) for i in one.batch(g)}) == 1 for g in range(20))
    for g in range(20):
        ix = steps.batch(g)
        tasks = {int(ds[i][2]) for i in ix}
        assert len(tasks) >= 3
        b = loader.collate_fn([ds[i] for i in ix])
        assert set(b.task.tolist()) == tasks and int((b.tokens != 0).sum()) <= nations.batch_tokens
        for r in range(len(b)):  # one task per row: the row's task token leads each of its segments
            seg_starts = torch.nonzero(torch.diff(b.segments[r], prepend=torch.tensor([0])) > 0).flatten()
            assert len({int(b.tokens[r, c]) for c in seg_starts}) == 1
    with pytest.raises(ConfigError, match="signals.step_tasks"):
        from_dict(SignalsConfig, {"step_tasks": "both"}, where="signals")


# ---- config and data module --------------------------------------------------------------------
def test_signals_config_packing_keys():
    cfg = from_dict(SignalsConfig, {})
    assert cfg.packing is True and cfg.batch_tokens is None
    assert from_dict(SignalsConfig, {"packing": False, "batch_tokens": 4096}).batch_tokens == 4096
    with pytest.raises(ConfigError, match="batch_tokens"):
        from_dict(SignalsConfig, {"batch_tokens": 0}, where="signals")
    with pytest.raises(ConfigError, match="signals.batch_tokens"):
        from_dict(SignalsConfig, {"batch_tokens": "many"}, where="signals")
    with pytest.raises(ConfigError, match="signals.packing"):
        from_dict(SignalsConfig, {"packing": "yes"}, where="signals")


def test_default_pretrain_config_documents_the_keys():
    from kgc.pretrain import CONFIG_DIR

    text = (CONFIG_DIR / "default.yaml").read_text()
    assert "packing: true" in text and "batch_tokens: null" in text


def test_data_module_packing_switches(nations, mirror):
    logs = []
    sig = from_dict(SignalsConfig, {})
    hybrid = PretrainDataModule("nations", sig, 32, model_name="hybrid", max_len=64, log=logs.append)
    assert not hybrid.packing and hybrid.batch_tokens is None
    assert any("signals.packing: off" in m and "hybrid" in m for m in logs)
    assert hybrid.train_collate() is collate
    off = PretrainDataModule("nations", from_dict(SignalsConfig, {"packing": False}), 32)
    assert not off.packing and off.train_collate() is collate
    on = PretrainDataModule("nations", from_dict(SignalsConfig, {"batch_tokens": 999}), 32)
    assert on.packing and on.batch_tokens == 999
    small = PretrainDataModule("nations", from_dict(SignalsConfig, {"batch_tokens": 10}), 32)
    with pytest.raises(KGCError, match="signals.batch_tokens 10"):
        small.setup()
    short = PretrainDataModule("nations", from_dict(SignalsConfig, {}), 32, model_name="transformer", max_len=32)
    with pytest.raises(KGCError, match="model.max_len 32"):
        short.setup()


def test_unpacked_data_module_is_unchanged(nations):
    """packing: false gives the step-indexed batches of before: batch_size sequences, right-padded."""
    dm = PretrainDataModule("nations", from_dict(SignalsConfig, {"packing": False, "step_tasks": "single"}), 32,
                            seed=0)
    dm.setup()
    b = next(iter(dm.train_dataloader()))
    assert not b.packed and b.prefix_mask is None and len(b) == 32
    s = StepTaskBatchSampler(dm.sampler, dm.train_set.task_index, dm.train_set.task_ids, 32, 0, lambda: 0)
    ref = collate([dm.train_set[i] for i in s.batch(0)])
    assert torch.equal(b.tokens, ref.tokens) and torch.equal(b.labels, ref.labels)
