"""Leaderboard over real (tiny) fine-tuning runs on UMLS and the synthetic KG, plus broken run folders."""

from __future__ import annotations

import csv
import json
import re
import shutil

import pytest

from kgc import KGCError
from kgc.finetune import main as finetune_main
from kgc.reports.build import build_report
from kgc.reports.collect import RunRecord, collect_runs, mark_best, signals_label
from kgc.reports.published import DATASETS, load_published
from kgc.reports.render import fmt

from report_helpers import md_tables, run_module

METRIC_COLS = {"MRR": "mrr", "MR": "mr", "H@1": "hits@1", "H@3": "hits@3", "H@10": "hits@10"}


@pytest.fixture(scope="module")
def runs(grid):
    """The shared UMLS ablation grid (a group folder), a real synthetic fine-tuning, a grouped copy of a run
    with another seed and a worse MRR, and four broken folders."""
    runs, _, ft_cfg, _ = grid
    assert finetune_main(["--dataset", "synthetic", "--from-scratch", "--config", str(ft_cfg), "--max-steps", "6",
                          "--out", str(runs / "synthetic-ft"), "--runs-root", str(runs), "--no-progress"]) == 0
    umls = runs / "ablation-umls-amortised" / "finetune-none-s0"
    group = runs / "group" / "umls-seed7"
    group.mkdir(parents=True)
    m = json.loads((umls / "metrics.json").read_text())
    m["seed"] = 7
    m["metrics"] = {**m["metrics"], "mrr": m["metrics"]["mrr"] / 2}
    (group / "metrics.json").write_text(json.dumps(m))
    (runs / "bad-json").mkdir()
    (runs / "bad-json" / "metrics.json").write_text('{"dataset": "umls", "metrics": {')
    (runs / "missing-key").mkdir()
    m2 = json.loads((umls / "metrics.json").read_text())
    del m2["metrics"]["hits@10"]
    (runs / "missing-key" / "metrics.json").write_text(json.dumps(m2))
    (runs / "unfinished").mkdir()
    (runs / "unfinished" / "run.json").write_text(json.dumps({"kind": "finetune", "dataset": "umls"}))
    (runs / "empty").mkdir()
    return runs


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "reports"
    warnings: list[str] = []
    paths = build_report(runs, out, warn=warnings.append)
    return paths, warnings


