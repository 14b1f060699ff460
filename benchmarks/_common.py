"""Shared helpers of the issue-9 benchmarks (quality at budget, ablation, evaluation speed, throughput).

Nothing here changes kgc: it runs the kgc CLIs in subprocesses (``python -m kgc.finetune`` etc.),
bridges a kgc dataset to PyKEEN with *our* entity/relation ids, evaluates a PyKEEN model with both
evaluators, and prints tables with a header naming the machine, date and commit.

PyKEEN is optional (the ``bench`` extra); every PyKEEN helper imports it lazily and
:func:`pykeen_available` says whether it is there.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

REPO = Path(__file__).resolve().parents[1]
# the repository root goes first: benchmarks/kernels.py and benchmarks/graph_algos.py (scripts run from this
# folder put it on sys.path) must not shadow the ``kernels`` and ``graph_algos`` packages
while str(REPO) in sys.path:
    sys.path.remove(str(REPO))
sys.path.insert(0, str(REPO))

METRIC_KEYS = ("mrr", "hits@1", "hits@3", "hits@10")
# PyKEEN RankBasedEvaluator metric names for the keys above
_PYKEEN_NAMES = {"mrr": "inverse_harmonic_mean_rank", "mr": "arithmetic_mean_rank",
                 "hits@1": "hits_at_1", "hits@3": "hits_at_3", "hits@10": "hits_at_10"}


# ---- budgets, threads, machine -------------------------------------------------------------------
def parse_duration(text: str | float | int) -> float:
    """Seconds of ``"15m"``, ``"90s"``, ``"1h30m"``, ``"2.5m"`` or a plain number of seconds (kgc's
    ``--max-time`` reader, :func:`kgc.training.config.parse_duration`; ValueError otherwise)."""
    from kgc.training.config import parse_duration as kgc_parse_duration

    return kgc_parse_duration(text)


def fmt_duration(seconds: float) -> str:
    """A kgc ``--max-time`` string (whole seconds, at least 1s)."""
    return f"{max(1, int(round(seconds)))}s"


def set_threads(n: int) -> None:
    """Use ``n`` intra-op threads here and in every subprocess started afterwards."""
    import torch

    torch.set_num_threads(n)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "KGC_BENCH_THREADS"):
        os.environ[var] = str(n)


def git_commit() -> str:
    """The checkout's short commit (``-dirty`` when tracked files changed), as kgc records it in run
    folders (:func:`kgc.training.runs.git_commit`); ``"unknown"`` without git or a checkout."""
    from kgc.training.runs import git_commit as kgc_git_commit

    return kgc_git_commit() or "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int | None = None) -> dict[str, Any]:
    import torch

    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "cpu": f"{cpu_model()} ({os.cpu_count()} logical cores visible)",
        "threads": threads if threads is not None else torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pykeen": pykeen_version(),
    }
    try:
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    return info


def print_header(title: str, argv: Sequence[str], info: dict[str, Any]) -> None:
    print(f"# {title}")
    print(f"command: {' '.join([Path(sys.executable).name, *argv])}")
    print("machine: " + "; ".join(f"{k}={v}" for k, v in info.items()), flush=True)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table (floats with 4 decimals)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}"
        return "-" if v is None else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(cell(v) for v in r) + " |")
    return "\n".join(lines)


def ratio(a: float | None, b: float | None, digits: int = 2) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.{digits}f}x"


def write_json(path: str | Path | None, obj: Any) -> None:
    if not path:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(p)


# ---- kgc subprocess runs ---------------------------------------------------------------------------
def _kgc_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_module(module: str, args: list[str], log_path: Path, timeout_s: float | None = None) -> float:
    """``python -m module args`` (stdout+stderr to ``log_path``); returns its wall time; raises on failure."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", module, *args]
    t0 = time.perf_counter()
    with open(log_path, "w") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.run(cmd, cwd=REPO, env=_kgc_env(), stdout=fh, stderr=subprocess.STDOUT,
                              timeout=timeout_s)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-15:])
        raise RuntimeError(f"python -m {module} failed with status {proc.returncode} (log {log_path}):\n{tail}")
    return wall


