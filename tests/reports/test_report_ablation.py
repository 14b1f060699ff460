"""Ablation tables (means over seeds, deltas to no pretraining; the per-signal table with its significance
column) and the resumable grid runner (real tiny runs on UMLS; more grid tests in test_ablation_grid.py)."""

from __future__ import annotations

import json

import pytest

from kgc import KGCError
from kgc.ablation import ARMS, main as ablation_main, parse_arms, parse_seeds, parse_signal_set, run_grid
from kgc.reports.ablation import ablation_tables, compare, pooled_std, signal_tables
from kgc.reports.collect import RunRecord, signals_label
from kgc.reports.render import ablation_header_rows, signal_header_rows

from report_helpers import md_tables


def _rec(tmp_path, ds, sig, seed, mrr, h1=0.1, mtime=0.0, model="transformer", grid=None, arm=None, mode=None,
         valid=None, steps=(0, 10)):
    return RunRecord(path=tmp_path / f"{ds}-{arm or sig}-{seed}-{mtime}", dataset=ds, model=model, signals=sig,
                     tie_policy="realistic", seed=seed, mtime=mtime,
                     metrics={"mrr": mrr, "mr": 10.0, "hits@1": h1, "hits@3": 0.5, "hits@10": 0.9},
                     grid=grid, arm=arm, mode=mode, valid_mrr=valid, pretrain_steps=steps[0], finetune_steps=steps[1])


def test_table_means_over_seeds_and_deltas(tmp_path):
    recs = [_rec(tmp_path, "umls", "none", 0, 0.20), _rec(tmp_path, "umls", "none", 1, 0.30),
            _rec(tmp_path, "umls", "lcc", 0, 0.40), _rec(tmp_path, "umls", "lcc", 1, 0.50),
            _rec(tmp_path, "umls", "lcc", 1, 0.10, mtime=-1.0),  # an older run of seed 1: ignored
            _rec(tmp_path, "umls", "all", 0, 0.45), _rec(tmp_path, "umls", "random_walk", 0, 0.33),
            _rec(tmp_path, "umls", "random_walk+lcc", 0, 0.35), _rec(tmp_path, "wn18rr", "lcc", 0, 0.05)]
    (t,) = ablation_tables(recs)
    assert t.rows == ["none", "random_walk", "lcc", "random_walk+lcc", "all"]
    assert t.datasets == ["umls", "wn18rr"]
    none, lcc = t.cells[("none", "umls")], t.cells[("lcc", "umls")]
    assert none["n"] == 2 and none["mean"]["mrr"] == pytest.approx(0.25)
    assert lcc["n"] == 2 and lcc["seeds"] == [0, 1] and lcc["mean"]["mrr"] == pytest.approx(0.45)
    assert lcc["delta"]["mrr"] == pytest.approx(0.20) and lcc["delta"]["hits@1"] == pytest.approx(0.0)
    assert t.cells[("lcc", "wn18rr")]["delta"] == {}  # no "no pretraining" cell on wn18rr
    header, rows = ablation_header_rows(t)
    assert header[:6] == ["signals", "umls MRR", "umls H@1", "umls H@3", "umls H@10", "umls n"]
    assert rows[0][0] == "no pretraining" and rows[-1][0] == "all signals"
    assert rows[2][1] == "0.4500 (+0.2000)" and rows[0][1] == "0.2500" and rows[2][5] == "2"
    assert rows[0][6] == "-"  # no "none" run on wn18rr


def test_one_table_per_model(tmp_path):
    recs = [_rec(tmp_path, "umls", "none", 0, 0.2, model="hybrid"), _rec(tmp_path, "umls", "none", 0, 0.3)]
    assert [t.model for t in ablation_tables(recs)] == ["hybrid", "transformer"]


