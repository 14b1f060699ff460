"""The Python API (kgc.run_finetuning / kgc.run_pretraining) runs the CLIs' code path: same
config resolution, same errors, same metrics for the same seed."""

from __future__ import annotations

import json

import pytest

import kgc
from kgc.finetune import FinetuneResult, main as finetune_main
from kgc.pretrain import PretrainResult
from training_helpers import TINY_FINETUNE, TINY_PRETRAIN


@pytest.fixture()
def cfgs(tmp_path):
    ft = tmp_path / "ft.yaml"
    ft.write_text(TINY_FINETUNE)
    pt = tmp_path / "pt.yaml"
    pt.write_text(TINY_PRETRAIN)
    return ft, pt


def test_api_and_cli_give_the_same_metrics(mirror, tmp_path, cfgs, capsys):
    ft_cfg, _ = cfgs
    args = ["--dataset", "nations", "--from-scratch", "--config", str(ft_cfg), "--max-steps", "20", "--seed", "3",
            "--set", "trainer.deterministic=true"]
    assert finetune_main([*args, "--out", str(tmp_path / "cli")]) == 0
    cli = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    capsys.readouterr()
    res = kgc.run_finetuning("nations", from_scratch=True, config=ft_cfg, max_steps=20, seed=3,
                             overrides={"trainer.deterministic": True}, out=tmp_path / "api", quiet=True)
    assert isinstance(res, FinetuneResult)
    assert res.run_dir == tmp_path / "api"
    assert res.metrics == json.loads((tmp_path / "api" / "metrics.json").read_text())
    assert res.checkpoint.is_file() and res.checkpoint.parent == tmp_path / "api" / "checkpoints"
    assert res.metrics["metrics"] == cli["metrics"]  # bit-equal: one code path
    assert res.mrr == cli["metrics"]["mrr"] and res.hits(10) == cli["metrics"]["hits@10"]
    assert res.valid_mrr == cli["valid"]["metrics"]["mrr"]
    assert res.metrics["finetune_steps"] == 20
    # quiet=True: only the result lines
    kgc_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[kgc]")]
    assert len(kgc_lines) == 2
    assert kgc_lines[0].startswith("[kgc] nations/test (realistic, filtered") and "metrics written" in kgc_lines[1]


def test_api_config_mapping_and_pretrain_then_finetune(mirror, tmp_path):
    pt = kgc.run_pretraining("nations", signals=["lcc", "khop"], config=TINY_PRETRAIN_MAPPING, max_steps=4,
                             runs_root=tmp_path, quiet=True, logger=["csv"])
    assert isinstance(pt, PretrainResult)
    assert (pt.run_dir / "logs" / "csv" / "metrics.csv").is_file() and not (pt.run_dir / "logs" / "tb").exists()
    assert pt.steps == 4 and pt.signals == ["lcc", "khop"] and pt.checkpoint.is_file()
    ft = kgc.run_finetuning("nations", init=pt.checkpoint, max_steps=6, runs_root=tmp_path, quiet=True,
                            overrides=["trainer.val_every=3", "eval.val_max_queries=100"])
    assert ft.metrics["init_checkpoint"] == str(pt.checkpoint)
    assert ft.metrics["pretrain_steps"] == 4 and ft.metrics["signals"] == ["lcc", "khop"]
    # the newest pretraining run is found as the CLI finds it (no init given)
    again = kgc.run_finetuning("nations", max_steps=2, runs_root=tmp_path, quiet=True, skip_test=True,
                               overrides={"trainer.val_every": 0})
    assert again.metrics["init_checkpoint"] == str(pt.checkpoint)
    assert again.run_dir != ft.run_dir  # two runs in the same second get two folders
    # --skip-test: validation only; the leaderboard does not take it for a test result
    assert again.mrr is None and again.hits(10) is None and not again.test_evaluated
    assert again.valid_mrr is not None and "metrics" not in again.metrics
    from kgc.reports.collect import collect_runs

    warnings = []
    records = collect_runs(tmp_path, warn=warnings.append)
    assert [r.path for r in records] == [ft.run_dir]
    assert any("test split was not evaluated" in w for w in warnings)


TINY_PRETRAIN_MAPPING = {
    "model": {"name": "transformer", "dim": 32, "layers": 1, "heads": 2, "mlp_ratio": 2.0, "max_len": 96},
    "signals": {"num_examples": 100},
    "trainer": {"batch_size": 16, "val_every": 0, "ckpt_every": 0, "log_every": 1},
}


def test_api_refuses_what_the_cli_refuses(mirror, tmp_path):
    with pytest.raises(kgc.KGCError, match=r"optim: unknown key 'lrr' \(did you mean 'lr'"):
        kgc.run_finetuning("nations", from_scratch=True, overrides={"optim.lrr": 1e-3}, out=tmp_path / "x")
    with pytest.raises(kgc.KGCError, match="config mapping"):
        kgc.run_finetuning("nations", from_scratch=True, config={"trainer": {"max_stepz": 3}}, out=tmp_path / "y")
    with pytest.raises(TypeError, match="unknown argument 'max_step'"):
        kgc.run_finetuning("nations", max_step=3)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
