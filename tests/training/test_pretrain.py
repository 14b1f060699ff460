"""Pretraining end to end on the built-in synthetic KG (tiny model, few steps)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from kgc import KGCError
from kgc.pretrain import main as pretrain_main
from kgc.vocab import Vocabulary
from pretrain_tasks.registry import SIGNAL_NAMES as SIGNALS

from training_helpers import run_module


def read_metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "logs" / "csv" / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def series(rows, key):
    return [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]


def test_pretrain_all_signals_losses_fall(tmp_path, tiny_pretrain_cfg):
    out = tmp_path / "run"
    assert pretrain_main(["--signals", "all", "--config", str(tiny_pretrain_cfg), "--out", str(out),
                          "--max-steps", "60"]) == 0
    for name in ("run.json", "config.yaml", "vocab.json", "checkpoints/last.ckpt"):
        assert (out / name).is_file(), name
    vocab = Vocabulary.load(out / "vocab.json")
    assert vocab.dataset == "synthetic"
    rows = read_metrics(out)
    for sig in SIGNALS:
        s = series(rows, f"train/{sig}/loss")
        assert len(s) >= 6, (sig, s)
        first = sum(v for _, v in s[:2]) / 2
        last = sum(v for _, v in s[-2:]) / 2
        # the default loss scores each target over its token class, so it starts near log(class size)
        # rather than log(V) and falls by less in absolute terms: a 5% fall in 60 steps of a tiny model
        assert last < 0.95 * first, f"{sig}: loss did not fall ({first:.3f} -> {last:.3f})"
        assert first < math.log(len(vocab)) + 1.0
        # held-out per-task validation metrics are logged too
        assert series(rows, f"val/{sig}/acc"), sig
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 60
    assert ckpt["kgc"]["kind"] == "pretrain" and ckpt["kgc"]["vocab"]["fingerprint"] == vocab.fingerprint


def test_pretrain_hybrid_runs(tmp_path, tiny_pretrain_cfg):
    """The hybrid trains, not only starts: finite logged losses, and every Mamba2 and shared-attention
    weight moved after the first step (a seeded 1-step run is the reference: a weight that gets no
    gradient stays bit-equal, AdamW skips it)."""
    out = tmp_path / "run"
    common = ["--signals", "ig_path,lcc", "--model", "hybrid-tiny", "--config", str(tiny_pretrain_cfg),
              "--set", "model.name=hybrid", "--set", "model.attn_every=1", "--set", "model.headdim=16",
              "--set", "trainer.log_every=1"]
    init = tmp_path / "init"
    assert pretrain_main([*common, "--out", str(init), "--max-steps", "1"]) == 0
    assert pretrain_main([*common, "--out", str(out), "--max-steps", "6"]) == 0
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["kgc"]["model"]["name"] == "hybrid"
    assert ckpt["kgc"]["signals"] == ["ig_path", "lcc"]
    assert ckpt["global_step"] == 6
    losses = [v for _, v in series(read_metrics(out), "train/loss")]
    assert len(losses) >= 5 and all(math.isfinite(v) for v in losses)
    before = torch.load(init / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    after = ckpt["state_dict"]
    assert set(before) == set(after)
    moved = {k for k in after if after[k].is_floating_point() and not torch.equal(before[k], after[k])}
    for part in ("mamba.0.mixer.in_proj", "mamba.0.mixer.out_proj", "mamba.0.mixer.conv1d", "mamba.0.mixer.A_log",
                 "mamba.0.mixer.dt_bias", "shared.block.attn.qkv", "shared.block.mlp.fc", "shared_out.0"):
        assert any(part in k for k in moved), part
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--signals", "random_walk,bogus"], "random_walk, shortest_path, khop, ig_path, lcc"),
        (["--model", "transfomer"], "transformer"),
        (["--set", "trainer.max_stpes=3"], "did you mean 'max_steps'"),
        (["--set", "optim.lr=-1"], "lr must be > 0"),
        (["--max-time", "soon"], "max_time"),
    ],
)
def test_pretrain_bad_arguments_are_one_line_errors(args, needle, tmp_path):
    proc = run_module("kgc.pretrain", *args, "--out", str(tmp_path / "x"), timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert err and err[-1].startswith("error: ") and needle in err[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


def test_resume_refuses_missing_checkpoint(tmp_path, tiny_pretrain_cfg):
    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(KGCError, match="run.json missing"):
        pretrain_main(["--resume", str(out)])


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path, tiny_pretrain_cfg):
    out = tmp_path / "run"
    res = run_module("kgc.pretrain", "--signals", "lcc,khop", "--config", str(tiny_pretrain_cfg), "--out", str(out),
                     "--max-steps", "6", "--devices", "2", "--accelerator", "cpu", "--strategy", "ddp",
                     "--set", "trainer.val_every=3", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 6
    # the worker process used rank 0's folder: exactly one run folder exists
    assert [p.name for p in tmp_path.iterdir()] == ["run"] or sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["run", "tiny_pretrain.yaml"])


def test_step_task_batches_are_single_task_pure_in_the_step_and_follow_the_weights():
    import numpy as np
    from scipy.stats import chisquare

    from kgc.training.pretrain_data import StepTaskBatchSampler
    from pretrain_tasks.registry import TASKS

    from training_helpers import FixedTaskSampler as Fixed

    a, b, c = TASKS.index("lcc"), TASKS.index("khop"), TASKS.index("ig_path")
    task_index = {a: np.arange(0, 40), b: np.arange(40, 50), c: np.arange(50, 53)}
    probs = {"lcc": 0.5, "khop": 0.3, "ig_path": 0.2}
    ids = {n: TASKS.index(n) for n in probs}
    step = [0]
    s = StepTaskBatchSampler(Fixed(probs, 100), task_index, ids, batch_size=8, seed=3, step_fn=lambda: step[0])
    assert len(s) == 13  # ceil(100 / 8) batches per epoch
    first = list(s)
    assert len(first) == 13 and all(len(x) == 8 for x in first)
    assert first == [s.batch(g) for g in range(13)]
    owner = {int(i): t for t, ix in task_index.items() for i in ix}
    assert all(len({owner[i] for i in x}) == 1 for x in first)  # one task per batch
    # a fresh sampler (a resumed run) at step 17 yields batches 17..25, the same as the first one's
    other = StepTaskBatchSampler(Fixed(probs, 100), task_index, ids, batch_size=8, seed=3, step_fn=lambda: 17)
    assert list(other) == [s.batch(g) for g in range(17, 26)]
    seed4 = StepTaskBatchSampler(Fixed(probs, 100), task_index, ids, batch_size=8, seed=4, step_fn=lambda: 0)
    assert [seed4.batch(g) for g in range(5)] != first[:5]  # the seed matters
    # the task of each step follows the weights (chi-square over 3,000 steps)
    tasks = np.array([owner[s.batch(g)[0]] for g in range(3000)])
    observed = [int((tasks == t).sum()) for t in (a, b, c)]
    assert chisquare(observed, [3000 * probs[n] for n in ("lcc", "khop", "ig_path")]).pvalue > 1e-3


def test_run_folders_default_to_kgc_runs_and_finetuning_finds_them_there(tmp_path, tiny_pretrain_cfg,
                                                                          tiny_finetune_cfg, monkeypatch):
    """Without --runs-root, pretraining writes under $KGC_RUNS and fine-tuning starts from the run it finds
    there (neither touches ./runs)."""
    from kgc.finetune import main as finetune_main

    root = tmp_path / "kgc-runs"
    monkeypatch.setenv("KGC_RUNS", str(root))
    monkeypatch.chdir(tmp_path)
    assert pretrain_main(["--signals", "lcc", "--config", str(tiny_pretrain_cfg), "--max-steps", "2"]) == 0
    (pt,) = list(root.iterdir())
    assert (pt / "checkpoints" / "last.ckpt").is_file()
    assert finetune_main(["--dataset", "synthetic", "--config", str(tiny_finetune_cfg), "--max-steps", "2"]) == 0
    ft = [p for p in root.iterdir() if p != pt]
    assert len(ft) == 1
    m = json.loads((ft[0] / "metrics.json").read_text())
    assert m["init_checkpoint"] == str(pt / "checkpoints" / "last.ckpt")
    assert not (tmp_path / "runs").exists()
