"""Shared helpers of the reliability tests (tiny configs, subprocess runs, fault driver)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from training_helpers import TINY_MODEL  # tests/training_helpers.py

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().parent / "rel_driver.py"

# tiny, dropout-free, deterministic fine-tuning on nations (3,184 train queries -> 25 steps/epoch at batch 128,
# so 30 steps cross an epoch boundary); checkpoints every 5 steps, validation every 10
TINY_FT = TINY_MODEL + """optim:
  lr: 3.0e-3
  warmup_steps: 5
trainer:
  max_steps: 30
  batch_size: 128
  val_every: 10
  ckpt_every: 5
  log_every: 5
  progress_bar: false
  deterministic: true
patience: 0
eval:
  val_max_queries: 301
"""


def write_cfg(folder: Path, text: str = TINY_FT, name: str = "tiny.yaml") -> Path:
    p = Path(folder) / name
    p.write_text(text)
    return p


def env() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_module(module: str, *args: str, timeout: float = 300, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**env(), **(extra_env or {})})


def start_driver(module: str, *args: str, fault: str = "", marker: Path | None = None, log: Path | None = None):
    e = {**env(), "KGC_REL_FAULT": fault, "KGC_REL_MARKER": str(marker or "")}
    out = open(log, "w") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, str(DRIVER), module, *args], cwd=ROOT, stdout=out,
                            stderr=subprocess.STDOUT, env=e)


def wait_for(pred, proc, timeout: float = 240, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        if proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) before {what}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def sigkill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def ckpt_step(path: Path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def read_csv_metrics(run: Path) -> list[dict[str, str]]:
    with open(Path(run) / "logs" / "csv" / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def series(rows, key):
    return [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]


def final_metrics(run: Path) -> dict:
    m = json.loads((Path(run) / "metrics.json").read_text())
    return {"test": m["metrics"], "test_pessimistic": m["pessimistic"], "valid": m["valid"],
            "steps": m["finetune_steps"], "checkpoint": Path(m["checkpoint"]).name}
