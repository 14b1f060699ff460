"""Pretraining end to end on the built-in synthetic KG (tiny model, few steps)."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kgc import KGCError
from kgc.pretrain import main as pretrain_main
from kgc.vocab import SIGNALS, Vocabulary

from training_helpers import ROOT, run_module


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
        assert last < first - 0.5, f"{sig}: loss did not fall ({first:.3f} -> {last:.3f})"
        assert first < math.log(len(vocab)) + 1.0
        # held-out per-task validation metrics are logged too
        assert series(rows, f"val/{sig}/acc"), sig
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 60
    assert ckpt["kgc"]["kind"] == "pretrain" and ckpt["kgc"]["vocab"]["fingerprint"] == vocab.fingerprint


def test_pretrain_hybrid_runs(tmp_path, tiny_pretrain_cfg):
    out = tmp_path / "run"
    assert pretrain_main(["--signals", "ig_path,lcc", "--model", "hybrid-tiny", "--config", str(tiny_pretrain_cfg),
                          "--set", "model.name=hybrid", "--set", "model.attn_every=1", "--set", "model.headdim=16",
                          "--out", str(out), "--max-steps", "6"]) == 0
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["kgc"]["model"]["name"] == "hybrid"
    assert ckpt["kgc"]["signals"] == ["ig_path", "lcc"]


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


def test_resume_after_sigkill_continues_from_checkpoint(tmp_path, tiny_pretrain_cfg):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "kgc.pretrain", "--signals", "lcc,random_walk", "--config", str(tiny_pretrain_cfg),
           "--out", str(out), "--max-steps", "100000", "--set", "trainer.ckpt_every=5",
           "--set", "trainer.val_every=0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            if last.is_file():
                step = torch.load(last, weights_only=True)["global_step"]
                if step >= 10:
                    break
            time.sleep(0.5)
        else:
            pytest.fail("no checkpoint after 300 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = torch.load(last, weights_only=True)["global_step"]
    assert killed_at >= 10
    # no temp file mistaken for a checkpoint; every .ckpt loads
    for f in (out / "checkpoints").glob("*.ckpt"):
        torch.load(f, weights_only=True)
    target = killed_at + 7
    res = run_module("kgc.pretrain", "--resume", str(out), "--max-steps", str(target), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resuming from {last}" in res.stdout
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["global_step"] == target
    steps = [s for s, _ in series(read_metrics(out), "train/loss")]
    assert max(steps) >= killed_at


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


def test_task_bucket_batches_are_single_task_and_keep_every_index():
    import numpy as np

    from kgc.training.pretrain_data import TaskBucketBatchSampler

    task_of = np.array([0, 1, 2, 0, 1, 2, 0, 0, 1, 2, 2, 2])
    stream = list(range(12)) * 3
    batches = list(TaskBucketBatchSampler(stream, task_of, batch_size=4))
    assert all(len({int(task_of[i]) for i in b}) == 1 for b in batches)
    assert sorted(i for b in batches for i in b) == sorted(stream)
    assert all(len(b) == 4 for b in batches[:-3])
