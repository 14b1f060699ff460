"""``kgc.ablation`` grids on Nations with real tiny runs: pretraining once per arm (amortised), the shared
architecture, resuming cell by cell, the matched-budget split, bad input, and another dataset's checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import yaml

from kgc import KGCError
from kgc.ablation import main as ablation_main, report, run_ablation

from report_helpers import md_tables

PRETRAIN = """signals:
  num_examples: 64
optim:
  warmup_steps: 1
trainer:
  batch_size: 16
  val_every: 1000
  ckpt_every: 2
  log_every: 1
"""
FINETUNE = """model:
  dim: 32
  layers: 1
  heads: 2
  mlp_ratio: 2.0
optim:
  warmup_steps: 1
  horizon: steps             # matched mode must override it (the CPU-budget recipe alone would say time)
trainer:
  batch_size: 64
  val_every: 2
  ckpt_every: 2
  log_every: 1
eval:
  val_max_queries: 100
"""


class Spy:
    """Wraps ``kgc.api.run_pretraining`` / ``run_finetuning`` (what kgc.ablation calls) and records the keywords."""

    def __init__(self, monkeypatch):
        import kgc.api

        self.pretrain: list[dict] = []
        self.finetune: list[dict] = []
        for name, calls in (("run_pretraining", self.pretrain), ("run_finetuning", self.finetune)):
            real = getattr(kgc.api, name)

            def wrapped(*args, _real=real, _calls=calls, **kwargs):
                _calls.append({"args": args, **kwargs})
                return _real(*args, **kwargs)

            monkeypatch.setattr(kgc.api, name, wrapped)


@pytest.fixture(scope="module")
def cfgs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cfg")
    (root / "pt.yaml").write_text(PRETRAIN)
    (root / "ft.yaml").write_text(FINETUNE)
    return str(root / "pt.yaml"), str(root / "ft.yaml")


def _grid_kwargs(cfgs, **kw):
    return {"arms": "none,lcc,all-uncertainty", "seeds": "0,1", "pretrain_steps": 2, "finetune_steps": 3,
            "pretrain_config": cfgs[0], "finetune_config": cfgs[1], "log": lambda m: None, **kw}


@pytest.fixture(scope="module")
def amortised(tmp_path_factory, cfgs):
    """An amortised grid: arms none, lcc, all-uncertainty x seeds 0, 1 (2 pretraining + 6 fine-tuning runs)."""
    runs = tmp_path_factory.mktemp("amortised") / "runs"
    with pytest.MonkeyPatch.context() as mp:
        spy = Spy(mp)
        res = run_ablation("nations", runs_dir=runs, **_grid_kwargs(cfgs))
    return runs, res, spy


def _metrics(cell):
    return json.loads((cell / "metrics.json").read_text())


def test_amortised_pretrains_once_per_arm_not_per_seed(amortised):
    runs, res, spy = amortised
    grid = runs / "ablation-nations-amortised"
    assert res.grid == grid and res.mode == "amortised"
    assert len(spy.pretrain) == 2 and len(spy.finetune) == 6
    assert sorted(c["signals"] for c in spy.pretrain) == ["lcc", "random_walk,shortest_path,khop,ig_path,lcc"]
    assert all(c["seed"] == 0 and c["max_steps"] == 2 for c in spy.pretrain)  # --pretrain-seed 0
    assert res.pretrained == ["pretrain-lcc", "pretrain-all-uncertainty"] and res.reused == []
    assert sorted(p.name for p in grid.glob("pretrain-*")) == ["pretrain-all-uncertainty", "pretrain-lcc"]
    assert res.ran == [f"{a}/seed {s}" for s in (0, 1) for a in ("none", "lcc", "all-uncertainty")]
    for arm in ("lcc", "all-uncertainty"):
        ckpt = str(grid / f"pretrain-{arm}" / "checkpoints" / "last.ckpt")
        for seed in (0, 1):
            cell = grid / f"finetune-{arm}-s{seed}"
            m = _metrics(cell)
            assert m["init_checkpoint"] == ckpt and m["seed"] == seed and m["finetune_steps"] == 3
            assert json.loads((cell / "run.json").read_text())["init"] == ckpt  # the cell records its start
    assert _metrics(grid / "finetune-none-s1")["init_checkpoint"] is None
    samplers = {arm: yaml.safe_load((grid / f"pretrain-{arm}" / "config.yaml").read_text())["signals"]["sampler"]
                for arm in ("lcc", "all-uncertainty")}
    assert samplers == {"lcc": "fixed", "all-uncertainty": "uncertainty"}


def test_pretraining_uses_the_finetuning_architecture(amortised):
    from kgc.config import to_dict
    from kgc.finetune import build_parser, resolve_config
    from kgc.data import load_dataset

    runs, _, _ = amortised
    grid = runs / "ablation-nations-amortised"
    # what `kgc finetune --from-scratch` resolves for the none arm (the project's resolver)
    args = build_parser().parse_args(["--dataset", "nations", "--from-scratch", "--config",
                                      json.loads((grid / "ablation.json").read_text())["settings"]["finetune_config"]])
    expected = to_dict(resolve_config(args, load_dataset("nations")).model)
    assert expected["dim"] == 32 and expected["layers"] == 1  # the fine-tuning config, not configs/pretrain
    for arm in ("lcc", "all-uncertainty"):
        assert yaml.safe_load((grid / f"pretrain-{arm}" / "config.yaml").read_text())["model"] == expected
    for cell in grid.glob("finetune-*"):
        assert _metrics(cell)["config"]["model"] == expected, cell.name


def test_resume_skips_finished_cells(amortised, tmp_path, monkeypatch, cfgs):
    """A killed grid: one fine-tuning cell lost its metrics (killed before evaluation), one pretraining run was
    interrupted and the cell after it never started. The rerun redoes exactly those, nothing else."""
    runs, _, _ = amortised
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy, ignore=shutil.ignore_patterns("report"))
    grid = copy / "ablation-nations-amortised"
    (grid / "finetune-none-s1" / "metrics.json").unlink()
    meta = json.loads((grid / "pretrain-lcc" / "run.json").read_text())
    del meta["wall_time_s"]  # what a killed pretraining run leaves: a last.ckpt, no wall_time_s
    (grid / "pretrain-lcc" / "run.json").write_text(json.dumps(meta))
    shutil.rmtree(grid / "finetune-lcc-s0")
    untouched = grid / "pretrain-all-uncertainty" / "checkpoints" / "last.ckpt"
    stamps = {p: p.stat().st_mtime_ns for p in [untouched, *grid.glob("finetune-*/metrics.json")]}
    spy = Spy(monkeypatch)
    logs: list[str] = []
    res = run_ablation("nations", runs_dir=copy, **_grid_kwargs(cfgs, log=logs.append))
    assert res.ran == ["lcc/seed 0", "none/seed 1"]
    assert sorted(res.skipped) == ["all-uncertainty/seed 0", "all-uncertainty/seed 1", "lcc/seed 1", "none/seed 0"]
    assert [c.get("resume") for c in spy.pretrain] == [grid / "pretrain-lcc"] and res.pretrained == ["pretrain-lcc"]
    assert [str(c.get("resume")) if c.get("resume") else c["out"].name for c in spy.finetune] == [
        "finetune-lcc-s0", str(grid / "finetune-none-s1")]
    assert any("continuing pretraining run" in m for m in logs)
    assert any("continuing fine-tuning run" in m for m in logs)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert "wall_time_s" in json.loads((grid / "pretrain-lcc" / "run.json").read_text())
    # a second rerun has nothing left to do
    again = run_ablation("nations", runs_dir=copy, **_grid_kwargs(cfgs))
    assert again.ran == [] and len(again.skipped) == 6 and again.pretrained == []
    # finished cells the manifest does not list (copied in, or a manifest of an older version) are
    # skipped and registered, so the report still reads them
    manifest = json.loads((grid / "ablation.json").read_text())
    lost = {k: manifest["cells"].pop(k) for k in ("finetune-none-s0", "finetune-lcc-s1")}
    (grid / "ablation.json").write_text(json.dumps(manifest))
    assert run_ablation("nations", runs_dir=copy, **_grid_kwargs(cfgs)).ran == []
    assert {k: json.loads((grid / "ablation.json").read_text())["cells"][k] for k in lost} == lost
    # another budget in the same grid is refused: its cells would not be comparable
    with pytest.raises(KGCError, match="other settings .*budget"):
        run_ablation("nations", runs_dir=copy, **_grid_kwargs(cfgs, finetune_steps=4))


HOLDER = """
import sys, time
from pathlib import Path
from kgc.ablation import grid_lock
with grid_lock(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_grid_in_use_is_refused_and_a_killed_holder_does_not_block(amortised, tmp_path, cfgs):
    """Two ``kgc ablation`` processes on one grid would both run its first missing cell: the second is
    refused at once, naming the holder's pid, and touches nothing. The lock dies with its process (SIGKILL
    included), so the grid then runs."""
    runs, _, _ = amortised
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy, ignore=shutil.ignore_patterns("report"))
    grid = copy / "ablation-nations-amortised"
    (grid / "finetune-none-s1" / "metrics.json").unlink()  # a missing cell: what both processes would run
    manifest = (grid / "ablation.json").read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(grid)], cwd=tmp_path, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(KGCError, match=rf"being run by another kgc ablation process \(pid {holder.pid},"):
            run_ablation("nations", runs_dir=copy, **_grid_kwargs(cfgs))
        assert (grid / "ablation.json").read_bytes() == manifest
        assert not (grid / "finetune-none-s1" / "metrics.json").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    res = run_ablation("nations", runs_dir=copy, **_grid_kwargs(cfgs))
    assert res.ran == ["none/seed 1"] and (grid / "finetune-none-s1" / "metrics.json").is_file()


