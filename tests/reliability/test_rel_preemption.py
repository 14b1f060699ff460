"""Preemption-safe runs: SIGTERM/SIGUSR1 write ``last.ckpt`` and exit 75; ``--resume`` ends exactly where an
uninterrupted run ends, with dropout on (the checkpoint carries every rank's RNG states), in one process
and under 2-process DDP; stale temp files are removed at the next start; a run folder of another kind or
format is a one-line error.

The signals come from ``rel_driver.py`` (``KGC_REL_FAULT=signal:NAME:STEP[:group|:workers]``): rank 0 sends
them during the training step that becomes global step STEP, so the test knows the step it lands on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kgc.cli import run_cli
from kgc.errors import EXIT_PREEMPTED
from kgc.finetune import main as finetune_main
from kgc.pretrain import main as pretrain_main
from kgc.training.checkpoint import load_checkpoint_file
from kgc.training.runs import RunDir

from rel_helpers import DRIVER, ROOT, ckpt_step, env, final_metrics, read_csv_metrics, run_module, series, write_cfg

ARGS = ["--dataset", "nations", "--from-scratch"]
RNG_KEY = "RNGStateCallback"

# tiny deterministic fine-tuning on nations with dropout on: 3,184 train queries -> 13 steps/epoch at
# batch 256, so 16 steps cross an epoch boundary; validation every 8 steps, checkpoints every 4
FT_DROPOUT = """
model: {name: transformer, dim: 32, layers: 2, heads: 2, mlp_ratio: 2.0, dropout: 0.2, attn_dropout: 0.1, max_len: 96}
optim: {lr: 3.0e-3, warmup_steps: 5}
trainer: {max_steps: 16, batch_size: 256, val_every: 8, ckpt_every: 4, log_every: 1, progress_bar: false,
          deterministic: true}
