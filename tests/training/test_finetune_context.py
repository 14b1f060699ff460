"""Contextual fine-tuning end to end: CPU-budget recipes, custom and n-ary folders with context,
prediction with context, and the named errors of bad context settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import kgc
from kgc.config import ConfigError
from kgc.finetune import BUDGET_DIR, CONFIG_DIR, dataset_layers, main as finetune_main
from kgc.pretrain import main as pretrain_main

from training_helpers import TINY_MODEL


TINY_CONTEXT = TINY_MODEL + """  direct: complex
  context:
    budget: 6
targets: all
optim:
  lr: 3.0e-3
  embedding_lr: 1.0e-2
  warmup_steps: 5
trainer:
  max_steps: 30
  batch_size: 64
  val_every: 15
  ckpt_every: 15
  log_every: 5
  progress_bar: false
eval:
  val_max_queries: 200
"""


def test_budget_recipe_layers():
    assert dataset_layers("wn18rr", budget_recipe=True) == [BUDGET_DIR / "default.yaml", BUDGET_DIR / "wn18rr.yaml"]
    assert dataset_layers("nations", budget_recipe=True) == [BUDGET_DIR / "default.yaml"]
    assert dataset_layers("my-folder", budget_recipe=True) == [BUDGET_DIR / "default.yaml"]
    assert dataset_layers("jf17k", budget_recipe=False) == [CONFIG_DIR / "jf17k.yaml"]
    assert dataset_layers("nations", budget_recipe=False) == []


def test_max_time_on_cpu_trains_the_budget_recipe(tmp_path):
    out = tmp_path / "nations-budget"
    assert finetune_main(["--dataset", "nations", "--from-scratch", "--max-time", "20s", "--out", str(out),
                          "--set", "trainer.max_steps=40", "--set", "trainer.val_every=20", "--no-progress",
                          "--set", "model.dim=32", "--set", "model.heads=2"]) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    recipe = yaml.safe_load((BUDGET_DIR / "default.yaml").read_text())
    assert cfg["model"]["direct"] == recipe["model"]["direct"] == "complex"
    assert cfg["model"]["context"]["budget"] == recipe["model"]["context"]["budget"] > 0
    assert cfg["optim"]["horizon"] == "time" and cfg["optim"]["embedding_lr"] == recipe["optim"]["embedding_lr"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["finetune_steps"] == 40 and m["metrics"]["mrr"] > 0.2  # Nations: 14 entities, chance ~0.25 filtered


def _write_folder(dst: Path, src: Path, n_train: int, n_eval: int) -> Path:
    dst.mkdir()
    for name, n in (("train.txt", n_train), ("valid.txt", n_eval), ("test.txt", n_eval)):
        lines = (src / name).read_text().splitlines()[:n]
        (dst / name).write_text("\n".join(lines) + "\n")
    return dst


@pytest.fixture(scope="module")
def nary_run(tmp_path_factory, mirror):
    """A real JF17K slice (from the dataset mirror) as a custom n-ary folder, fine-tuned with context."""
    root = tmp_path_factory.mktemp("nary")
    folder = _write_folder(root / "jf17k-slice", mirror / "JF17K-HypE", 3000, 300)
    cfg = root / "ctx.yaml"
    cfg.write_text(TINY_CONTEXT.replace("max_len: 96", "max_len: 96\n  num_roles: 8"))
    out = root / "run"
    assert finetune_main(["--dataset", str(folder), "--from-scratch", "--config", str(cfg), "--out", str(out)]) == 0
    return folder, out


def test_nary_custom_folder_with_context(nary_run):
    folder, out = nary_run
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["model"]["context"]["budget"] == 6
    # every position of every test fact is one query: count them from the raw test file
    from kgc.data import load_dataset

    ds = load_dataset(str(folder))
    arity = (ds.splits["test"][:, 1:] >= 0).sum(1)
    assert m["num_queries"] == int(arity.sum())
    by_arity = {str(k): int((arity == k).sum()) * k for k in arity.unique().tolist()}
    assert {k: v["count"] for k, v in m["breakdowns"]["arity"].items()} == by_arity
    assert len(by_arity) >= 2  # the slice really mixes arities
    # kgc.evaluate on the chosen checkpoint (a fresh process state: context rebuilt) reproduces the metrics
    from kgc.evaluate import main as evaluate_main

    again = folder.parent / "again.json"
    assert evaluate_main(["--checkpoint", m["checkpoint"], "--out", str(again)]) == 0
    assert json.loads(again.read_text())["metrics"] == m["metrics"]


def test_nary_predict_with_context_matches_evaluation(nary_run):
    folder, out = nary_run
    m = json.loads((out / "metrics.json").read_text())
    ckpt = m["checkpoint"]
    from kgc.data import load_dataset
    from kgc.evaluation import LinkPredictionQueries
    from kgc.evaluation.evaluator import ModelScorer
    from kgc.training.restore import load_model

    ds = load_dataset(str(folder))
    fact = ds.splits["test"][0]
    rel = ds.relation_names[int(fact[0])]
    ents = {p: ds.entity_names[int(e)] for p, e in enumerate(fact[1:].tolist()) if e >= 0}
    target = 1
    given = {p: n for p, n in ents.items() if p != target}
    top = kgc.predict(ckpt, relation=rel, entities=given, position=target, k=ds.num_entities)
    again = kgc.predict(ckpt, relation=rel, entities=given, position=target, k=ds.num_entities)
    assert top == again  # deterministic context and scores
    # the same query through the evaluator's scorer gives the same scores
    model, vocab, _ = load_model(ckpt)
    q = LinkPredictionQueries.from_dataset(ds, "test")
    q = q[(q.fact_index == 0) & (q.direction == target)]
    with torch.no_grad():
        scores = ModelScorer(model, vocab).with_context_for(ds).scores(q)[0]
    by_id = {p["id"]: p["score"] for p in top}
    assert len(by_id) == ds.num_entities
    torch.testing.assert_close(torch.tensor([by_id[i] for i in range(ds.num_entities)]), scores.float())


def test_context_budget_beyond_max_len_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.context\.budget=200 .*model\.max_len=96"):
        finetune_main(["--dataset", "nations", "--from-scratch", "--set", "model.context.budget=200",
                       "--set", "model.max_len=96", "--out", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()


def test_unknown_context_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.context.*budgett"):
        finetune_main(["--dataset", "nations", "--from-scratch", "--set", "model.context.budgett=4",
                       "--out", str(tmp_path / "r")])


def test_context_that_a_checkpoint_cannot_hold_is_named(tmp_path):
    runs = tmp_path / "runs"
    pcfg = tmp_path / "pt.yaml"
    pcfg.write_text(TINY_MODEL.replace("max_len: 96", "max_len: 24") + """signals:
  num_examples: 100
trainer:
  max_steps: 2
  batch_size: 16
  progress_bar: false
""")
    assert pretrain_main(["--dataset", "nations", "--signals", "lcc", "--config", str(pcfg), "--runs-root", str(runs)]) == 0
    with pytest.raises(ConfigError, match=r"checkpoint .*model\.context\.budget=30 .*model\.max_len=24"):
        finetune_main(["--dataset", "nations", "--runs-root", str(runs), "--set", "model.context.budget=30",
                       "--out", str(tmp_path / "ft")])
    # a budget that fits is accepted: the pointer starts fresh, the encoder comes from the checkpoint
    assert finetune_main(["--dataset", "nations", "--runs-root", str(runs), "--set", "model.context.budget=4",
                          "--set", "model.direct=complex", "--set", "trainer.max_steps=3", "--no-progress",
                          "--out", str(tmp_path / "ft2")]) == 0
