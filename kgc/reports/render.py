"""Render the leaderboard: Markdown, a self-contained HTML page, CSV and one PNG per dataset.

Every file is written atomically (:func:`kgc.utils.io.atomic_write`). Numbers of kgc runs are printed
from their ``metrics.json`` values (4 decimals for MRR/Hits, 2 for MR); the CSV keeps full precision.
"""

from __future__ import annotations

import csv
import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgc.reports.collect import RunRecord
from kgc.reports.published import PublishedRow
from kgc.utils.io import atomic_write

BEST_MARK = "★"
ABLATION_METRICS = (("mrr", "MRR"), ("hits@1", "H@1"), ("hits@3", "H@3"), ("hits@10", "H@10"))
COLUMNS = ("kind", "best", "dataset", "model", "signals", "MRR", "MR", "H@1", "H@3", "H@10", "pess. MRR",
           "pess. H@10", "tie policy", "pretrain steps", "fine-tune budget", "seed", "commit", "hardware",
           "wall time", "run / citation")
CSV_COLUMNS = ("kind", "best", "dataset", "model", "signals", "mrr", "mr", "hits@1", "hits@3", "hits@10",
               "pessimistic_mrr", "pessimistic_hits@10", "tie_policy", "pretrain_steps", "finetune_steps",
               "finetune_max_time", "seed", "commit", "hardware", "wall_time_s", "run", "citation", "source")


def fmt(value: float | None, key: str) -> str:
    """``mr`` with 2 decimals, fractions (MRR, Hits@k) with 4; ``-`` when absent."""
    if value is None:
        return "-"
    return f"{value:.2f}" if key == "mr" else f"{value:.4f}"


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.2f}h"


@dataclass
class Report:
    """Everything the renderers need."""

    records: list[RunRecord]
    published: list[PublishedRow]
    published_version: str
    ablation: list[Any]  # kgc.reports.ablation.AblationTable
    skipped: list[str]
    runs_dir: str
    generated: str
    signal_tables: list[Any] = field(default_factory=list)  # kgc.reports.ablation.SignalTable, one per grid

    def datasets(self) -> list[str]:
        """Datasets with kgc runs first (sorted), then the published-only ones in the published file's order."""
        ours = sorted({r.dataset for r in self.records})
        theirs = [d for d in dict.fromkeys(p.dataset for p in self.published) if d not in ours]
        return ours + theirs

    def runs_of(self, dataset: str) -> list[RunRecord]:
        return sorted((r for r in self.records if r.dataset == dataset),
                      key=lambda r: (-r.metrics["mrr"], r.model, r.signals, r.seed, str(r.path)))

    def published_of(self, dataset: str) -> list[PublishedRow]:
        return sorted((p for p in self.published if p.dataset == dataset), key=lambda p: -p.metrics.get("mrr", -1.0))


def _run_cells(r: RunRecord, runs_dir: str) -> list[str]:
    m, p = r.metrics, r.pessimistic
    try:
        where = os.path.relpath(r.path, runs_dir)
    except ValueError:
        where = str(r.path)
    return ["kgc", BEST_MARK if r.best else "", r.dataset, r.model, r.signals, fmt(m["mrr"], "mrr"),
            fmt(m["mr"], "mr"), fmt(m["hits@1"], "h"), fmt(m["hits@3"], "h"), fmt(m["hits@10"], "h"),
            fmt(p.get("mrr"), "mrr"), fmt(p.get("hits@10"), "h"), r.tie_policy, str(r.pretrain_steps), r.budget,
            str(r.seed), r.commit or "-", r.hardware or "-", fmt_time(r.wall_time_s), where]