def test_signal_set_and_seed_parsing():
    assert parse_signal_set("all") == ["random_walk", "shortest_path", "khop", "ig_path", "lcc"]
    assert parse_signal_set("lcc, random_walk") == ["random_walk", "lcc"]
    assert signals_label(["lcc", "random_walk"]) == "random_walk+lcc" and signals_label([]) == "none"
    with pytest.raises(KGCError, match="unknown signal 'walks'"):
        parse_signal_set("walks")
    assert parse_seeds("0,1,1,2") == [0, 1, 2]
    with pytest.raises(KGCError, match="--seeds"):
        parse_seeds("a,b")
    for bad in ("", "0,-1"):
        with pytest.raises(KGCError, match="--seeds"):
            parse_seeds(bad)
    # arms: none first and always there, duplicates dropped, combinations in registry order
    assert [a.name for a in parse_arms("lcc,all-uncertainty,lcc")] == ["none", "lcc", "all-uncertainty"]
    unc = parse_arms("all-uncertainty")[1]
    assert unc.signals == tuple(parse_signal_set("all")) and unc.sets == ("signals.sampler=uncertainty",)
    assert parse_arms("lcc+random_walk")[1].name == "random_walk+lcc"
    with pytest.raises(KGCError, match="unknown arm 'walks'; valid arms: " + ", ".join(ARMS)):
        parse_arms("none,walks")


def test_significance_column_on_a_hand_made_table(tmp_path):
    """none 0.50 ± 0.01 vs all 0.53 ± 0.01: Δ 0.03 = 3 pooled std -> yes; smaller gaps -> no; worse -> no (worse)."""
    assert pooled_std(0.01, 0.01) == pytest.approx(0.01) and pooled_std(0.03, 0.01) == pytest.approx(0.05 ** 0.5 / 10)
    c = compare([0.52, 0.53, 0.54], [0.49, 0.50, 0.51])
    assert c["delta"] == pytest.approx(0.03) and c["pooled_std"] == pytest.approx(0.01) and c["z"] == pytest.approx(3.0)
    assert c["significant"] == "yes"
    assert compare([0.50, 0.51, 0.52], [0.49, 0.50, 0.51])["significant"] == "no"  # Δ = 0.01 = 1 pooled std
    assert compare([0.46, 0.47, 0.48], [0.49, 0.50, 0.51])["significant"] == "no (worse)"
    assert compare([0.60], [0.49, 0.50, 0.51]) == {"delta": pytest.approx(0.10), "pooled_std": None, "z": None,
                                                   "significant": "n/a"}
    g = str(tmp_path / "ablation-umls-amortised")
    recs = [_rec(tmp_path, "umls", sig, seed, mrr, grid=g, arm=arm, mode="amortised", valid=mrr - 0.1,
                 steps=(0 if arm == "none" else 100, 50))
            for arm, sig, vals in (("none", "none", (0.49, 0.50, 0.51)), ("all", "all", (0.52, 0.53, 0.54)),
                                   ("all-uncertainty", "all", (0.46, 0.47, 0.48)), ("lcc", "lcc", (0.50, 0.505, 0.51)))
            for seed, mrr in enumerate(vals)]
    recs.append(_rec(tmp_path, "umls", "none", 0, 0.99))  # not a grid cell: not in the per-signal table
    (t,) = signal_tables(recs)
    assert (t.dataset, t.mode, t.grid, t.name) == ("umls", "amortised", g, "ablation-umls-amortised")
    assert [r.arm for r in t.rows] == ["none", "lcc", "all", "all-uncertainty"]
    header, rows = signal_header_rows(t)
    col = {h: i for i, h in enumerate(header)}
    by_arm = {row[0]: row for row in rows}
    assert by_arm["all"][col["test MRR"]] == "0.5300 ± 0.0100" and by_arm["all"][col["n"]] == "3"
    assert by_arm["all"][col["Δ MRR vs none"]] == "+0.0300" and by_arm["all"][col["pooled std"]] == "0.0100"
    assert by_arm["all"][col["z"]] == "+3.00" and by_arm["all"][col["Δ > 2 pooled std"]] == "yes"
    assert by_arm["all"][col["valid MRR"]] == "0.4300" and by_arm["all"][col["pretrain steps"]] == "100"
    assert by_arm["all"][col["fine-tune steps"]] == "50"
    assert by_arm["lcc"][col["Δ > 2 pooled std"]] == "no"
    assert by_arm["all-uncertainty"][col["Δ > 2 pooled std"]] == "no (worse)"
    assert by_arm["none"][col["Δ MRR vs none"]] == "-" and by_arm["none"][col["pretrain steps"]] == "0"
    # the overview table keeps all-uncertainty apart from all (same signals, another sampler)
    (overview,) = ablation_tables([r for r in recs if r.grid])
    assert overview.rows == ["none", "lcc", "all", "all-uncertainty"]