def kgc_pretrain(dataset: str, out: Path, budget_s: float, signals: str, seed: int, *,
                 config: str | None = None, sets: Sequence[str] = (), max_steps: int | None = None) -> dict:
    """Time-capped pretraining run in ``out``; returns ``{"run", "wall_s", "steps", "checkpoint"}``."""
    args = ["--dataset", dataset, "--signals", signals, "--seed", str(seed), "--max-time", fmt_duration(budget_s),
            "--out", str(out), "--no-progress"]
    if max_steps:
        args += ["--max-steps", str(max_steps)]
    if config:
        args += ["--config", config]
    for kv in sets:
        args += ["--set", kv]
    wall = run_module("kgc.pretrain", args, out.parent / f"{out.name}.log")
    meta = json.loads((out / "run.json").read_text())
    ckpt = out / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise RuntimeError(f"{out}: pretraining wrote no last.ckpt")
    return {"run": str(out), "wall_s": wall, "steps": int(meta.get("steps", 0)), "checkpoint": str(ckpt)}


def cpu_budget_config(kind: str, dataset: str) -> str | None:
    """``configs/<kind>/cpu-budget/<dataset>.yaml`` (CPU-sized, cosine decay ending at the budget) if it exists."""
    p = REPO / "configs" / kind / "cpu-budget" / f"{Path(str(dataset)).name.lower()}.yaml"
    return str(p) if p.is_file() else None


def kgc_finetune(dataset: str, out: Path, budget_s: float, seed: int, *, init: str | None = None,
                 config: str | None = None, sets: Sequence[str] = (), max_steps: int | None = None) -> dict:
    """Time-capped fine-tuning run (``--max-time``) in ``out``; returns its ``metrics.json`` plus ``wall_s``."""
    args = ["--dataset", dataset, "--seed", str(seed), "--max-time", fmt_duration(budget_s), "--out", str(out),
            "--no-progress"]
    args += ["--init", init] if init else ["--from-scratch"]
    if max_steps:
        args += ["--max-steps", str(max_steps)]
    if config:
        args += ["--config", config]
    for kv in sets:
        args += ["--set", kv]
    wall = run_module("kgc.finetune", args, out.parent / f"{out.name}.log")
    m = json.loads((out / "metrics.json").read_text())
    m["wall_s"] = wall
    return m


# ---- PyKEEN bridge ------------------------------------------------------------------------------------
def pykeen_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("pykeen")
    except Exception:  # noqa: BLE001 - not installed / broken metadata
        return None


def pykeen_available() -> bool:
    if pykeen_version() is None:
        return False
    try:
        import pykeen  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def seen_in_train_mask(ds, split: str):
    """(N,) bool: facts of ``split`` whose entities all occur in train (what PyKEEN's loaders keep)."""
    import torch

    tr = ds.triples("train")
    seen = torch.zeros(ds.num_entities, dtype=torch.bool)
    seen[tr[:, 0]] = True
    seen[tr[:, 2]] = True
    t = ds.triples(split)
    return seen[t[:, 0]] & seen[t[:, 2]]


def eval_triples(ds, split: str = "test", test_set: str = "full"):
    """(N, 3) (h, r, t) of ``split``: ``full`` = every fact, ``seen`` = PyKEEN's (entities seen in train)."""
    t = ds.triples(split)
    if test_set == "full":
        return t
    if test_set == "seen":
        return t[seen_in_train_mask(ds, split)]
    raise ValueError(f"test set must be 'full' or 'seen', got {test_set!r}")


def pykeen_factories(ds, create_inverse_triples: bool = True) -> dict:
    """PyKEEN ``TriplesFactory`` per split built on *our* ids (so both evaluators see the same ids).

    Every kgc entity (including those seen only in valid/test) is a PyKEEN entity; nothing is dropped.
    """
    from pykeen.triples import TriplesFactory

    e2i = dict(ds.entity_to_id)
    r2i = dict(ds.relation_to_id)
    out = {}
    for split in ("train", "valid", "test"):
        if split not in ds.splits:
            continue
        out[split] = TriplesFactory(mapped_triples=ds.triples(split).clone(), entity_to_id=e2i, relation_to_id=r2i,
                                    create_inverse_triples=create_inverse_triples)
    return out


def pykeen_scorer(model, num_entities: int):
    """A kgc score callable ``score(queries) -> (B, E)`` from a PyKEEN model (tails: predict_t, heads: predict_h).

    ``predict_h`` of a model trained with inverse triples scores ``(t, r^-1, ?)``, exactly our head query.
    """
    import torch

    def score(queries):
        ctx = queries.context[:, 0]
        rel = queries.relation
        tail = queries.direction == 0
        out = torch.empty(len(queries), num_entities)
        if bool(tail.any()):
            out[tail] = model.predict_t(torch.stack([ctx[tail], rel[tail]], 1)).float()
        head = ~tail
        if bool(head.any()):
            out[head] = model.predict_h(torch.stack([rel[head], ctx[head]], 1)).float()
        return out

    return score