def _pub_cells(p: PublishedRow) -> list[str]:
    m = p.metrics
    return ["published", "", p.dataset, p.model, "-", fmt(m.get("mrr"), "mrr"), fmt(m.get("mr"), "mr"),
            fmt(m.get("hits@1"), "h"), fmt(m.get("hits@3"), "h"), fmt(m.get("hits@10"), "h"), "-", "-",
            p.tie_policy or "not stated", "-", "-", "-", "-", "-", "-", p.citation]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(_md_escape(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return out


def ablation_header_rows(table) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one ablation table: ``mean (delta)`` per dataset x metric, n = seeds averaged."""
    header = ["signals"]
    for ds in table.datasets:
        header += [f"{ds} {label}" for _, label in ABLATION_METRICS] + [f"{ds} n"]
    rows = []
    for sig in table.rows:
        row = ["no pretraining" if sig == "none" else ("all signals" if sig == "all" else sig)]
        for ds in table.datasets:
            cell = table.cells.get((sig, ds))
            if cell is None:
                row += ["-"] * (len(ABLATION_METRICS) + 1)
                continue
            for key, _ in ABLATION_METRICS:
                text = f"{cell['mean'][key]:.4f}"
                d = cell["delta"].get(key)
                if d is not None and sig != "none":
                    text += f" ({d:+.4f})"
                row.append(text)
            row.append(str(cell["n"]))
        rows.append(row)
    return header, rows


SIGNAL_COLUMNS = ("arm", "n", "pretrain steps", "pretrain s", "fine-tune steps", "test MRR", "test H@1",
                  "test H@10", "valid MRR", "Δ MRR vs none", "pooled std", "z", "Δ > 2 pooled std")
SIGNAL_NOTE = ("Test split, filtered, each run's tie policy; the checkpoint chosen on validation MRR. Mean ± sample "
               "standard deviation over seeds (n); steps and seconds per seed (a range when they differ; pretrain s: "
               "wall time of the pretraining run, signal building included). Δ: difference of the mean test MRR to "
               "none; pooled std = sqrt((s_arm² + s_none²) / 2); z = Δ / pooled std; \"yes\" when Δ > 2 pooled std, "
               "\"no (worse)\" when Δ < -2 pooled std, else \"no\" (n/a with a single seed).")


def _span(values: list, fmt_one=str) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    lo, hi = min(vals), max(vals)
    return fmt_one(lo) if lo == hi else f"{fmt_one(lo)}-{fmt_one(hi)}"


def _pm(mean: float, std: float | None) -> str:
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def signal_header_rows(table) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one per-signal table (:class:`kgc.reports.ablation.SignalTable`)."""
    rows = []
    for r in table.rows:
        c = r.vs_none
        pooled, z = c.get("pooled_std"), c.get("z")
        pre = r.arm != "none"
        rows.append([
            r.arm, str(r.n), _span(r.pretrain_steps) if pre else "0",
            _span(r.pretrain_s, lambda v: f"{v:.1f}") if pre else "-", _span(r.finetune_steps),
            *(_pm(*r.stats[k]) for k in ("mrr", "hits@1", "hits@10")),
            "-" if r.valid_mrr is None else f"{r.valid_mrr:.4f}",
            "-" if not c else f"{c['delta']:+.4f}", "-" if pooled is None else f"{pooled:.4f}",
            "-" if z is None else (f"{z:+.2f}" if abs(z) != float("inf") else ("+inf" if z > 0 else "-inf")),
            c.get("significant", "-") if c else "-"])
    return list(SIGNAL_COLUMNS), rows


def signal_table_title(table) -> str:
    return f"{table.dataset}, {table.mode} (model {table.model}; {table.grid})"


def signal_table_text(table) -> str:
    """The table as printed by ``kgc ablation``: a title line and the Markdown table."""
    header, rows = signal_header_rows(table)
    return "\n".join([f"pretraining ablation: {signal_table_title(table)}", *_md_table(header, rows)])


def plot_signal_table(table, path: Path) -> None:
    """Bars per arm: test MRR, Hits@1 and Hits@10 means with sample-std error bars; * = Δ MRR > 2 pooled std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table.rows
    n = max(1, len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * n + 2.5), 4.2), dpi=110)
    width = 0.26
    for j, (key, label, color) in enumerate((("mrr", "test MRR", "#1f77b4"), ("hits@1", "test Hits@1", "#ff7f0e"),
                                              ("hits@10", "test Hits@10", "#2ca02c"))):
        xs = [i + (j - 1) * width for i in range(len(rows))]
        means = [r.stats[key][0] for r in rows]
        errs = [r.stats[key][1] or 0.0 for r in rows]
        ax.bar(xs, means, width=width, yerr=errs, capsize=3, color=color, label=label)
        if key == "mrr":
            for x, r, m, e in zip(xs, rows, means, errs):
                if r.vs_none.get("significant") == "yes":
                    ax.text(x, m + e + 0.01, "*", ha="center", fontsize=12)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r.arm}\n(n={r.n})" for r in rows], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test metric (filtered), mean ± sample std")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.set_title(f"pretraining ablation: {table.dataset}, {table.mode} (* = Δ MRR > 2 pooled std vs none)", fontsize=9)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)


def render_ablation_markdown(tables, plots: dict[str, str]) -> str:
    """``ablation.md``: each grid's per-signal table and its plot (``plots``: grid -> PNG file name)."""
    lines = ["# Pretraining ablation", "", SIGNAL_NOTE, ""]
    if not tables:
        lines += ["No finished ablation cells.", ""]
    for t in tables:
        header, rows = signal_header_rows(t)
        lines += [f"## {signal_table_title(t)}", ""] + _md_table(header, rows) + [""]
        if t.grid in plots:
            lines += [f"![{t.dataset} {t.mode}: test metrics per arm]({plots[t.grid]})", ""]
    return "\n".join(lines) + "\n"


def write_ablation_report(tables, out_dir: str | os.PathLike) -> dict[str, Path]:
    """``ablation.md`` and the plot(s) into ``out_dir``: ``ablation.png`` for a single grid, else
    ``<grid name>.png`` each. Returns ``{"ablation_md": ..., "ablation_png[:<grid name>]": ...}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    plots: dict[str, str] = {}
    for t in tables:
        name = "ablation.png" if len(tables) == 1 else f"{t.name}.png"
        plot_signal_table(t, out / name)
        plots[t.grid] = name
        paths["ablation_png" if len(tables) == 1 else f"ablation_png:{t.name}"] = out / name
    paths["ablation_md"] = out / "ablation.md"
    with atomic_write(paths["ablation_md"], "w") as fh:
        fh.write(render_ablation_markdown(tables, plots))
    return paths


def render_markdown(rep: Report) -> str:
    lines = ["# kgc leaderboard", "",
             f"Generated {rep.generated} from `{rep.runs_dir}` ({len(rep.records)} fine-tuning run(s)); "
             f"published numbers: version {rep.published_version}.",
             "Test split, filtered ranking. kgc numbers use each run's stated tie policy (realistic rank by "
             f"default; pessimistic beside it). {BEST_MARK} = best kgc run (by MRR) per dataset, model and signals. "
             "See docs/leaderboard.md.", ""]
    for ds in rep.datasets():
        lines += [f"## {ds}", ""]
        rows = [_run_cells(r, rep.runs_dir) for r in rep.runs_of(ds)] + [_pub_cells(p) for p in rep.published_of(ds)]
        lines += _md_table(list(COLUMNS), rows) + ["", f"![{ds}: MRR and Hits@10](leaderboard_{ds}.png)", ""]
    lines += ["## Ablation: pretraining signals", "",
              "Mean over seeds (latest run per seed); in brackets the difference to \"no pretraining\" "
              "of the same model and dataset; n = seeds averaged.", ""]
    if not rep.ablation:
        lines += ["No runs to tabulate.", ""]
    for table in rep.ablation:
        header, rows = ablation_header_rows(table)
        lines += [f"### model {table.model}", ""] + _md_table(header, rows) + [""]
    if rep.signal_tables:
        lines += ["## Ablation grids: per-signal tables", "", SIGNAL_NOTE, ""]
    for t in rep.signal_tables:
        header, rows = signal_header_rows(t)
        lines += [f"### {signal_table_title(t)}", ""] + _md_table(header, rows) + [
            "", f"![{t.dataset} {t.mode}: test metrics per arm]({t.name}.png)", ""]
    if rep.skipped:
        lines += ["## Skipped run folders", ""] + [f"- {_md_escape(s)}" for s in rep.skipped] + [""]
    lines += ["## Published numbers: sources", ""]
    for p in rep.published:
        note = f" ({p.note})" if p.note else ""
        lines.append(f"- {p.model} on {p.dataset}: {p.citation}. Read from {p.source}{note}")
    return "\n".join(lines) + "\n"


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;white-space:nowrap}
th{background:#eef;cursor:pointer;user-select:none}th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
tr.kgc td{background:#f4fbff}tr.best td{background:#dff3e4;font-weight:600}tr.published td{color:#444}
td.num{text-align:right;font-variant-numeric:tabular-nums}.small{color:#666;font-size:12px}
.wrap{overflow-x:auto;max-width:100%}td:last-child{white-space:normal;min-width:32em}"""

_JS = """document.querySelectorAll('table.sortable').forEach(function(t){
 t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
  var asc=!th.classList.contains('asc');t.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc')});
  th.classList.add(asc?'asc':'desc');var b=t.tBodies[0];var rows=Array.prototype.slice.call(b.rows);
  rows.sort(function(x,y){var a=x.cells[i].getAttribute('data-v'),c=y.cells[i].getAttribute('data-v');
   var na=parseFloat(a),nc=parseFloat(c);var r;
   if(!isNaN(na)&&!isNaN(nc)){r=na-nc}else if(!isNaN(na)){r=-1}else if(!isNaN(nc)){r=1}else{r=String(a).localeCompare(String(c))}
   return asc?r:-r});rows.forEach(function(r){b.appendChild(r)})})})});"""


def _html_table(header: list[str], rows: list[list[str]], row_classes: list[str] | None = None) -> str:
    e = html.escape
    out = ['<div class="wrap"><table class="sortable"><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes else ""
        cells = []
        for c in row:
            head = c.split(" ")[0]
            try:
                float(head)
                numeric = True
            except ValueError:
                numeric = False
            cells.append(f'<td{" class=num" if numeric else ""} data-v="{e(head if numeric else c)}">{e(c)}</td>')
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</tbody></table></div>"


def render_html(rep: Report) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>kgc leaderboard</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>kgc leaderboard</h1>",
             f'<p class="small">Generated {e(rep.generated)} from <code>{e(rep.runs_dir)}</code> '
             f"({len(rep.records)} fine-tuning run(s)); published numbers version {e(rep.published_version)}. "
             "Test split, filtered ranking; kgc numbers use each run's tie policy (realistic by default, pessimistic "
             f"beside it). {BEST_MARK} = best kgc run per dataset, model and signals. Click a column header to sort.</p>"]
    for ds in rep.datasets():
        runs, pubs = rep.runs_of(ds), rep.published_of(ds)
        rows = [_run_cells(r, rep.runs_dir) for r in runs] + [_pub_cells(p) for p in pubs]
        classes = [("kgc best" if r.best else "kgc") for r in runs] + ["published"] * len(pubs)
        parts += [f"<h2>{e(ds)}</h2>", _html_table(list(COLUMNS), rows, classes)]
    parts.append("<h2>Ablation: pretraining signals</h2>")
    parts.append('<p class="small">Mean over seeds (latest run per seed); in brackets the difference to '
                 '"no pretraining" of the same model and dataset; n = seeds averaged.</p>')
    if not rep.ablation:
        parts.append("<p>No runs to tabulate.</p>")
    for table in rep.ablation:
        header, rows = ablation_header_rows(table)
        parts += [f"<h3>model {e(table.model)}</h3>", _html_table(header, rows)]
    if rep.signal_tables:
        parts += ["<h2>Ablation grids: per-signal tables</h2>", f'<p class="small">{e(SIGNAL_NOTE)}</p>']
    for t in rep.signal_tables:
        header, rows = signal_header_rows(t)
        parts += [f"<h3>{e(signal_table_title(t))}</h3>", _html_table(header, rows)]
    if rep.skipped:
        parts.append("<h2>Skipped run folders</h2><ul>" + "".join(f"<li>{e(s)}</li>" for s in rep.skipped) + "</ul>")
    parts.append("<h2>Published numbers: sources</h2><ul class=small>")
    for p in rep.published:
        note = f" ({e(p.note)})" if p.note else ""
        parts.append(f"<li>{e(p.model)} on {e(p.dataset)}: {e(p.citation)}. Read from {e(p.source)}{note}</li>")
    parts += ["</ul>", f"<script>{_JS}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"


def render_csv(rep: Report) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for ds in rep.datasets():
        for r in rep.runs_of(ds):
            m, p = r.metrics, r.pessimistic
            w.writerow(["kgc", int(r.best), r.dataset, r.model, r.signals, m["mrr"], m["mr"], m["hits@1"],
                        m["hits@3"], m["hits@10"], p.get("mrr", ""), p.get("hits@10", ""), r.tie_policy,
                        r.pretrain_steps, "" if r.finetune_steps is None else r.finetune_steps,
                        r.finetune_max_time or "", r.seed, r.commit or "", r.hardware or "",
                        "" if r.wall_time_s is None else r.wall_time_s, str(r.path), "", ""])
        for pub in rep.published_of(ds):
            m = pub.metrics
            w.writerow(["published", 0, pub.dataset, pub.model, "", m.get("mrr", ""), m.get("mr", ""), m.get("hits@1", ""),
                        m.get("hits@3", ""), m.get("hits@10", ""), "", "", pub.tie_policy or "", "", "", "", "", "",
                        "", "", "", pub.citation, pub.source])
    return buf.getvalue()


def plot_dataset(rep: Report, dataset: str, path: Path) -> None:
    """Horizontal bars of MRR and Hits@10: the best kgc run per (model, signals) beside the published rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = []  # (label, mrr | None, h10 | None, is_kgc)
    for r in rep.runs_of(dataset):
        if r.best:
            entries.append((f"kgc {r.model} [{r.signals}] s{r.seed}", r.metrics["mrr"], r.metrics["hits@10"], True))
    for p in rep.published_of(dataset):
        if "mrr" in p.metrics or "hits@10" in p.metrics:
            entries.append((p.model, p.metrics.get("mrr"), p.metrics.get("hits@10"), False))
    entries.sort(key=lambda t: (t[1] if t[1] is not None else -1.0, t[2] or 0.0))
    n = max(1, len(entries))
    fig, ax = plt.subplots(figsize=(9.5, 1.4 + 0.42 * n), dpi=110)
    ys = list(range(len(entries)))
    h = 0.38
    for y, (label, mrr, h10, ours) in zip(ys, entries):
        if mrr is not None:
            ax.barh(y + h / 2, mrr, height=h, color="#1f77b4" if ours else "#7f7f7f")
            ax.text(mrr + 0.005, y + h / 2, f"{mrr:.3f}", va="center", fontsize=7)
        if h10 is not None:
            ax.barh(y - h / 2, h10, height=h, color="#9ecae1" if ours else "#c7c7c7")
            ax.text(h10 + 0.005, y - h / 2, f"{h10:.3f}", va="center", fontsize=7)
    ax.set_yticks(ys)
    ax.set_yticklabels([t[0] for t in entries], fontsize=8)
    for tick, (_, _, _, ours) in zip(ax.get_yticklabels(), entries):
        if ours:
            tick.set_fontweight("bold")
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("test metric (filtered)")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#1f77b4", label="kgc MRR"), Patch(color="#9ecae1", label="kgc Hits@10"),
                       Patch(color="#7f7f7f", label="published MRR"), Patch(color="#c7c7c7", label="published Hits@10")],
              fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.set_title(f"{dataset}: MRR and Hits@10 (kgc best runs beside published results)", fontsize=9)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)


def write_report(rep: Report, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write leaderboard.md/.html/.csv and ``leaderboard_<dataset>.png`` into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "leaderboard.md", "html": out / "leaderboard.html", "csv": out / "leaderboard.csv"}
    for key, text in (("md", render_markdown(rep)), ("html", render_html(rep)), ("csv", render_csv(rep))):
        with atomic_write(paths[key], "w") as fh:
            fh.write(text)
    for ds in rep.datasets():
        p = out / f"leaderboard_{ds}.png"
        plot_dataset(rep, ds, p)
        paths[f"png:{ds}"] = p
    for t in rep.signal_tables:
        p = out / f"{t.name}.png"
        plot_signal_table(t, p)
        paths[f"ablation_png:{t.name}"] = p
    return paths