def test_grid_runs_then_skips_finished_cells(grid, capsys):
    runs, pt_cfg, ft_cfg, done = grid
    assert done == {"ran": ["none/seed 0", "lcc/seed 0"], "skipped": []}
    grid_dir = runs / "ablation-umls-amortised"
    cells = {name: grid_dir / name / "metrics.json" for name in ("finetune-none-s0", "finetune-lcc-s0")}
    stamps = {name: p.stat().st_mtime_ns for name, p in cells.items()}
    m = json.loads(cells["finetune-lcc-s0"].read_text())
    assert m["signals"] == ["lcc"] and m["pretrain_steps"] == 3 and m["finetune_steps"] == 6
    assert m["init_checkpoint"] == str(grid_dir / "pretrain-lcc" / "checkpoints" / "last.ckpt")
    assert json.loads(cells["finetune-none-s0"].read_text())["signals"] == []
    pt_stamp = (grid_dir / "pretrain-lcc" / "checkpoints" / "last.ckpt").stat().st_mtime_ns

    # rerun through the CLI (the old flag names still work): nothing is recomputed, the report is written
    capsys.readouterr()
    assert ablation_main(["--dataset", "umls", "--budget-pretrain-steps", "3", "--budget-finetune-steps", "6",
                          "--signals-set", "lcc", "--seeds", "0", "--runs", str(runs),
                          "--pretrain-config", str(pt_cfg), "--finetune-config", str(ft_cfg)]) == 0
    out = capsys.readouterr().out
    assert "0 cell(s) run, 2 already finished" in out
    assert {name: p.stat().st_mtime_ns for name, p in cells.items()} == stamps
    assert (grid_dir / "pretrain-lcc" / "checkpoints" / "last.ckpt").stat().st_mtime_ns == pt_stamp
    md = (grid_dir / "report" / "leaderboard.md").read_text()
    (ablation,) = [(h, rows) for h, rows in md_tables(md) if h[0] == "signals"]
    header, rows = ablation
    assert [r[0] for r in rows] == ["no pretraining", "lcc"]
    base = json.loads(cells["finetune-none-s0"].read_text())["metrics"]["mrr"]
    assert rows[0][header.index("umls MRR")] == f"{base:.4f}"
    assert rows[1][header.index("umls MRR")] == f"{m['metrics']['mrr']:.4f} ({m['metrics']['mrr'] - base:+.4f})"
    # the per-signal table: printed, in ablation.md and in the leaderboard, the same rows
    (per_signal,) = [rows for h, rows in md_tables((grid_dir / "report" / "ablation.md").read_text()) if h[0] == "arm"]
    assert [r for h, r in md_tables(md) if h[0] == "arm"] == [per_signal]
    assert [r[0] for r in per_signal] == ["none", "lcc"]
    assert per_signal[1][5] == f"{m['metrics']['mrr']:.4f}" and per_signal[1][-1] == "n/a"  # one seed
    assert "| lcc | 1 | 3 |" in out and "pretraining ablation: umls, amortised" in out
    assert (grid_dir / "report" / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grid_rejects_bad_budget(tmp_path):
    with pytest.raises(KGCError, match="must be >= 1"):
        run_grid("umls", 0, 5, [["lcc"]], [0], tmp_path)


def test_grid_resumes_an_interrupted_cell(grid, tmp_path):
    import shutil

    runs, pt_cfg, ft_cfg, _ = grid
    copy = tmp_path / "runs"
    shutil.copytree(runs / "ablation-umls-amortised", copy / "ablation-umls-amortised",
                    ignore=shutil.ignore_patterns("report"))
    cell = copy / "ablation-umls-amortised" / "finetune-lcc-s0"
    (cell / "metrics.json").unlink()  # killed after its last checkpoint, before evaluation
    pt_ckpt = copy / "ablation-umls-amortised" / "pretrain-lcc" / "checkpoints" / "last.ckpt"
    pt_stamp = pt_ckpt.stat().st_mtime_ns
    logs: list[str] = []
    done = run_grid("umls", 3, 6, [["lcc"]], [0], copy, str(pt_cfg), str(ft_cfg), log=logs.append)
    assert done == {"ran": ["lcc/seed 0"], "skipped": ["none/seed 0"]}
    assert any("reusing pretraining run" in m for m in logs) and any("continuing fine-tuning run" in m for m in logs)
    assert pt_ckpt.stat().st_mtime_ns == pt_stamp
    m = json.loads((cell / "metrics.json").read_text())
    assert m["finetune_steps"] == 6 and m["dataset"] == "umls"


def test_cli_overrides_and_finetune_time_reach_every_cell(tmp_path):
    """--pretrain-set reaches the pretraining run's resolved config, --finetune-set and
    --budget-finetune-time reach every fine-tuning cell's (the cells record what they trained with)."""
    from kgc.training.runs import RunDir

    from report_helpers import TINY_FINETUNE, TINY_PRETRAIN

    pt_cfg, ft_cfg = tmp_path / "pt.yaml", tmp_path / "ft.yaml"
    pt_cfg.write_text(TINY_PRETRAIN)
    ft_cfg.write_text(TINY_FINETUNE)
    runs = tmp_path / "runs"
    assert ablation_main(["--dataset", "umls", "--budget-pretrain-steps", "2", "--budget-finetune-steps", "3",
                          "--budget-finetune-time", "10m", "--signals-set", "lcc", "--seeds", "0", "--runs", str(runs),
                          "--pretrain-config", str(pt_cfg), "--finetune-config", str(ft_cfg),
                          "--pretrain-set", "optim.lr=7.0e-4", "--finetune-set", "optim.lr=9.0e-4"]) == 0
    grid = runs / "ablation-umls-amortised"
    pt = RunDir(grid / "pretrain-lcc").config()
    assert pt["optim"]["lr"] == 7.0e-4 and pt["trainer"]["max_steps"] == 2
    for cell in ("finetune-none-s0", "finetune-lcc-s0"):
        m = json.loads((grid / cell / "metrics.json").read_text())
        assert m["config"]["optim"]["lr"] == 9.0e-4, cell
        assert m["config"]["trainer"]["max_time"] == "10m" and m["finetune_steps"] == 3, cell


def test_pretrain_steps_per_signal_scales_with_the_arm():
    from kgc.ablation import Budget, arm

    b = Budget(finetune_steps=10, pretrain_steps_per_signal=100)
    b.validate()
    assert b.pretrain(arm("ig_path"))["max_steps"] == 100
    assert b.pretrain(arm("random_walk+shortest_path"))["max_steps"] == 200
    assert b.pretrain(arm("all"))["max_steps"] == b.pretrain(arm("all-uncertainty"))["max_steps"] == 500
    assert Budget(pretrain_steps=70).pretrain(arm("all"))["max_steps"] == 70
    for bad in (Budget(pretrain_steps=5, pretrain_steps_per_signal=1), Budget(pretrain_steps_per_signal=0),
                Budget(mode="matched", budget="1m", pretrain_steps_per_signal=3)):
        with pytest.raises(KGCError, match="pretrain-steps-per-signal"):
            bad.validate()


def test_matched_budget_is_the_time_share():
    """matched: no configured step count stops a run (the cap is MATCHED_STEP_CAP unless a step flag is
    given) and every run's decay ends at its time; amortised runs keep what the config says."""
    from kgc.ablation import MATCHED_STEP_CAP, Budget, arm

    m = Budget(mode="matched", budget="1m", pretrain_fraction=0.25)
    m.validate()
    assert m.pretrain(arm("all")) == {"max_steps": MATCHED_STEP_CAP, "max_time": "15s"}
    assert m.finetune(arm("all")) == {"max_steps": MATCHED_STEP_CAP, "max_time": "45s"}
    assert m.finetune(arm("none")) == {"max_steps": MATCHED_STEP_CAP, "max_time": "60s"}
    assert m.schedule_sets() == ["optim.horizon=time"]
    capped = Budget(mode="matched", budget="1m", pretrain_steps=7, finetune_steps=9)
    assert capped.pretrain(arm("ig_path"))["max_steps"] == 7 and capped.finetune(arm("ig_path"))["max_steps"] == 9
    a = Budget(pretrain_steps=70, finetune_steps=10)
    assert a.schedule_sets() == [] and a.pretrain(arm("all"))["max_steps"] == 70
    assert a.finetune(arm("none")) == {"max_steps": 10, "max_time": None}
