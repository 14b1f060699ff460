"""Mixing, batching/labels, held-out split, task samplers, cache, streaming and the `kgc.signals` CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from kgc import KGCError
from kgc.vocab import TASKS
from pretrain_tasks import (
    SignalDataset,
    SignalExamples,
    StreamingSignalDataset,
    UncertaintyTaskSampler,
    WeightedTaskSampler,
    cached_generate,
    collate,
    get_signal,
    resolve_weights,
    split_heldout,
)
from pretrain_tasks.cache import cache_meta, cache_path
from pretrain_tasks.mixture import pack


def toy(name, n, prompt_len=1, target_len=2, base=100):
    prompt = base + np.arange(n * prompt_len).reshape(n, prompt_len)
    target = base + 1000 + np.arange(n * 5).reshape(n, 5)
    tl = np.full(n, target_len) if np.isscalar(target_len) else np.asarray(target_len)
    return pack(name, 6 + TASKS.index(name), 3, 2, prompt, target, tl, source=np.arange(n))


def test_pack_layout():
    ex = toy("khop", 2, prompt_len=2, target_len=[1, 3])
    assert ex.tokens.shape == (2, 8)
    assert ex.tokens.tolist() == [[9, 100, 101, 3, 1100, 2, 0, 0], [9, 102, 103, 3, 1105, 1106, 1107, 2]]
    assert ex.prefix_len.tolist() == [4, 4]
    assert ex.lengths.tolist() == [6, 8]
    assert ex.prompt(1).tolist() == [102, 103] and ex.target(1).tolist() == [1105, 1106, 1107]


def test_collate_labels():
    a = toy("random_walk", 2, prompt_len=1, target_len=[2, 4])
    b = toy("lcc", 1, prompt_len=1, target_len=2)
    ds = SignalDataset([a, b])
    batch = collate([ds[0], ds[1], ds[2]])
    toks, labels = batch["tokens"], batch["labels"]
    assert toks.shape == (3, 8) and toks.dtype == torch.long
    assert batch["prefix_len"].tolist() == [3, 3, 3]
    assert batch["task"].tolist() == [TASKS.index("random_walk")] * 2 + [TASKS.index("lcc")]
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
    toks, pl, task = ds[6]
    assert task == TASKS.index("lcc") and pl == 3 and toks[-1].item() == 2
    loader = DataLoader(ds, batch_size=4, collate_fn=collate, sampler=WeightedTaskSampler(ds, "uniform", 8, seed=0))
    batches = list(loader)
    assert len(batches) == 2 and all(b["tokens"].shape[0] == 4 for b in batches)
    with pytest.raises(KGCError, match="no signal examples"):
        SignalDataset([SignalExamples.empty("lcc")])


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


class _Counting:
    def __init__(self, sig):
        self.sig, self.calls = sig, 0
        self.name, self.config = sig.name, sig.config

    def generate(self, *a, **k):
        self.calls += 1
        return self.sig.generate(*a, **k)


class _Renamed:
    """The synthetic dataset with another fingerprint (a new dataset version)."""

    def __init__(self, ds, fp):
        self._ds, self.fingerprint = ds, fp

    def __getattr__(self, k):
        return getattr(self._ds, k)


def test_cache_hit_and_rebuild(synth, tmp_path):
    sig = _Counting(get_signal("random_walk"))
    logs = []
    a = cached_generate(sig, synth.ds, synth.graph, synth.vocab, num_examples=30, seed=0, root=tmp_path, log=logs.append)
    b = cached_generate(sig, synth.ds, synth.graph, synth.vocab, num_examples=30, seed=0, root=tmp_path, log=logs.append)
    assert sig.calls == 1 and "from cache" in logs[-1]
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.prefix_len, b.prefix_len)
    files = list(tmp_path.rglob("*.npz"))
    assert len(files) == 1 and files[0].parent.name == "synthetic"
    assert not list(tmp_path.rglob("*.tmp"))
    np.load(files[0], allow_pickle=False)  # no pickled objects inside
    # another seed / config is another entry
    cached_generate(sig, synth.ds, synth.graph, synth.vocab, num_examples=30, seed=1, root=tmp_path)
    assert sig.calls == 2
    # a new dataset version (fingerprint) is rebuilt
    ds2 = _Renamed(synth.ds, "0" * 64)
    cached_generate(sig, ds2, synth.graph, synth.vocab, num_examples=30, seed=0, root=tmp_path)
    assert sig.calls == 3
    # a file at the right path with a stale format/meta inside, or damaged, is rebuilt
    meta = cache_meta(synth.ds, synth.vocab, "random_walk", sig.config, 30, 0)
    path = cache_path(meta, tmp_path)
    assert path == files[0]
    stale = dict(meta, format_version=0)
    from pretrain_tasks.cache import save_examples

    save_examples(path, a, stale)
    c = cached_generate(sig, synth.ds, synth.graph, synth.vocab, num_examples=30, seed=0, root=tmp_path)
    assert sig.calls == 4 and np.array_equal(c.tokens, a.tokens)
    path.write_bytes(b"garbage")
    cached_generate(sig, synth.ds, synth.graph, synth.vocab, num_examples=30, seed=0, root=tmp_path)
    assert sig.calls == 5
    cached_generate(sig, synth.ds, synth.graph, synth.vocab, num_examples=30, seed=0, root=tmp_path)
    assert sig.calls == 5


def test_cache_default_root_is_kgc_home(synth, tmp_path, monkeypatch):
    monkeypatch.setenv("KGC_HOME", str(tmp_path))
    cached_generate(get_signal("lcc"), synth.ds, synth.graph, synth.vocab, num_examples=5, seed=0)
    assert list((tmp_path / "signals" / "synthetic").glob("lcc-*.npz"))


def test_streaming_dataset(synth):
    sigs = [get_signal("random_walk"), get_signal("lcc")]
    st = StreamingSignalDataset(sigs, synth.ds, synth.graph, synth.vocab, chunk_size=16, seed=0, num_chunks=6)
    items = list(st)
    assert len(items) == 6 * 16
    tasks = {t for _, _, t in items}
    assert tasks <= {TASKS.index("random_walk"), TASKS.index("lcc")}
    batch = collate(items[:8])
    assert batch["tokens"].shape[0] == 8
    again = list(StreamingSignalDataset(sigs, synth.ds, synth.graph, synth.vocab, chunk_size=16, seed=0, num_chunks=6))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(items, again))
    with pytest.raises(KGCError, match="size"):
        StreamingSignalDataset(sigs, synth.ds, synth.graph, synth.vocab, weights="size")


def test_cli_show(capsys):
    from kgc.signals import main

    assert main(["show", "--signal", "shortest_path", "-n", "3"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("# synthetic: signal shortest_path")
    assert len(out) == 4 and all(line.startswith("[TASK:shortest_path] e") and "[SEP]" in line for line in out[1:])
    assert main(["show", "--signal", "lcc", "-n", "2", "--set", "clustering_buckets=uniform"]) == 0
    assert "[DEG_" in capsys.readouterr().out


@pytest.mark.parametrize("argv,msg", [
    (["show", "--signal", "nope"], "unknown signal 'nope'; valid signals: random_walk, shortest_path, khop"),
    (["show", "--signal", "khop", "--set", "kk=2"], "unknown key 'kk'"),
    (["show", "--signal", "khop", "--dataset", "no-such-dataset"], "error: "),
    (["show", "--signal", "khop", "-n", "0"], "-n must be >= 1"),
])
def test_cli_errors(capsys, argv, msg):
    from kgc.signals import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and msg in err and len(err.strip().splitlines()) == 1
