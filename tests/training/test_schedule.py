"""The learning-rate schedule: warm-up, decay over steps, and the ``time`` horizon for budgeted runs."""

from __future__ import annotations

import math

import pytest
import torch

from kgc.finetune import main as finetune_main
from kgc.training.config import OptimConfig
from kgc.training.module import _Schedule


def _cos(floor: float, frac: float) -> float:
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))


def test_step_schedule_warmup_and_cosine():
    cfg = OptimConfig(warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    s = _Schedule(cfg, max_steps=110)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(_cos(0.1, 0.5))
    assert s(110) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)


def test_time_horizon_takes_the_larger_progress():
    cfg = OptimConfig(warmup_steps=0, schedule="cosine", min_lr_ratio=0.05, horizon="time")
    s = _Schedule(cfg, max_steps=1000, horizon_s=100.0)
    s.elapsed_s = 50.0
    assert s(10) == pytest.approx(_cos(0.05, 0.5))       # time ahead of steps: time wins
    assert s(900) == pytest.approx(_cos(0.05, 0.9))      # steps ahead of time: steps win
    s.elapsed_s = 250.0
    assert s(10) == pytest.approx(0.05)                  # past the horizon: the floor
    lin = _Schedule(OptimConfig(warmup_steps=0, schedule="linear", min_lr_ratio=0.0), 1000, horizon_s=10.0)
    lin.elapsed_s = 2.5
    assert lin(0) == pytest.approx(0.75)


def test_horizon_must_be_known():
    with pytest.raises(ValueError, match="horizon"):
        OptimConfig(horizon="epochs").validate()


def test_time_horizon_decays_within_a_budgeted_finetune(tmp_path, tiny_finetune_cfg):
    """A fine-tune capped by max_time with horizon=time ends with the lr the schedule gives for the elapsed
    training time that Lightning's Timer reported (saved in the scheduler state), far below the peak, while
    the step horizon (10^6 steps) alone would have kept it at the peak."""
    out = tmp_path / "run"
    rc = finetune_main(["--dataset", "umls", "--from-scratch", "--config", str(tiny_finetune_cfg), "--out", str(out),
                        "--runs-root", str(tmp_path), "--max-time", "3s",
                        "--set", "trainer.max_steps=1000000", "--set", "optim.horizon=time",
                        "--set", "optim.warmup_steps=0", "--set", "trainer.val_every=0",
                        "--set", "trainer.ckpt_every=1000000"])
    assert rc == 0
    ck = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    lam = ck["lr_schedulers"][0]["lr_lambdas"][0]
    assert lam["horizon_s"] == pytest.approx(3.0)
    assert 0 < lam["elapsed_s"] < 3.0 + 1.0
    steps = ck["global_step"]
    peak = 3.0e-3  # TINY_FINETUNE's optim.lr
    assert "lr: 3.0e-3" in tiny_finetune_cfg.read_text()
    expected = peak * _cos(0.05, max(steps / 1_000_000, min(1.0, lam["elapsed_s"] / 3.0)))
    lr = ck["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(expected, rel=1e-6)
    assert lr < 0.999 * peak
