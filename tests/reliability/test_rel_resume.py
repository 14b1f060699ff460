"""No lost work: SIGKILL during training, during a checkpoint write and during the final evaluation;
``--resume`` continues from the last complete checkpoint and, in deterministic mode, ends exactly where an
uninterrupted run ends (same weights, same final metrics)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from kgc.finetune import main as finetune_main
from kgc.training.checkpoint import load_checkpoint_file
from kgc.training.lp_data import ResumableShuffleSampler

from training_helpers import TINY_MODEL

from rel_helpers import ckpt_step, final_metrics, read_csv_metrics, series, sigkill, start_driver, wait_for, write_cfg

pytestmark = pytest.mark.slow

ARGS = ["--dataset", "nations", "--from-scratch"]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """One uninterrupted deterministic run (in-process)."""
    root = tmp_path_factory.mktemp("rel_base")
    cfg = write_cfg(root)
    out = root / "run"
    assert finetune_main([*ARGS, "--config", str(cfg), "--out", str(out)]) == 0
    return cfg, out


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_file(ckpt)["state_dict"]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    diff = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not diff, f"weights differ after resume: {diff[:5]}"


def _every_ckpt_loads(run: Path) -> None:
    for f in (run / "checkpoints").glob("*.ckpt"):
        load_checkpoint_file(f)  # a complete kgc checkpoint, never a half-written one


def test_sampler_order_is_a_function_of_seed_epoch_and_step():
    steps = {"g": 0}
    s = ResumableShuffleSampler(10, 3, seed=5, step_fn=lambda: steps["g"])
    assert s.steps_per_epoch == 4 and len(s) == 10
    full0 = list(s)
    assert sorted(full0) == list(range(10))
    steps["g"] = 4  # start of epoch 1: a different permutation, reproducible
    full1 = list(s)
    assert sorted(full1) == list(range(10)) and full1 != full0 and full1 == s.order(1).tolist()
    steps["g"] = 6  # resumed after 2 batches of epoch 1: exactly the remaining items
    assert list(s) == full1[6:]
    assert ResumableShuffleSampler(10, 3, seed=6, step_fn=lambda: 0).order(0).tolist() != full0


def test_kill_mid_checkpoint_write_and_mid_final_eval_then_resume_matches(baseline, tmp_path):
    cfg, base = baseline
    run = tmp_path / "run"
    # 1. SIGKILL while the step-15 checkpoint is half written (the write hangs after half its bytes)
    marker = tmp_path / "m1"
    proc = start_driver("kgc.finetune", *ARGS, "--config", str(cfg), "--out", str(run), fault="ckpt_write:15",
                        marker=marker, log=tmp_path / "kill1.log")
    wait_for(marker.exists, proc, what="checkpoint write at step 15")
    sigkill(proc)
    ck = run / "checkpoints"
    partial = list(ck.glob(".*.tmp"))
    assert partial, "the half-written checkpoint should be a temp file"
    assert not (ck / "step-15.ckpt").exists()
    assert ckpt_step(ck / "last.ckpt") == 10  # the last complete checkpoint
    _every_ckpt_loads(run)
    # 2. resume; SIGKILL during the final test evaluation (training finished, metrics not yet written)
    marker2 = tmp_path / "m2"
    proc = start_driver("kgc.finetune", "--resume", str(run), fault="final_eval", marker=marker2,
                        log=tmp_path / "kill2.log")
    wait_for(marker2.exists, proc, what="final evaluation")
    sigkill(proc)
    assert not (run / "metrics.json").exists()
    assert ckpt_step(ck / "last.ckpt") == 30
    _every_ckpt_loads(run)
    # 3. resume again: only the evaluation is left; the result equals the uninterrupted run's
    assert finetune_main(["--resume", str(run)]) == 0
    assert final_metrics(run) == final_metrics(base)
    _assert_same_weights(ck / "last.ckpt", base / "checkpoints" / "last.ckpt")
    _assert_same_weights(ck / "best.ckpt", base / "checkpoints" / "best.ckpt")
    # the validation history survives both resumes (the CSV log is appended to, not replaced)
    base_val = dict(series(read_csv_metrics(base), "val/mrr"))
    run_val = dict(series(read_csv_metrics(run), "val/mrr"))
    assert run_val == base_val


def test_kill_at_random_point_resumes_from_last_complete_checkpoint(baseline, tmp_path):
    cfg, base = baseline
    run = tmp_path / "run"
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    kill_after, extra = rng.randrange(5, 30, 5), rng.uniform(0.0, 1.5)
    proc = start_driver("kgc.finetune", *ARGS, "--config", str(cfg), "--out", str(run), log=tmp_path / "kill.log")
    last = run / "checkpoints" / "last.ckpt"

    def reached() -> bool:
        try:
            return last.is_file() and ckpt_step(last) >= kill_after
        except Exception:  # being replaced right now: try again
            return False

    try:
        wait_for(reached, proc, what=f"checkpoint at step {kill_after} (random seed {seed})")
    except AssertionError:
        if proc.poll() != 0:
            raise
    import time

    time.sleep(extra)
    if proc.poll() is None:
        sigkill(proc)
    _every_ckpt_loads(run)
    assert finetune_main(["--resume", str(run)]) == 0, f"random seed {seed}"
    m = final_metrics(run)
    assert m["steps"] == 30
    # training itself is exactly reproducible whatever the kill point (a kill during a validation
    # skips that validation on resume, so best.ckpt may differ: see docs/reliability.md)
    _assert_same_weights(run / "checkpoints" / "last.ckpt", base / "checkpoints" / "last.ckpt")


# tiny deterministic pretraining on the synthetic KG: ~540 training sequences -> 17 steps/epoch at batch 32,
# so 24 steps cross an epoch boundary; checkpoints every 4 steps, validation every 10
TINY_PT = TINY_MODEL + """signals:
  num_examples: 300