def our_eval_of_pykeen(model, ds, triples, batch_size: int = 256) -> dict[str, dict[str, float]]:
    """Our filtered evaluation (FilterIndex over train+valid+test, filtered_ranks_from_scores on PyKEEN's
    scores) of ``triples`` (N, 3) (h, r, t); ``{policy: metrics}`` over both directions, plus wall time."""
    import torch

    from kgc.evaluation import LinkPredictionQueries, evaluate

    facts = torch.stack([triples[:, 1], triples[:, 0], triples[:, 2]], 1)
    queries = LinkPredictionQueries.from_facts(facts, num_relations=ds.num_relations, is_binary=True,
                                               num_entities=ds.num_entities)
    model.eval()
    with torch.no_grad():
        res = evaluate(pykeen_scorer(model, ds.num_entities), ds, "test", batch_size=batch_size, queries=queries,
                       distributed=False)
    out = {p: dict(m) for p, m in res.metrics_by_policy.items()}
    out["wall_time_s"] = res.wall_time_s
    return out


def pykeen_eval(model, factories: dict, triples, batch_size: int = 256) -> dict[str, dict[str, float]]:
    """PyKEEN's own filtered ``RankBasedEvaluator`` on ``triples`` (filter: train + valid + the evaluated
    triples, i.e. train+valid+test for the test split), both directions; ``{policy: metrics}``."""
    from pykeen.evaluation import RankBasedEvaluator

    t0 = time.perf_counter()
    ev = RankBasedEvaluator(filtered=True)
    extra = [factories["train"].mapped_triples]
    if "valid" in factories:
        extra.append(factories["valid"].mapped_triples)
    if "test" in factories:
        extra.append(factories["test"].mapped_triples)  # the evaluated subset may not hold all of test
    res = ev.evaluate(model, triples, batch_size=batch_size, use_tqdm=False, additional_filter_triples=extra)
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {}
    for policy in ("realistic", "optimistic", "pessimistic"):
        out[policy] = {k: float(res.get_metric(f"both.{policy}.{name}")) for k, name in _PYKEEN_NAMES.items()}
    out["wall_time_s"] = wall
    return out


# ---- PyKEEN recipes and time-bounded LCWA training -------------------------------------------------------
BIG = {"fb15k237", "wn18rr"}


def pykeen_recipe(model: str, dataset: str) -> dict[str, Any]:
    """LCWA / 1-N + cross-entropy + inverse triples + Adam recipes.

    ComplEx: d=200 (complex), xavier-uniform init, Adam lr 1e-3 on small KGs (UMLS, Nations, Kinships) and 1e-2 on
    FB15K-237/WN18RR - the recipes of issue 9's reference table. RotatE: PyKEEN's experiments config of
    Sun et al. 2019 (``sun2019_rotate_{fb15k237,wn18rr}.json``: d=1000/500, uniform entities, phase-init relations,
    complex-normalised, Adam 5e-5) with the training switched from sLCWA + NSSA to LCWA + cross-entropy (the
    protocol of this benchmark) and Adam raised to 1e-3, since 5e-5 is tuned for 1000 epochs of negative sampling;
    small KGs use d=200.
    """
    ds = Path(str(dataset)).name.lower()
    m = model.lower()
    if m == "complex":
        return {"model": "ComplEx", "model_kwargs": {"embedding_dim": 200, "entity_initializer": "xavier_uniform",
                                                    "relation_initializer": "xavier_uniform"},
                "lr": 1e-2 if ds in BIG else 1e-3, "batch_size": 512 if ds in BIG else 128}
    if m == "rotate":
        dim = {"fb15k237": 1000, "wn18rr": 500}.get(ds, 200)
        return {"model": "RotatE", "model_kwargs": {"embedding_dim": dim, "entity_initializer": "uniform",
                                                   "relation_initializer": "init_phases",
                                                   "relation_constrainer": "complex_normalize"},
                "lr": 1e-3, "batch_size": 512 if ds in BIG else 128}
    if m == "distmult":
        return {"model": "DistMult", "model_kwargs": {"embedding_dim": 200}, "lr": 1e-3 if ds not in BIG else 1e-2,
                "batch_size": 512 if ds in BIG else 128}
    raise ValueError(f"no PyKEEN recipe for model {model!r} (complex, rotate, distmult)")