patience: 0
eval: {val_max_queries: 301}
"""


def drive(module: str, *args: str, fault: str, marker: Path, log: Path, timeout: float = 300) -> int:
    """Run ``module`` through the fault driver to completion (one process); its exit status."""
    e = {**env(), "KGC_REL_FAULT": fault, "KGC_REL_MARKER": str(marker)}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(DRIVER), module, *args], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env=e)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert marker.exists(), f"the signal was never sent ({fault}):\n{log.read_text()[-3000:]}"
    return rc


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_file(ckpt)["state_dict"]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def assert_preempted(run: Path, rc: int, log: Path, step: int, signame: str, module: str) -> None:
    text = log.read_text()
    assert rc == EXIT_PREEMPTED == 75, text[-3000:]
    line = f"preempted by {signame} at step {step}: checkpoint {run / 'checkpoints' / 'last.ckpt'}; " \
           f"continue with: python -m {module} --resume {run}"
    assert line in text.splitlines(), text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert ckpt_step(run / "checkpoints" / "last.ckpt") == step
    assert not (run / "metrics.json").exists()  # no final evaluation after a preemption
    meta = json.loads((run / "run.json").read_text())
    assert meta["preemptions"][-1]["step"] == step and meta["preemptions"][-1]["signal"] == signame
    rng = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["callbacks"][RNG_KEY]
    assert rng["step"] == step and len(rng["ranks"]) == rng["world_size"]
    assert {"torch", "numpy", "python"} <= rng["ranks"][0].keys()


@pytest.fixture(scope="module")
def ft_baseline(tmp_path_factory):
    root = tmp_path_factory.mktemp("preempt_base")
    cfg = write_cfg(root, FT_DROPOUT, "ft.yaml")
    out = root / "run"
    assert finetune_main([*ARGS, "--config", str(cfg), "--out", str(out), "-q"]) == 0
    assert (out / "metrics.json").is_file()
    return cfg, out


@pytest.mark.slow
def test_sigterm_then_sigusr1_then_resume_equals_the_uninterrupted_run(ft_baseline, tmp_path, capsys):
    """SIGTERM at step 6 (a plain step: checkpoint at the batch end), ``--resume``, SIGUSR1 at step 8 (a
    validation step: the checkpoint is rewritten after that validation, so the resumed run neither skips
    nor repeats it), ``--resume`` again: metrics.json, the validation history and the weights of
    ``last.ckpt``/``best.ckpt`` equal the uninterrupted run's, with dropout on. A stale temp file of a
    killed write is gone after the next start. The same resume without the checkpointed RNG states
    ends elsewhere: the restore is what makes it exact."""
    cfg, base = ft_baseline
    run = tmp_path / "run"
    ck = run / "checkpoints"
    rc = drive("kgc.finetune", *ARGS, "--config", str(cfg), "--out", str(run), fault="signal:SIGTERM:6",
               marker=tmp_path / "m1", log=tmp_path / "p1.log")
    assert_preempted(run, rc, tmp_path / "p1.log", 6, "SIGTERM", "kgc.finetune")
    assert not (ck / "best.ckpt").exists()  # no validation has run yet
    snapshot = tmp_path / "snapshot"  # the run as the first preemption left it
    shutil.copytree(run, snapshot)

    stale = [ck / ".step-8.ckpt.k2j4h6x1.tmp", run / ".run.json.a8d3kq0z.tmp"]
    for f in stale:
        f.write_bytes(b"half a checkpoint")
    keep = ck / "notes.tmp"  # not a temp file of kgc's atomic writes: kept
    keep.write_text("mine")
    rc = drive("kgc.finetune", "--resume", str(run), fault="signal:SIGUSR1:8", marker=tmp_path / "m2",
               log=tmp_path / "p2.log")
    assert_preempted(run, rc, tmp_path / "p2.log", 8, "SIGUSR1", "kgc.finetune")
    assert not any(f.exists() for f in stale) and keep.exists()
    assert "removed 2 stale temp file(s)" in (tmp_path / "p2.log").read_text()
    assert (ck / "best.ckpt").is_file() and ckpt_step(ck / "best.ckpt") == 8  # the step-8 validation ran

    assert finetune_main(["--resume", str(run), "-q"]) == 0
    assert final_metrics(run) == final_metrics(base)
    assert same_weights(ck / "last.ckpt", base / "checkpoints" / "last.ckpt")
    assert same_weights(ck / "best.ckpt", base / "checkpoints" / "best.ckpt")
    assert dict(series(read_csv_metrics(run), "val/mrr")) == dict(series(read_csv_metrics(base), "val/mrr"))
    assert "after the validation" in (tmp_path / "p2.log").read_text()
    meta = json.loads((run / "run.json").read_text())
    assert [p["step"] for p in meta["preemptions"]] == [6, 8] and meta["finished"] is True

    # the same folder and checkpoint without the RNG states (as an older kgc wrote them): the resumed
    # run draws other dropout masks and ends elsewhere
    shutil.rmtree(run)
    shutil.copytree(snapshot, run)
    ckpt = torch.load(ck / "last.ckpt", map_location="cpu", weights_only=True)
    del ckpt["callbacks"][RNG_KEY]
    torch.save(ckpt, ck / "last.ckpt")
    capsys.readouterr()
    assert finetune_main(["--resume", str(run)]) == 0
    assert "carries no RNG states" in capsys.readouterr().out
    assert not same_weights(ck / "last.ckpt", base / "checkpoints" / "last.ckpt")


# tiny deterministic pretraining with dropout: packed mixed-task batches of 400 tokens, about 17 per
# epoch (lcc + random_walk, 300 examples each); validation every 10 steps
PT_DROPOUT = """
model: {name: transformer, dim: 32, layers: 2, heads: 2, mlp_ratio: 2.0, dropout: 0.2, attn_dropout: 0.1, max_len: 96}
signals: {num_examples: 300, batch_tokens: 400}
optim: {lr: 3.0e-3, warmup_steps: 5}
trainer: {max_steps: 22, batch_size: 32, val_every: 10, ckpt_every: 5, log_every: 1, progress_bar: false,
          deterministic: true}
