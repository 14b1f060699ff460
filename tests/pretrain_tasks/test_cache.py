"""pretrain_tasks.cache: the on-disk cache of generated examples."""

from __future__ import annotations

import numpy as np

from pretrain_tasks import cached_generate, get_signal
from pretrain_tasks.cache import cache_meta, cache_path


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