class _BudgetExhausted(Exception):
    """Raised from a training callback when the wall-clock budget is spent (not a RuntimeError on purpose:
    PyKEEN's loop treats those as failures)."""


def train_pykeen(recipe: dict[str, Any], factories: dict, budget_s: float, seed: int = 0, *,
                 ds=None, valid_fraction: float = 0.1, log=print) -> dict[str, Any]:
    """Train a PyKEEN model with LCWA for ``budget_s`` seconds of wall time (checked before every batch).

    Validation time counts inside the budget. After an epoch the model is ranked on the valid split with our
    evaluator while validation has used at most ``valid_fraction`` of the time spent so far; the best state by
    valid MRR is restored at the end ("best-on-valid", only when validated at least once), else the final model.
    Returns ``{"model", "epochs" (float, partial epochs counted), "train_s", "valid_evals", "best_valid_mrr"}``.
    """
    import copy

    import torch
    from pykeen.losses import CrossEntropyLoss
    from pykeen.models import model_resolver
    from pykeen.training import LCWATrainingLoop
    from pykeen.training.callbacks import TrainingCallback

    torch.manual_seed(seed)
    train_tf = factories["train"]
    model = model_resolver.make(recipe["model"], recipe["model_kwargs"], triples_factory=train_tf,
                                loss=CrossEntropyLoss(), random_seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    loop = LCWATrainingLoop(model=model, triples_factory=train_tf, optimizer=optimizer)
    batch_size = int(recipe["batch_size"])
    n_batches = max(1, -(-train_tf.num_triples // batch_size))  # upper bound; LCWA batches are (h, r) pairs
    try:
        n_batches = len(loop._create_training_data_loader(train_tf, batch_size=batch_size, drop_last=False,
                                                          num_workers=0, pin_memory=False, shuffle=False,
                                                          sampler=None))
    except Exception:  # noqa: BLE001 - private API; the bound above is only used for the epoch fraction
        pass
    state = {"batches": 0, "epochs": 0, "val_time": 0.0, "best": -1.0, "best_state": None, "evals": 0}
    t0 = time.perf_counter()
    valid_tr = None if ds is None or "valid" not in ds.splits else ds.triples("valid")

    class Budget(TrainingCallback):
        def pre_batch(self, **kwargs):  # before zero_grad/forward: the previous step is complete
            if time.perf_counter() - t0 >= budget_s:
                raise _BudgetExhausted()

        def post_batch(self, epoch, batch, **kwargs):
            state["batches"] += 1

        def post_epoch(self, epoch, epoch_loss, **kwargs):
            state["epochs"] = epoch
            state["batches"] = 0
            elapsed = time.perf_counter() - t0
            if valid_tr is None or elapsed >= budget_s or state["val_time"] > valid_fraction * elapsed:
                return
            tv = time.perf_counter()
            mrr = our_eval_of_pykeen(model, ds, valid_tr)["realistic"]["mrr"]
            model.train()
            state["val_time"] += time.perf_counter() - tv
            state["evals"] += 1
            if mrr > state["best"]:
                state["best"] = mrr
                state["best_state"] = copy.deepcopy(model.state_dict())
            log(f"[pykeen] {recipe['model']} epoch {epoch}: loss {epoch_loss:.4f}, valid MRR {mrr:.4f} "
                f"({time.perf_counter() - t0:.0f}s)")

    try:
        loop.train(triples_factory=train_tf, num_epochs=10**9, batch_size=batch_size, use_tqdm=False,
                   callbacks=[Budget()], pin_memory=False, num_workers=0)
    except _BudgetExhausted:
        pass
    train_s = time.perf_counter() - t0
    epochs = state["epochs"] + min(1.0, state["batches"] / n_batches)
    if state["best_state"] is not None:
        # a partial last epoch is also validated once, outside the budget, so it is not discarded unseen
        if valid_tr is not None and state["batches"]:
            mrr = our_eval_of_pykeen(model, ds, valid_tr)["realistic"]["mrr"]
            if mrr > state["best"]:
                state["best"], state["best_state"] = mrr, None
        if state["best_state"] is not None:
            model.load_state_dict(state["best_state"])
    model.eval()
    return {"model": model, "epochs": round(epochs, 2), "train_s": round(train_s, 1), "valid_evals": state["evals"],
            "best_valid_mrr": None if state["best"] < 0 else state["best"],
            "num_parameters": int(sum(p.numel() for p in model.parameters()))}
