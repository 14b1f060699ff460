"""Fine-tuning, evaluation and prediction end to end (tiny model, real UMLS and the synthetic KG)."""

from __future__ import annotations

import json

import pytest
import torch

import kgc
from kgc import KGCError
from kgc.finetune import main as finetune_main
from kgc.pretrain import main as pretrain_main

from training_helpers import run_module


@pytest.fixture(scope="module")
def umls_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    cfg = root / "tiny.yaml"
    from training_helpers import TINY_FINETUNE

    cfg.write_text(TINY_FINETUNE)
    out = root / "umls-run"
    assert finetune_main(["--dataset", "umls", "--from-scratch", "--config", str(cfg), "--out", str(out),
                          "--runs-root", str(root)]) == 0
    return out


def test_finetune_writes_metrics(umls_run):
    m = json.loads((umls_run / "metrics.json").read_text())
    for key in ("dataset", "split", "tie_policy", "metrics", "pessimistic", "breakdowns", "checkpoint", "config",
                "seed", "train_wall_time_s", "commit", "hardware", "finetune_steps"):
        assert key in m, key
    assert m["dataset"] == "umls" and m["split"] == "test" and m["tie_policy"] == "realistic"
    assert m["num_queries"] == 2 * 661
    assert 0 < m["metrics"]["mrr"] <= 1 and m["pessimistic"]["mrr"] <= m["metrics"]["mrr"] + 1e-12
    assert set(m["breakdowns"]) >= {"direction", "relation"}
    assert (umls_run / "checkpoints" / "best.ckpt").is_file()
    # a trained model beats chance on UMLS (135 entities: random MRR ~ 0.04)
    assert m["metrics"]["mrr"] > 0.1


def test_evaluate_cli_reproduces_metrics(umls_run, tmp_path):
    m = json.loads((umls_run / "metrics.json").read_text())
    res = run_module("kgc.evaluate", "--checkpoint", m["checkpoint"], "--dataset", "umls", "--json",
                     "--out", str(tmp_path / "m.json"))
    assert res.returncode == 0, res.stderr[-2000:]
    again = json.loads(res.stdout)
    assert again["metrics"]["mrr"] == pytest.approx(m["metrics"]["mrr"], abs=1e-9)
    assert json.loads((tmp_path / "m.json").read_text())["metrics"] == again["metrics"]


def test_predict_api_and_cli(umls_run):
    ckpt = json.loads((umls_run / "metrics.json").read_text())["checkpoint"]
    top = kgc.predict(ckpt, head="virus", relation="causes", k=5)
    assert len(top) == 5 and all({"entity", "id", "score", "known"} <= set(p) for p in top)
    assert [p["score"] for p in top] == sorted((p["score"] for p in top), reverse=True)
    heads = kgc.predict(ckpt, relation="causes", tail="disease_or_syndrome", k=3, filtered=True)
    assert all(not p["known"] for p in heads)
    with pytest.raises(KGCError, match="did you mean 'virus'"):
        kgc.predict(ckpt, head="viruss", relation="causes")
    res = run_module("kgc.predict", "--checkpoint", ckpt, "--head", "virus", "--relation", "cuases")
    assert res.returncode == 2 and "unknown relation 'cuases'" in res.stderr


def test_finetune_starts_from_newest_pretraining_run(tmp_path, tiny_pretrain_cfg, tiny_finetune_cfg):
    runs = tmp_path / "runs"
    assert pretrain_main(["--signals", "lcc,random_walk", "--config", str(tiny_pretrain_cfg), "--runs-root", str(runs),
                          "--max-steps", "5"]) == 0
    (pt,) = list(runs.iterdir())
    out = tmp_path / "ft"
    # a model section/override cannot change the pretrained architecture (dim 48 is ignored, dropout is taken);
    # a vanishing learning rate keeps the fine-tuned weights at the pretrained ones, which shows they were loaded
    assert finetune_main(["--dataset", "synthetic", "--config", str(tiny_finetune_cfg), "--runs-root", str(runs),
                          "--out", str(out), "--max-steps", "3", "--set", "model.dim=48",
                          "--set", "model.dropout=0.2", "--set", "optim.lr=1e-12"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["init_checkpoint"] == str(pt / "checkpoints" / "last.ckpt")
    assert sorted(m["signals"]) == ["lcc", "random_walk"]
    assert m["pretrain_steps"] == 5
    assert m["config"]["model"]["dim"] == 32 and m["config"]["model"]["dropout"] == 0.2
    pre = torch.load(pt / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    post = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert set(pre) == set(post)
    for k in pre:
        assert torch.allclose(pre[k], post[k], atol=1e-6), k
    # another dataset's checkpoint is refused with a clear message
    with pytest.raises(KGCError, match="built for dataset 'synthetic'"):
        finetune_main(["--dataset", "umls", "--init", str(pt / "checkpoints" / "last.ckpt"),
                       "--runs-root", str(runs), "--out", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()
