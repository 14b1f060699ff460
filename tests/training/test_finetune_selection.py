"""Model selection during fine-tuning (real UMLS, tiny model): best.ckpt is the best validation
step, in-training validation ranks equal ``kgc.evaluate``'s, early stopping stops where its rule
says, and KvsAll examples are the distinct train queries with all their train answers."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from kgc.data import load_dataset
from kgc.evaluation.queries import LinkPredictionQueries
from kgc.finetune import main as finetune_main
from kgc.training.lp_data import kvsall_queries

from training_helpers import TINY_FINETUNE


def val_series(run):
    with open(run / "logs" / "csv" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    return [(int(r["step"]), float(r["val/mrr"])) for r in rows if r.get("val/mrr") not in (None, "")]


def finetune(tmp_path, name, *sets):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_FINETUNE)
    out = tmp_path / name
    assert finetune_main(["--dataset", "umls", "--from-scratch", "--config", str(cfg), "--out", str(out),
                          "--runs-root", str(tmp_path / "runs"), "--set", "trainer.val_every=10",
                          "--set", "eval.val_max_queries=null", *[x for s in sets for x in ("--set", s)]]) == 0
    return out


@pytest.fixture(scope="module")
def selected_run(tmp_path_factory):
    # the learning rate warms up over the whole run to 1.0, where AdamW's steps wreck the model: validation
    # MRR rises while the rate is small and falls as it grows, so the best step is not the last one on any
    # machine (a decaying schedule converges, and whether its last step is the best is down to noise)
    return finetune(tmp_path_factory.mktemp("sel"), "run", "trainer.max_steps=80", "patience=0", "optim.lr=1.0",
                    "optim.warmup_steps=80", "optim.schedule=constant")


def test_best_checkpoint_is_the_best_validation_step(selected_run):
    series = val_series(selected_run)  # a validation after global step g is logged at step g - 1
    assert [s for s, _ in series] == [9, 19, 29, 39, 49, 59, 69, 79]
    best_step, best_mrr = max(series, key=lambda x: (x[1], -x[0]))  # the first of equal maxima
    assert best_step != series[-1][0]  # the choice is a real one: the last step is not the best
    ckpt = torch.load(selected_run / "checkpoints" / "best.ckpt", weights_only=True)
    assert ckpt["global_step"] == best_step + 1
    m = json.loads((selected_run / "metrics.json").read_text())
    assert m["checkpoint"].endswith("best.ckpt")
    # in-training validation (full valid split) and the final kgc.evaluate pass on best.ckpt agree
    assert m["valid"]["metrics"]["mrr"] == pytest.approx(best_mrr, abs=1e-6)


def test_in_training_validation_equals_kgc_evaluate_on_the_same_checkpoint(selected_run, tmp_path):
    from kgc.evaluate import main as evaluate_main

    series = dict(val_series(selected_run))
    last = torch.load(selected_run / "checkpoints" / "last.ckpt", weights_only=True)
    out = tmp_path / "valid.json"
    assert evaluate_main(["--checkpoint", str(selected_run / "checkpoints" / "last.ckpt"), "--split", "valid",
                          "--out", str(out)]) == 0
    assert last["global_step"] == 80
    assert json.loads(out.read_text())["metrics"]["mrr"] == pytest.approx(series[79], abs=1e-6)


def test_early_stopping_stops_after_patience_validations_without_improvement(tmp_path):
    """A vanishing learning rate keeps validation MRR constant: the first validation is the best, the
    next ``patience`` do not improve on it, and training stops right there, long before max_steps."""
    out = finetune(tmp_path, "frozen", "trainer.max_steps=400", "patience=2", "optim.lr=1e-12",
                   "optim.warmup_steps=0")
    series = val_series(out)
    assert len(series) == 3, series  # the best, then two without improvement
    assert len({v for _, v in series}) == 1
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 30
    best = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["global_step"] == 10


def test_kvsall_examples_are_distinct_queries_with_all_train_answers():
    ds = load_dataset("umls")
    q = LinkPredictionQueries.from_dataset(ds, "train")
    uniq, (indptr, indices) = kvsall_queries(q, ds.num_entities)
    truth: dict[tuple[int, int], set[int]] = {}
    for r, h, t in ds.splits["train"].tolist():
        truth.setdefault((r, h), set()).add(t)
        truth.setdefault((r + ds.num_relations, t), set()).add(h)
    keys = [(int(lab), int(c)) for lab, c in zip(uniq.label.tolist(), uniq.context[:, 0].tolist())]
    assert len(keys) == len(set(keys)) == len(truth)  # one example per distinct (label, known entity)
    for i, key in enumerate(keys):
        answers = indices[int(indptr[i]):int(indptr[i + 1])].tolist()
        assert len(answers) == len(set(answers)) and set(answers) == truth[key], key
    assert int(indptr[-1]) == len(q) == 2 * len(ds.splits["train"])  # UMLS train has no duplicate facts
