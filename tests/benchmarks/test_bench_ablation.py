"""Smoke run of benchmarks/ablation_budget.py (the thin wrapper over kgc.ablation): matched budget, JSON out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ablation_budget_smoke_matched(tmp_path):
    pt, ft = tmp_path / "pt.yaml", tmp_path / "ft.yaml"
    pt.write_text("signals:\n  num_examples: 64\ntrainer:\n  batch_size: 16\n")
    ft.write_text("model:\n  dim: 32\n  layers: 1\n  heads: 2\ntrainer:\n  batch_size: 64\neval:\n  val_max_queries: 100\n")
    out = tmp_path / "res.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "ablation_budget.py"), "--dataset", "nations", "--smoke",
           "--arms", "none,lcc", "--threads", "1", "--runs-root", str(tmp_path / "runs"), "--json", str(out),
           "--pretrain-config", str(pt), "--finetune-config", str(ft)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines[0] == "# pretraining ablation (matched): nations" and lines[2].startswith("machine: ")
    assert lines[-2].startswith("| none | 1 | 0 | - | 2 |") and lines[-1].startswith("| lcc | 1 |")
    res = json.loads(out.read_text())
    grid = tmp_path / "runs" / "ablation-budget-8s-f0.3" / "ablation-nations-matched"
    assert res["grid"] == str(grid) and res["mode"] == "matched" and res["budget_s"] == 8.0
    assert set(res["results"]) == {"none", "lcc"} and res["cells_run"] == ["none/seed 0", "lcc/seed 0"]
    m = json.loads((grid / "finetune-lcc-s0" / "metrics.json").read_text())
    assert res["results"]["lcc"]["runs"][0]["mrr"] == m["metrics"]["mrr"]
    assert m["config"]["trainer"]["max_time"] == "5.6s"  # (1 - 0.3) x 8 s
    assert (grid / "report" / "ablation.md").is_file()