"""


@pytest.mark.slow
def test_pretraining_preempted_at_an_epoch_boundary_resumes_exactly(tmp_path):
    """SIGTERM on the last batch of the first epoch: the resumed run starts a new epoch and a new data
    iterator, which must not draw on the global torch generator (it would shift every later dropout
    mask); weights and logged losses equal the uninterrupted run's."""
    args = ["--signals", "lcc,random_walk", "--config", str(write_cfg(tmp_path, PT_DROPOUT, "pt.yaml"))]
    base = tmp_path / "base"
    assert pretrain_main([*args, "--out", str(base), "-q"]) == 0
    rows = read_csv_metrics(base)
    per_epoch = sum(1 for r in rows if r.get("train/loss") and r.get("epoch") == "0")
    assert 10 < per_epoch < 22, per_epoch  # the boundary lies inside the run (and off the validations)
    run = tmp_path / "run"
    rc = drive("kgc.pretrain", *args, "--out", str(run), fault=f"signal:SIGTERM:{per_epoch}",
               marker=tmp_path / "m", log=tmp_path / "p.log")
    assert_preempted(run, rc, tmp_path / "p.log", per_epoch, "SIGTERM", "kgc.pretrain")
    assert pretrain_main(["--resume", str(run), "-q"]) == 0
    assert ckpt_step(run / "checkpoints" / "last.ckpt") == 22
    assert same_weights(run / "checkpoints" / "last.ckpt", base / "checkpoints" / "last.ckpt")
    assert series(read_csv_metrics(run), "train/loss") == series(rows, "train/loss")


# 2-process DDP (gloo), full-batch fine-tuning with dropout: each rank trains on its half of nations'
# 3,184 queries per step, so every step is an epoch and a resume continues the DistributedSampler's
# epoch order exactly; validation and checkpoints every 3 steps
DDP_DROPOUT = """
model: {name: transformer, dim: 32, layers: 2, heads: 2, mlp_ratio: 2.0, dropout: 0.2, attn_dropout: 0.1, max_len: 32}
optim: {lr: 3.0e-3, warmup_steps: 2}
trainer: {max_steps: 6, batch_size: 1592, val_every: 3, ckpt_every: 3, log_every: 1, progress_bar: false,
          accelerator: cpu, deterministic: true}
eval: {val_max_queries: 301}
patience: 0
"""