def test_pretrain_only_makes_the_checkpoints_the_grid_then_reuses(tmp_path, monkeypatch, cfgs):
    """``--pretrain-only`` runs the pretrained arms' pretraining and nothing else (no cell, no report); the
    grid run after it fine-tunes from those checkpoints without pretraining again."""
    runs = tmp_path / "runs"
    kw = _grid_kwargs(cfgs, arms="none,lcc", seeds="0")
    spy = Spy(monkeypatch)
    assert ablation_main(["--dataset", "nations", "--runs", str(runs), "--arms", "none,lcc", "--seeds", "0",
                          "--pretrain-steps", "2", "--finetune-steps", "3", "--pretrain-config", cfgs[0],
                          "--finetune-config", cfgs[1], "--pretrain-only"]) == 0
    grid = runs / "ablation-nations-amortised"
    assert len(spy.pretrain) == 1 and spy.finetune == []
    assert sorted(p.name for p in grid.iterdir()) == [".lock", "ablation.json", "pretrain-lcc"]
    ckpt = (grid / "pretrain-lcc" / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    res = run_ablation("nations", runs_dir=runs, **kw)
    assert res.reused == ["pretrain-lcc"] and res.pretrained == [] and len(spy.pretrain) == 1
    assert res.ran == ["none/seed 0", "lcc/seed 0"]
    assert (grid / "pretrain-lcc" / "checkpoints" / "last.ckpt").stat().st_mtime_ns == ckpt
    assert _metrics(grid / "finetune-lcc-s0")["init_checkpoint"] == str(grid / "pretrain-lcc" / "checkpoints"
                                                                        / "last.ckpt")


def test_report_table_matches_the_cells(amortised, tmp_path):
    runs, _, _ = amortised
    grid = runs / "ablation-nations-amortised"
    lines: list[str] = []
    paths = report(grid, tmp_path / "rep", log=lines.append)
    (rows,) = [r for h, r in md_tables(paths["ablation_md"].read_text()) if h[0] == "arm"]
    assert [r[0] for r in rows] == ["none", "lcc", "all-uncertainty"] and all(r[1] == "2" for r in rows)
    import statistics

    for row in rows:
        mrr = [_metrics(grid / f"finetune-{row[0]}-s{s}")["metrics"]["mrr"] for s in (0, 1)]
        assert row[5] == f"{statistics.fmean(mrr):.4f} ± {statistics.stdev(mrr):.4f}"
    assert paths["ablation_png"].read_bytes()[:4] == b"\x89PNG"
    leaderboard = [r for h, r in md_tables(paths["md"].read_text()) if h[0] == "arm"]
    assert leaderboard == [rows]  # the leaderboard carries the same table
    assert lines and lines[0].startswith("pretraining ablation: nations, amortised")


def test_matched_mode_splits_the_budget(tmp_path, monkeypatch, cfgs):
    spy = Spy(monkeypatch)
    res = run_ablation("nations", mode="matched", budget="20s", pretrain_fraction=0.3, runs_dir=tmp_path,
                       **_grid_kwargs(cfgs, arms="none,lcc", seeds="0"))
    grid = tmp_path / "ablation-nations-matched"
    assert res.grid == grid and res.pretrained == ["pretrain-lcc-s0"]  # per seed in matched mode
    (pt,) = spy.pretrain
    assert pt["max_time"] == "6s" and pt["seed"] == 0
    assert {c["out"].name: c["max_time"] for c in spy.finetune} == {"finetune-none-s0": "20s", "finetune-lcc-s0": "14s"}
    assert yaml.safe_load((grid / "pretrain-lcc-s0" / "config.yaml").read_text())["trainer"]["max_time"] == "6s"
    assert _metrics(grid / "finetune-none-s0")["config"]["trainer"]["max_time"] == "20s"
    assert _metrics(grid / "finetune-lcc-s0")["config"]["trainer"]["max_time"] == "14s"
    # every run's decay ends at its time share, the pretraining config's "steps" horizon notwithstanding
    assert yaml.safe_load((grid / "pretrain-lcc-s0" / "config.yaml").read_text())["optim"]["horizon"] == "time"
    assert {_metrics(grid / f"finetune-{a}-s0")["config"]["optim"]["horizon"] for a in ("none", "lcc")} == {"time"}
    # the same architecture here too (a time budget on a CPU picks the CPU-budget recipe: both sides see it)
    assert (yaml.safe_load((grid / "pretrain-lcc-s0" / "config.yaml").read_text())["model"]
            == _metrics(grid / "finetune-none-s0")["config"]["model"])


@pytest.mark.parametrize("extra, match", [
    (["--arms", "none,walks"], "unknown arm 'walks'; valid arms: none, random_walk, shortest_path, khop, ig_path, "
                               "lcc, all, all-uncertainty"),
    (["--seeds", "0,x"], "--seeds '0,x': expected a comma list of integers"),
    (["--finetune-config", "nope.yaml"], "--finetune-config nope.yaml: config file not found"),
    (["--pretrain-config", "nope.yaml"], "--pretrain-config nope.yaml: config file not found"),
    (["--mode", "matched"], "--mode matched needs --budget"),
    (["--budget", "5m"], "--budget is for --mode matched"),
    (["--mode", "matched", "--budget", "5m", "--finetune-time", "1m"], "--finetune-time is for --mode amortised"),
    (["--mode", "matched", "--budget", "5m", "--pretrain-fraction", "1.5"], "--pretrain-fraction must be in"),
    (["--mode", "matched", "--budget", "five"], "--budget 'five'"),
    (["--finetune-steps", "0"], "--finetune-steps must be >= 1"),
    (["--pretrain-set", "model.dim=64"], "change it with --finetune-set model.dim=64"),
    (["--pretrain-only", "--arms", "none"], "--pretrain-only: no pretrained arm in --arms none"),
    (["--mode", "matched", "--budget", "5m", "--pretrain-only"], "--pretrain-only is for --mode amortised"),
])
def test_bad_input_is_a_named_error_before_anything_runs(tmp_path, extra, match):
    with pytest.raises(KGCError, match=match.replace("(", r"\(").replace(")", r"\)")):
        ablation_main(["--dataset", "nations", "--runs", str(tmp_path / "runs"), *extra])
    assert not (tmp_path / "runs").exists()


def test_a_checkpoint_of_another_dataset_is_refused_by_name(amortised, tmp_path):
    """``kgc finetune --init`` with a (2-step) Nations pretraining checkpoint on UMLS: VocabularyMismatch naming
    the dataset, never a tensor shape error, and no run folder."""
    from kgc.finetune import main as finetune_main
    from kgc.vocab import VocabularyMismatch

    runs, _, _ = amortised
    ckpt = runs / "ablation-nations-amortised" / "pretrain-lcc" / "checkpoints" / "last.ckpt"
    with pytest.raises(VocabularyMismatch, match="was built for dataset 'nations'.* not 'umls'"):
        finetune_main(["--dataset", "umls", "--init", str(ckpt), "--out", str(tmp_path / "bad"), "--max-steps", "1"])
    assert not (tmp_path / "bad").exists()
