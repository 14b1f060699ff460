"""Smoke runs of the issue-9 benchmark scripts (the full-budget runs are not in CI)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"


def _common():
    spec = importlib.util.spec_from_file_location("kgc_bench_common_smoke", BENCH / "_common.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_parse_duration_and_table():
    C = _common()
    assert C.parse_duration("15m") == 900
    assert C.parse_duration("1h30m") == 5400
    assert C.parse_duration("90s") == C.parse_duration("90") == 90
    with pytest.raises(ValueError):
        C.parse_duration("15 minutes")
    t = C.format_table(["a", "b"], [["x", 0.5], ["y", None]])
    assert t.splitlines()[2] == "| x | 0.5000 |" and t.splitlines()[3] == "| y | - |"
    assert C.ratio(3.0, 2.0) == "1.50x" and C.ratio(1.0, 0) == "-"


@pytest.mark.slow
def test_quality_budget_kgc_smoke_on_umls(tmp_path):
    """kgc-only smoke of quality_budget: fine-tunes a few steps on UMLS and prints the quality table last."""
    import json

    out = tmp_path / "res.json"
    # PyKEEN rows of an earlier '--systems pykeen --json' run are reused (a stand-in result file here)
    pk_row = {"system": "PyKEEN 1.11.1", "model": "ComplEx d=200", "budget_s": 4.0, "train_s": 4.0, "epochs": 1.0,
              "metrics": {"mrr": 0.5, "hits@1": 0.4, "hits@3": 0.5, "hits@10": 0.6}}
    earlier = tmp_path / "pykeen.json"
    earlier.write_text(json.dumps({"machine": {"threads": 2, "date": "then", "commit": "abc"}, "dataset": "umls",
                                   "budget_s": 4.0, "test_set": "full", "rows": [pk_row], "crosscheck": []}))
    cmd = [sys.executable, str(BENCH / "quality_budget.py"), "--dataset", "umls", "--smoke",
           "--runs-root", str(tmp_path / "runs"), "--json", str(out), "--pykeen-results", str(earlier)]
    # a result file that measured something else is refused before anything trains
    bad = subprocess.run(cmd + ["--threads", "1"], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ))
    assert bad.returncode != 0 and "--pykeen-results" in bad.stderr and "threads" in bad.stderr
    assert not (tmp_path / "runs").exists()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines[-3].startswith("| kgc | transformer (scratch) |")
    assert lines[-2].startswith("| PyKEEN 1.11.1 | ComplEx d=200 |") and lines[-2].endswith("| 1.000x |")
    # the relation-frequency prior is the last row, the floor of the "above prior" column
    assert lines[-1].startswith("| prior | relation-frequency prior") and "| +0.0000 |" in lines[-1]
    assert "| above prior |" in lines[-5] and lines[-5].startswith("| system | model | budget |")
    assert "relation-frequency prior: test MRR 0.6612" in proc.stdout
    assert "kgc fine-tuning config: " in proc.stdout and "cpu-budget/umls.yaml" in proc.stdout

    res = json.loads(out.read_text())
    row = res["rows"][0]
    assert row["system"] == "kgc" and 0 < row["metrics"]["mrr"] <= 1
    assert row["metrics"]["count"] == 2 * 661  # the full UMLS test set, both directions
    assert res["rows"][1]["model"] == "ComplEx d=200"


@pytest.mark.slow
def test_step_cost_smoke_on_umls(tmp_path):
    """step_cost runs its three rows in subprocesses and reports them in order with ratios to the first."""
    import json

    out = tmp_path / "steps.json"
    res = subprocess.run([sys.executable, str(BENCH / "step_cost.py"), "--dataset", "umls", "--smoke",
                          "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ))
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["step"] for r in rows] == ["reference encoder", "single-row last block", "+ allocator tuning"]
    assert all(r["median_s"] > 0 and r["parameters"] == rows[0]["parameters"] for r in rows)
    assert res.stdout.strip().splitlines()[-3].startswith("| reference encoder |")



@pytest.mark.slow
def test_pretrain_throughput_smoke_on_nations(tmp_path):
    """pretrain_throughput measures its five rows on the same sequences (equal target-token counts),
    with packing lowering the padding, and reports ratios to the full-vocabulary padded row."""
    import json

    out = tmp_path / "tp.json"
    res = subprocess.run([sys.executable, str(BENCH / "pretrain_throughput.py"), "--datasets", "nations",
                          "--steps", "2", "--warmup", "1", "--threads", "1", "--json", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads(out.read_text())["results"]
    assert [r["row"] for r in rows] == ["full, padded", "full, packed", "typed, packed", "sampled, padded",
                                        "sampled, packed"]
    assert len({r["target_tokens"] for r in rows}) == 1 and rows[0]["target_tokens"] > 0
    by = {r["row"]: r for r in rows}
    assert by["full, packed"]["padding"] <= by["full, padded"]["padding"]
    assert res.stdout.strip().splitlines()[-5].startswith("| nations | full, padded |")

def test_log_lines_reports_longest_line_carriage_returns_and_gaps(tmp_path):
    import json

    code = "import time,sys; print('a'); sys.stdout.write('x' * 50 + '\\r' + 'y\\n'); sys.stdout.flush(); time.sleep(0.6); print('b')"
    out = subprocess.run([sys.executable, str(BENCH / "log_lines.py"), "--log", str(tmp_path / "log.txt"), "--",
                          sys.executable, "-c", code], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert report["rc"] == 0 and report["lines"] == 3 and report["carriage_returns"] == 1
    assert report["longest_line"] == 52 and report["bytes"] == len((tmp_path / "log.txt").read_bytes())
    assert 0.5 <= report["longest_gap_s"] < 5
