"""Corrupt state and untrusted files: truncated/foreign/pickle-bearing checkpoints, a run folder without its
vocabulary, stale caches; and a source scan proving every load is a safe one.

Malicious tar archives (absolute paths, ``..``, symlinks, hard links) are covered by
``tests/data/test_data_safe_tar.py``; this file adds the pickle-bearing checkpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from kgc import KGCError
from kgc.config import to_dict
from kgc.training.checkpoint import CHECKPOINT_FORMAT, load_checkpoint_file

ROOT = Path(__file__).resolve().parents[2]


class Evil:
    """Unpickling this would run code; weights_only=True must refuse it."""

    def __reduce__(self):
        return (Path.write_text, (Path("/tmp/kgc-pwned"), "pwned"))


def kgc_ckpt(path: Path, **extra) -> Path:
    torch.save({"state_dict": {"model.w": torch.ones(3)}, "global_step": 1,
                "kgc": {"format": CHECKPOINT_FORMAT, "kind": "finetune"}, **extra}, path)
    return path


def test_valid_checkpoint_loads(tmp_path):
    assert load_checkpoint_file(kgc_ckpt(tmp_path / "ok.ckpt"))["global_step"] == 1


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.0])
def test_truncated_checkpoint_is_a_clear_error(tmp_path, keep):
    p = kgc_ckpt(tmp_path / "t.ckpt")
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(KGCError, match=r"t\.ckpt: .*(truncated or corrupt|refused).*") as info:
        load_checkpoint_file(p)
    assert "\n" not in str(info.value)


def test_foreign_checkpoints_are_refused(tmp_path):
    p = tmp_path / "plain.pt"
    torch.save({"weights": torch.ones(2)}, p)
    with pytest.raises(KGCError, match=r"plain\.pt: not a kgc checkpoint \(no state_dict\)"):
        load_checkpoint_file(p)
    q = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, q)
    with pytest.raises(KGCError, match=r"lightning\.ckpt: not a kgc checkpoint \(missing or foreign 'kgc' metadata\)"):
        load_checkpoint_file(q)


def test_pickle_bearing_checkpoint_is_refused_not_executed(tmp_path):
    Path("/tmp/kgc-pwned").unlink(missing_ok=True)
    p = kgc_ckpt(tmp_path / "evil.ckpt", payload=Evil())
    with pytest.raises(KGCError, match=r"evil\.ckpt: refused to load.*weights_only=True"):
        load_checkpoint_file(p)
    assert not Path("/tmp/kgc-pwned").exists()
    # every entry point goes through the safe loader
    from kgc.evaluate import main as evaluate_main

    with pytest.raises(KGCError, match="refused to load"):
        evaluate_main(["--checkpoint", str(p)])
    assert not Path("/tmp/kgc-pwned").exists()


def _finetune_run_folder(tmp_path: Path) -> Path:
    from kgc.finetune import FinetuneConfig
    from kgc.training.runs import RunDir

    run = RunDir(tmp_path / "run")
    run.create({"kind": "finetune", "dataset": "nations"}, to_dict(FinetuneConfig(dataset="nations")))
    kgc_ckpt(run.checkpoints / "last.ckpt")
    return run.path


def test_resume_without_vocab_names_the_file(tmp_path):
    from kgc.finetune import main as finetune_main

    run = _finetune_run_folder(tmp_path)
    with pytest.raises(KGCError, match=r"run/vocab\.json: vocabulary file missing; the run folder is incomplete"):
        finetune_main(["--resume", str(run)])


def test_resume_with_corrupt_run_json_or_config(tmp_path):
    from kgc.finetune import main as finetune_main

    run = _finetune_run_folder(tmp_path)
    (run / "config.yaml").unlink()
    with pytest.raises(KGCError, match=r"config\.yaml: resolved config missing"):
        finetune_main(["--resume", str(run)])
    (run / "run.json").write_text("{not json")
    with pytest.raises(KGCError, match=r"run\.json: not valid JSON"):
        finetune_main(["--resume", str(run)])


def test_signal_cache_from_another_dataset_version_is_rebuilt(tmp_path):
    from graph_algos.graph import KGraph
    from kgc.data import load_dataset
    from pretrain_tasks import build_vocab, load_signal
    from pretrain_tasks.cache import cache_meta, cache_path, cached_generate, save_examples

    ds = load_dataset("synthetic")
    g = KGraph.from_dataset(ds)
    vocab = build_vocab(ds, g)
    sig = load_signal("lcc")
    logs: list[str] = []
    first = cached_generate(sig, ds, g, vocab, num_examples=50, seed=0, root=tmp_path, log=logs.append)
    meta = cache_meta(ds, vocab, sig.name, sig.config, 50, 0)
    path = cache_path(meta, tmp_path)
    assert path.is_file() and "generated" in logs[-1]
    # a file at the same place written for another dataset version / format: never used, rebuilt
    for key, value in (("fingerprint", "0" * 64), ("format_version", -1)):
        stale = dict(meta, **{key: value})
        junk = first.__class__(first.name, first.tokens[:3] * 0 + 1, first.prefix_len[:3], first.task[:3],
                               first.source[:3])
        save_examples(path, junk, stale)
        again = cached_generate(sig, ds, g, vocab, num_examples=50, seed=0, root=tmp_path, log=logs.append)
        assert "generated" in logs[-1], key
        assert (again.tokens == first.tokens).all() and len(again) == len(first)
        hit = cached_generate(sig, ds, g, vocab, num_examples=50, seed=0, root=tmp_path, log=logs.append)
        assert "from cache" in logs[-1] and (hit.tokens == first.tokens).all()
    # a damaged file is rebuilt too
    path.write_bytes(b"garbage")
    cached_generate(sig, ds, g, vocab, num_examples=50, seed=0, root=tmp_path, log=logs.append)
    assert "generated" in logs[-1]


def test_dataset_cache_of_another_format_is_rebuilt(tmp_path, monkeypatch):
    from kgc.data import load_dataset
    from kgc.data.dataset import cache_dir

    monkeypatch.setenv("KGC_HOME", str(tmp_path / "home"))
    d = tmp_path / "kg"
    d.mkdir()
    for split, text in (("train", "a\tr\tb\nb\tr\tc\n"), ("valid", "a\tr\tc\n"), ("test", "c\tr\ta\n")):
        (d / f"{split}.txt").write_text(text)
    ds = load_dataset(str(d))
    assert load_dataset(str(d)).metadata.get("from_cache")
    meta_path = cache_dir(ds.name, ds.fingerprint) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["cache_format"] = -1
    meta["entity_names"] = ["x", "y", "z"]  # would be a silently wrong result if used
    meta_path.write_text(json.dumps(meta))
    again = load_dataset(str(d))
    assert not again.metadata.get("from_cache") and again.entity_names == ["a", "b", "c"]


# ---------------------------------------------------------------- source scan

PACKAGES = ["kgc", "graph_algos", "pretrain_tasks", "kernels"]
FORBIDDEN = [
    (re.compile(r"weights_only\s*=\s*False"), "torch.load(weights_only=False)"),
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
    (re.compile(r"\b(cloudpickle|dill|joblib)\b"), "pickle-based loader"),
    (re.compile(r"yaml\.load\((?![^)]*SafeLoader)"), "yaml.load without SafeLoader"),
    (re.compile(r"yaml\.(unsafe_load|full_load)\("), "unsafe yaml loader"),
    (re.compile(r"(?<![\w.])eval\("), "eval("),
    (re.compile(r"(?<![\w.])exec\("), "exec("),
    (re.compile(r"allow_pickle\s*=\s*True"), "numpy allow_pickle=True"),
    (re.compile(r"\.extractall\("), "tarfile.extractall (use kgc.data.download's safe extraction)"),
]


def _sources():
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def test_no_unsafe_deserialisation_in_the_package_source():
    bad = []
    for path in _sources():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for pat, what in FORBIDDEN:
                if pat.search(code):
                    bad.append(f"{path.relative_to(ROOT)}:{n}: {what}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_every_torch_load_is_weights_only():
    loads = []
    for path in _sources():
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start(): text.find(")", m.start()) + 1]
            depth, i = 0, m.end() - 1
            while i < len(text):  # the whole call, nested parentheses included
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                if depth == 0:
                    break
                i += 1
            call = text[m.start(): i + 1]
            loads.append((path, call))
            assert "weights_only=True" in call, f"{path.relative_to(ROOT)}: {call}"
    assert loads, "expected at least the checkpoint loader"
    # np.load: allow_pickle defaults to False and allow_pickle=True is forbidden above


def test_scan_catches_what_it_forbids():
    """The patterns are live: each forbidden construct is found in a sample line."""
    samples = ["torch.load(p, weights_only=False)", "pickle.load(fh)", "yaml.load(fh)", "x = eval(s)",
               "np.load(p, allow_pickle=True)", "tar.extractall(dest)"]
    for s in samples:
        assert any(p.search(s) for p, _ in FORBIDDEN), s
    assert not any(p.search("yaml.safe_load(fh)") or p.search("model.eval()") for p, _ in FORBIDDEN)