def _metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def test_report_files_exist(report):
    paths, _ = report
    for key in ("md", "html", "csv", "png:umls", "png:synthetic", "png:fb15k237", "png:wn18rr"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0, key
    assert not list(paths["md"].parent.glob(".*.tmp"))  # atomic writes leave no temp files


def test_markdown_numbers_equal_metrics_json(report, runs):
    paths, _ = report
    text = paths["md"].read_text()
    checked = set()
    for header, rows in md_tables(text):
        if "run / citation" not in header:
            continue
        col = {h: i for i, h in enumerate(header)}
        for row in rows:
            if row[col["kind"]] != "kgc":
                continue
            run_dir = runs / row[col["run / citation"]]
            m = _metrics(run_dir)
            for name, key in METRIC_COLS.items():
                assert row[col[name]] == fmt(m["metrics"][key], key), (run_dir, name)
                assert float(row[col[name]]) == pytest.approx(m["metrics"][key], abs=0.006 if key == "mr" else 6e-5)
            assert row[col["pess. MRR"]] == fmt(m["pessimistic"]["mrr"], "mrr")
            assert row[col["dataset"]] == m["dataset"] and row[col["model"]] == m["model"]
            assert row[col["signals"]] == signals_label(m["signals"])
            assert row[col["pretrain steps"]] == str(m["pretrain_steps"])
            assert row[col["seed"]] == str(m["seed"]) and row[col["tie policy"]] == m["tie_policy"] == "realistic"
            assert row[col["fine-tune budget"]].startswith(f"{m['finetune_steps']} steps")
            assert row[col["commit"]] == (m["commit"] or "-") and row[col["hardware"]] == m["hardware"]
            checked.add(row[col["run / citation"]])
    assert checked == {"ablation-umls-amortised/finetune-none-s0", "ablation-umls-amortised/finetune-lcc-s0", "synthetic-ft",
                       "group/umls-seed7"}
    # the best of the two umls runs without pretraining is marked, the worse one is not; lcc is its own group
    assert re.search(r"\| kgc \| ★ \| umls \| transformer \| none \|[^\n]*\| ablation-umls-amortised/finetune-none-s0 \|", text)
    assert re.search(r"\| kgc \| ★ \| umls \| transformer \| lcc \|[^\n]*\| ablation-umls-amortised/finetune-lcc-s0 \|", text)
    assert re.search(r"\| kgc \|  \| umls \|[^\n]*\| group/umls-seed7 \|", text)


def test_broken_run_folders_are_skipped_with_a_warning_naming_them(report, runs):
    paths, warnings = report
    joined = "\n".join(warnings)
    for name, why in (("bad-json", "not valid JSON"), ("missing-key", "metrics.hits@10"),
                      ("unfinished", "no metrics.json"), ("empty", "no metrics.json")):
        line = next((w for w in warnings if f"{runs / name}:" in w), None)
        assert line is not None and why in line, (name, joined)
    assert len(warnings) == 4
    assert "bad-json" in paths["md"].read_text()  # listed in the report too


def test_cli_warns_on_stderr_and_writes_report(runs, tmp_path):
    res = run_module("kgc.leaderboard", "--runs", str(runs), "--out", str(tmp_path / "r"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"warning: skipping {runs / 'bad-json'}" in res.stderr
    assert (tmp_path / "r" / "leaderboard.html").is_file()
    res = run_module("kgc.leaderboard", "--runs", str(tmp_path / "nope"), "--out", str(tmp_path / "r2"))
    assert res.returncode == 2 and res.stderr.strip() == f"error: {tmp_path / 'nope'}: runs folder not found"


def test_html_is_a_single_self_contained_page(report):
    paths, _ = report
    page = paths["html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # nothing is loaded from elsewhere: no external scripts, styles, images, fonts or frames
    assert not re.search(r"<(script|img|iframe|link|source)\b[^>]*\b(src|href)=", page, re.I)
    assert "@import" not in page and "url(" not in page
    assert "<script>" in page and "<style>" in page and 'class="sortable"' in page
    assert page.count("<table") >= 5  # umls, synthetic, published datasets, ablation


def test_html_and_csv_carry_the_run_numbers(report, runs):
    paths, _ = report
    page = paths["html"].read_text()
    rows = list(csv.DictReader(paths["csv"].open()))
    for name in ("ablation-umls-amortised/finetune-none-s0", "ablation-umls-amortised/finetune-lcc-s0", "synthetic-ft"):
        m = _metrics(runs / name)
        assert f">{fmt(m['metrics']['mrr'], 'mrr')}<" in page
        (row,) = [r for r in rows if r["kind"] == "kgc" and r["run"].endswith(name)]
        for key in ("mrr", "mr", "hits@1", "hits@3", "hits@10"):
            assert float(row[key]) == m["metrics"][key]  # full precision in the CSV
        assert row["best"] == "1" and row["signals"] == signals_label(m["signals"])
    pub = [r for r in rows if r["kind"] == "published"]
    assert pub and all(r["citation"] and r["source"] for r in pub)


def test_dataset_pngs_open(report):
    import matplotlib.image as mpimg

    paths, _ = report
    for key in ("png:umls", "png:fb15k237"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = mpimg.imread(paths[key])
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 400


def test_rerun_overwrites_atomically(runs, report):
    paths, _ = report
    before = paths["md"].read_text()
    again = build_report(runs, paths["md"].parent, warn=lambda m: None)
    assert again["md"].read_text().split("\n", 3)[3] == before.split("\n", 3)[3]  # same body, new timestamp


def test_mark_best_per_dataset_model_signals(tmp_path):
    def rec(ds, model, sig, mrr, seed=0):
        return RunRecord(path=tmp_path / f"{ds}{model}{sig}{mrr}", dataset=ds, model=model, signals=sig,
                         tie_policy="realistic", seed=seed,
                         metrics={"mrr": mrr, "mr": 1.0, "hits@1": 0.0, "hits@3": 0.0, "hits@10": 0.0})

    rs = [rec("a", "t", "none", 0.2), rec("a", "t", "none", 0.3), rec("a", "t", "lcc", 0.1), rec("a", "h", "none", 0.05),
          rec("b", "t", "none", 0.01)]
    mark_best(rs)
    assert [r.best for r in rs] == [False, True, True, True, True]


def test_published_file_is_valid_and_sourced():
    version, rows = load_published()
    assert version == "1" and len(rows) >= 10
    assert {r.dataset for r in rows} <= set(DATASETS)
    for r in rows:
        assert r.source and r.citation and r.metrics
        assert all(0 <= v <= 1 for k, v in r.metrics.items() if k != "mr")
    hitter = {(r.dataset, r.model): r for r in rows}[("fb15k237", "HittER")]
    assert hitter.metrics["mrr"] == 0.373


@pytest.mark.parametrize("body, match", [
    ("results: []\n", "expected a mapping with 'version'"),
    ("version: 1\nresults:\n  - {dataset: fb15k, model: X, mrr: 0.3, citation: c, source: s}\n", "dataset 'fb15k'"),
    ("version: 1\nresults:\n  - {dataset: wn18rr, model: X, mrr: 48.0, citation: c, source: s}\n", "'mrr' must be a fraction"),
    ("version: 1\nresults:\n  - {dataset: wn18rr, model: X, mrr: 0.4, citation: c}\n", "'source' must be"),
    ("version: 1\nresults:\n  - {dataset: wn18rr, model: X, mrr: 0.4, citation: c, source: s, hits10: 1}\n", "unknown key 'hits10'"),
])
def test_malformed_published_file_is_a_one_line_error(tmp_path, body, match):
    p = tmp_path / "pub.yaml"
    p.write_text(body)
    with pytest.raises(KGCError, match=re.escape(match)) as exc:
        load_published(p)
    assert "\n" not in str(exc.value) and str(p) in str(exc.value)


def test_collect_ignores_pretraining_runs_and_report_folders(tmp_path, runs):
    shutil.copytree(runs / "ablation-umls-amortised" / "finetune-none-s0", tmp_path / "umls-ft",
                    ignore=shutil.ignore_patterns("checkpoints", "logs"))
    (tmp_path / "pt").mkdir()
    (tmp_path / "pt" / "run.json").write_text(json.dumps({"kind": "pretrain"}))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "leaderboard.md").write_text("# old report\n")
    warnings: list[str] = []
    recs = collect_runs(tmp_path, warn=warnings.append)
    assert [r.path.name for r in recs] == ["umls-ft"] and warnings == []


def test_published_flag_and_the_kgc_runs_default(runs, tmp_path, monkeypatch, capsys):
    """``--published FILE`` replaces the shipped file (its rows appear, the shipped ones do not), and
    without ``--runs`` the runs folder is ``$KGC_RUNS``."""
    from kgc.leaderboard import main as leaderboard_main

    pub = tmp_path / "pub.yaml"
    pub.write_text("version: sentinel-7\nresults:\n  - dataset: fb15k237\n    model: SentinelNet\n    mrr: 0.123\n"
                   "    citation: a test row\n    source: https://example.org/sentinel\n")
    monkeypatch.setenv("KGC_RUNS", str(runs))
    out = tmp_path / "rep"
    assert leaderboard_main(["--out", str(out), "--published", str(pub)]) == 0
    md = (out / "leaderboard.md").read_text()
    assert "SentinelNet" in md and "NBFNet" not in md and "HittER" not in md
    record_mrr = _metrics(runs / "synthetic-ft")["metrics"]["mrr"]
    assert fmt(record_mrr, "mrr") in md  # the runs under $KGC_RUNS were collected
    # and the shipped file when --published is not given
    out2 = tmp_path / "rep2"
    assert leaderboard_main(["--out", str(out2)]) == 0
    md2 = (out2 / "leaderboard.md").read_text()
    assert "NBFNet" in md2 and "SentinelNet" not in md2
    capsys.readouterr()