optim:
  lr: 3.0e-3
  warmup_steps: 5
trainer:
  max_steps: 24
  batch_size: 32
  val_every: 10
  ckpt_every: 4
  log_every: 1
  progress_bar: false
  deterministic: true
"""


def test_pretraining_killed_after_a_checkpoint_resumes_to_the_uninterrupted_run(tmp_path):
    """SIGKILL at the step-10 validation, two steps after the step-8 checkpoint: ``--resume`` ends with
    the uninterrupted run's weights and the same logged losses, and no step is logged twice (the rows the
    killed run wrote after its checkpoint are replaced, not duplicated)."""
    from kgc.pretrain import main as pretrain_main

    args = ["--signals", "lcc,random_walk", "--config", str(write_cfg(tmp_path, TINY_PT, "pt.yaml"))]
    base = tmp_path / "base"
    assert pretrain_main([*args, "--out", str(base)]) == 0
    run, marker = tmp_path / "run", tmp_path / "m"
    proc = start_driver("kgc.pretrain", *args, "--out", str(run), fault="validation:10", marker=marker,
                        log=tmp_path / "kill.log")
    try:
        wait_for(marker.exists, proc, what="the validation at step 10")
    finally:
        sigkill(proc)
    ck = run / "checkpoints"
    assert ckpt_step(ck / "last.ckpt") == 8
    killed = [s for s, _ in series(read_csv_metrics(run), "train/loss")]
    assert max(killed) >= 9  # rows past the checkpoint: a resume must not log them again
    assert pretrain_main(["--resume", str(run)]) == 0
    assert ckpt_step(ck / "last.ckpt") == 24
    _assert_same_weights(ck / "last.ckpt", base / "checkpoints" / "last.ckpt")
    got, want = series(read_csv_metrics(run), "train/loss"), series(read_csv_metrics(base), "train/loss")
    steps = [s for s, _ in got]
    assert len(steps) == len(set(steps)), "a step was logged twice"
    assert got == want