def live_group_members(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` that have not exited (zombies excluded), from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(d.name))
    return out


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process groups from /proc")
def test_ddp_preempted_twice_resumes_to_the_uninterrupted_ddp_run(tmp_path):
    """SIGTERM to the whole process group at step 3 (a validation step), then SIGUSR1 to the worker rank
    only at step 5 (rank 0 gets no signal and must follow the other rank's decision): each time every
    process exits (rank 0 with 75), ``last.ckpt`` holds both ranks' RNG states, and the final resume
    ends on the uninterrupted DDP run's weights and metrics."""
    cfg = write_cfg(tmp_path, DDP_DROPOUT, "ddp.yaml")
    ddp = ["--devices", "2", "--strategy", "ddp"]
    base = tmp_path / "base"
    res = run_module("kgc.finetune", *ARGS, "--config", str(cfg), "--out", str(base), *ddp, "-q", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "run"
    for i, (fault, args, step, name) in enumerate([
        ("signal:SIGTERM:3:group", [*ARGS, "--config", str(cfg), "--out", str(run), *ddp], 3, "SIGTERM"),
        ("signal:SIGUSR1:5:workers", ["--resume", str(run)], 5, "another rank's signal"),
    ]):
        log = tmp_path / f"p{i}.log"
        e = {**env(), "KGC_REL_FAULT": fault, "KGC_REL_MARKER": str(tmp_path / f"m{i}")}
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, str(DRIVER), "kgc.finetune", *args], cwd=ROOT, stdout=out,
                                    stderr=subprocess.STDOUT, env=e, start_new_session=True)
            try:
                rc = proc.wait(timeout=600)
                deadline = time.time() + 60
                while live_group_members(proc.pid) and time.time() < deadline:
                    time.sleep(0.2)
                assert not live_group_members(proc.pid), "a DDP worker outlived rank 0"
            finally:
                if live_group_members(proc.pid):
                    os.killpg(proc.pid, signal.SIGKILL)
        assert_preempted(run, rc, log, step, name, "kgc.finetune")
        rng = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["callbacks"][RNG_KEY]
        assert rng["world_size"] == 2 and len(rng["ranks"]) == 2
    res = run_module("kgc.finetune", "--resume", str(run), "-q", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert final_metrics(run) == final_metrics(base)
    assert same_weights(run / "checkpoints" / "last.ckpt", base / "checkpoints" / "last.ckpt")
    assert dict(series(read_csv_metrics(run), "val/mrr")) == dict(series(read_csv_metrics(base), "val/mrr"))


# ---------------------------------------------------------------------------------------- bad input
def cli_error(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_resume_of_a_run_folder_of_another_kind_or_format(tmp_path, capsys):
    pt, ft = RunDir(tmp_path / "pt"), RunDir(tmp_path / "ft")
    pt.create({"kind": "pretrain", "dataset": "nations"}, {})
    ft.create({"kind": "finetune", "dataset": "nations"}, {})
    assert json.loads(pt.meta_path.read_text())["format"] == 1
    msg = cli_error(finetune_main, ["--resume", str(pt.path)], capsys)
    assert str(pt.path) in msg and "not a fine-tuning run" in msg and "'pretrain'" in msg
    msg = cli_error(pretrain_main, ["--resume", str(ft.path)], capsys)
    assert str(ft.path) in msg and "not a pretraining run" in msg and "'finetune'" in msg
    for run, main in ((ft, finetune_main), (pt, pretrain_main)):
        meta = json.loads(run.meta_path.read_text())
        meta.update(format=2, kgc_version="9.0.0")
        run.meta_path.write_text(json.dumps(meta))
        msg = cli_error(main, ["--resume", str(run.path)], capsys)
        assert msg == (f"error: {run.meta_path}: run folder format 2 (written by kgc 9.0.0); this kgc "
                       f"{__import__('kgc').__version__} reads format 1: use the kgc version that wrote it")


def test_a_run_json_without_format_reads_as_format_1(tmp_path):
    run = RunDir(tmp_path / "old")
    run.create({"kind": "finetune"}, {})
    meta = json.loads(run.meta_path.read_text())
    del meta["format"]
    run.meta_path.write_text(json.dumps(meta))
    assert run.meta()["kind"] == "finetune"


# ---------------------------------------------------------------------------------------- launchers
def test_srun_ranks_above_zero_wait_for_rank_0s_run_folder(tmp_path, monkeypatch):
    """Under srun every task runs the CLI at once: ranks > 0 use ``$KGC_RUN_DIR`` once rank 0 has written
    it, and resume from its ``last.ckpt`` (rank 0's checkpoint); without ``KGC_RUN_DIR`` they refuse to
    start rather than make a run folder of their own."""
    import threading

    from kgc import KGCError
    from kgc.training import runs

    for k in ("LOCAL_RANK", "NODE_RANK", "RANK", runs.RESUME_ENV):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert runs.child_run_dir() is None and runs.is_launch_rank_zero()
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.delenv(runs.RUN_DIR_ENV, raising=False)
    with pytest.raises(KGCError, match=r"rank 1 of an srun/torchrun launch: export KGC_RUN_DIR"):
        runs.child_run_dir()
    target = RunDir(tmp_path / "run")
    monkeypatch.setenv(runs.RUN_DIR_ENV, str(target.path))

    def rank0():
        time.sleep(0.5)
        target.create({"kind": "finetune"}, {})
        (target.vocab_path).write_text("{}")

    t = threading.Thread(target=rank0)
    t.start()
    assert runs.child_run_dir().path == target.path and target.vocab_path.is_file()
    t.join()
    assert not runs.is_launch_rank_zero()
    assert runs.child_resume_checkpoint() is None  # a fresh start
    (target.checkpoints / "last.ckpt").write_bytes(b"x")
    assert runs.child_resume_checkpoint() == str(target.checkpoints / "last.ckpt")
    monkeypatch.setenv(runs.RESUME_ENV, "")  # Lightning's own workers: what rank 0 passed down wins
    assert runs.child_resume_checkpoint() is None
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # srun --pty: Lightning does not treat it as SLURM
    monkeypatch.delenv(runs.RESUME_ENV)
    assert runs.external_rank() is None and runs.child_run_dir() is None


def test_ranking_leaves_torchs_thread_count_alone(tmp_path):
    """numba's OpenMP layer, started by the first parallel rank count (validation), reset the OpenMP thread
    count torch shares; training after the first validation then ran on other threads than a run resumed
    past it (and LayerNorm's gradients differed in the last bit). Needs a fresh process and >1 core."""
    code = ("import torch; torch.set_num_threads(1)\n"
            "from kgc.evaluation.ranks import filtered_ranks_from_scores\n"
            "s = torch.randn(64, 300)\n"
            "filtered_ranks_from_scores(s, torch.zeros(64, dtype=torch.long), torch.zeros(65, dtype=torch.long), "
            "torch.zeros(0, dtype=torch.long))\n"
            "print(torch.get_num_threads())\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in env().items() if k != "OMP_NUM_THREADS"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "1"
