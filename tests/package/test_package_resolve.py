"""The config resolver (kgc.resolve): the declared layer order, the CPU-budget layer choice, the
pinned checkpoint architecture, and that every caller (the CLIs, their resume, kgc hpo and
benchmarks/train_throughput.py) resolves the same config for the same inputs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from kgc.config import to_dict
from kgc.resolve import (BUDGET_DIR, FINETUNE_CONFIG_DIR, FINETUNE_ORDER, FINETUNE_TUNABLE_MODEL_KEYS,
                         PRETRAIN_CONFIG_DIR, PRETRAIN_ORDER, RESUME_ORDER, Layer, build, checkpoint_layer,
                         finetune_base_layers, finetune_layers, preset_layer, resolve, resume_layers, size_defaults,
                         uses_budget_recipe)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def nations():
    from kgc.data import load_dataset

    return load_dataset("nations")


def _ft_args(*argv):
    from kgc.finetune import build_parser

    return build_parser().parse_args(list(argv))


def _pt_args(*argv):
    from kgc.pretrain import build_parser

    return build_parser().parse_args(list(argv))


# ---- the order ---------------------------------------------------------------------------------------
def _every_layer(key: str, order) -> list[Layer]:
    """One layer per declared name, each setting ``key`` to its position (mappings and overrides)."""
    out = []
    section, leaf = key.split(".")
    for i, name in enumerate(order):
        if name in ("--set", "flags", "signals"):
            out.append(Layer(name, overrides=(f"{key}={i}",)))
        else:
            out.append(Layer(name, {section: {leaf: i}}, source=f"src{i}"))
    return out


@pytest.mark.parametrize("order", [FINETUNE_ORDER, PRETRAIN_ORDER, RESUME_ORDER], ids=["finetune", "pretrain", "resume"])
def test_each_layer_beats_the_previous_one(order):
    layers = _every_layer("trainer.max_steps", order)
    for n in range(1, len(layers) + 1):
        res = resolve(layers[:n], order)
        assert res.data["trainer"]["max_steps"] == n - 1, order[n - 1]
        assert res.origin["trainer.max_steps"] == layers[n - 1].label


def test_declared_orders():
    assert FINETUNE_ORDER == ("defaults", "size defaults", "dataset file", "model", "--config", "--set", "flags")
    assert PRETRAIN_ORDER == ("defaults", "dataset file", "model", "--config", "--set", "flags", "signals")
    assert RESUME_ORDER == ("run config", "--set", "flags")


def test_layers_out_of_order_or_unknown_are_refused():
    with pytest.raises(ValueError, match="declared order"):
        resolve([Layer("--config", {"seed": 1}), Layer("defaults", {"seed": 0})], FINETUNE_ORDER)
    with pytest.raises(ValueError, match="not in the declared order"):
        resolve([Layer("signals", overrides=("seed=1",))], FINETUNE_ORDER)
    # a name may repeat (two dataset files: the CPU-budget default, then the dataset's own)
    res = resolve([Layer("dataset file", {"seed": 1}), Layer("dataset file", {"seed": 2})], FINETUNE_ORDER)
    assert res.data["seed"] == 2


def test_merging_is_deep_and_origin_names_the_leaves():
    res = resolve([Layer("defaults", {"optim": {"lr": 1.0, "weight_decay": 0.5}}, source="d.yaml"),
                   Layer("--config", {"optim": {"lr": 2.0}}, source="c.yaml"),
                   Layer("--set", overrides=("model.context={budget: 3}",))], FINETUNE_ORDER)
    assert res.data["optim"] == {"lr": 2.0, "weight_decay": 0.5}
    assert res.origin["optim.lr"] == "--config (c.yaml)" and res.origin["optim.weight_decay"] == "defaults (d.yaml)"
    assert res.origin["model.context.budget"] == "--set"
    assert "optim.lr: 2.0  <- --config (c.yaml)" in res.explain()


def test_the_cli_layers_in_order_on_a_real_dataset(nations, tmp_path):
    """--config beats the dataset file and size defaults, --set beats --config, a flag beats --set."""
    from kgc.finetune import resolve_config

    user = tmp_path / "user.yaml"
    user.write_text("trainer:\n  max_steps: 5\n  val_every: 9\noptim:\n  lr: 0.5\n")
    budget = ("--max-time", "5m", "--accelerator", "cpu")
    full = resolve_config(_ft_args("--dataset", "nations", *budget, "--config", str(user),
                                   "--set", "trainer.max_steps=6", "--set", "optim.lr=0.25", "--max-steps", "7"), nations)
    assert (full.trainer.max_steps, full.optim.lr, full.trainer.val_every) == (7, 0.25, 9)
    no_flag = resolve_config(_ft_args("--dataset", "nations", *budget, "--config", str(user),
                                      "--set", "trainer.max_steps=6"), nations)
    assert no_flag.trainer.max_steps == 6 and no_flag.optim.lr == 0.5
    no_set = resolve_config(_ft_args("--dataset", "nations", *budget, "--config", str(user)), nations)
    assert no_set.trainer.max_steps == 5
    recipe = resolve_config(_ft_args("--dataset", "nations", *budget), nations)
    import yaml

    budget_file = yaml.safe_load((BUDGET_DIR / "default.yaml").read_text())
    assert recipe.trainer.max_steps == budget_file["trainer"]["max_steps"]  # the dataset file beats the size defaults
    assert recipe.trainer.max_time == "5m"  # --max-time is a flag layer too
    plain = resolve_config(_ft_args("--dataset", "nations"), nations)  # no dataset file for Nations: size defaults
    sizes = size_defaults(nations)
    assert plain.trainer.max_steps == sizes["trainer"]["max_steps"] and plain.trainer.batch_size == sizes["trainer"]["batch_size"]
    assert plain.dataset == "nations" and plain.model.dim == 128  # configs/finetune/default.yaml


# ---- the CPU-budget layer choice ---------------------------------------------------------------------------
def test_budget_recipe_choice(monkeypatch, nations):
    from kgc.resolve import namespace

    assert not uses_budget_recipe(namespace())  # no --max-time: the GPU-sized config, on any machine
    assert uses_budget_recipe(namespace(max_time="5m", accelerator="cpu"))
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not uses_budget_recipe(namespace(max_time="5m"))  # a GPU: the per-dataset config, even with a budget
    assert uses_budget_recipe(namespace(max_time="5m", accelerator="cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert uses_budget_recipe(namespace(max_time="5m"))

    def files(ds, **kw):
        return [layer.source for layer in finetune_base_layers(ds, ds.name, namespace(**kw)) if layer.name == "dataset file"]

    assert files(nations, max_time="5m") == [str(BUDGET_DIR / "default.yaml")]
    assert files(nations) == []
    names = [layer.name for layer in finetune_base_layers(nations, "nations", namespace(max_time="5m"))]
    assert names == ["defaults", "size defaults", "dataset file"]


def test_budget_recipe_layers_of_a_dataset_with_its_own_files():
    from kgc.data import load_dataset
    from kgc.resolve import namespace

    umls = load_dataset("umls")
    layers = finetune_base_layers(umls, "umls", namespace(max_time="5m", accelerator="cpu"))
    assert [la.source for la in layers if la.name == "dataset file"] == [str(BUDGET_DIR / "default.yaml"),
                                                                          str(BUDGET_DIR / "umls.yaml")]
    layers = finetune_base_layers(umls, "umls", namespace())
    assert [la.source for la in layers if la.name == "dataset file"] == [str(FINETUNE_CONFIG_DIR / "umls.yaml")]


# ---- the checkpoint architecture ---------------------------------------------------------------------------
def _pretrained_model() -> dict:
    from kgc.models.config import ModelConfig

    return to_dict(ModelConfig(dim=32, layers=1, heads=2, dropout=0.1))


def test_checkpoint_architecture_is_pinned_except_the_tunable_keys(nations, tmp_path):
    from kgc.finetune import FinetuneConfig

    user = tmp_path / "user.yaml"
    user.write_text("model:\n  layers: 3\n  attn_dropout: 0.05\n")
    args = _ft_args("--dataset", "nations", "--config", str(user), "--set", "model.dim=48",
                    "--set", "model.dropout=0.3", "--set", "model.direct=distmult")
    lines: list[str] = []
    cfg, res = build(FinetuneConfig, finetune_layers(nations, "nations", args, checkpoint_layer(_pretrained_model(), "x.ckpt")),
                     FINETUNE_ORDER, where="test", log=lines.append)
    assert (cfg.model.dim, cfg.model.layers, cfg.model.heads) == (32, 1, 2)  # the checkpoint's shape
    assert (cfg.model.dropout, cfg.model.attn_dropout, cfg.model.direct) == (0.3, 0.05, "distmult")  # tunable
    assert res.origin["model.dim"] == res.origin["model.layers"] == "model (checkpoint x.ckpt)"
    assert res.origin["model.dropout"] == "--set" and res.origin["model.attn_dropout"] == f"--config ({user})"
    assert res.data["model"]["dim"] == 32
    (line,) = lines
    assert line.startswith("keeping the pretrained architecture: ignored model.dim, model.layers (only ")
    assert ", ".join(FINETUNE_TUNABLE_MODEL_KEYS) in line
    # nothing asked to change the shape: no message
    lines.clear()
    build(FinetuneConfig, finetune_layers(nations, "nations", _ft_args("--dataset", "nations"),
                                          checkpoint_layer(_pretrained_model(), "x.ckpt")),
          FINETUNE_ORDER, where="test", log=lines.append)
    assert lines == []


def test_a_model_preset_replaces_the_section_and_later_layers_change_it(nations):
    from kgc.finetune import resolve_config
    from kgc.models.config import load_model_config

    preset = load_model_config("transformer-tiny")
    cfg = resolve_config(_ft_args("--dataset", "nations", "--from-scratch", "--set", "model.dim=48"), nations,
                         model=preset_layer("transformer-tiny"))
    assert cfg.model.dim == 48 and cfg.model.layers == preset.layers and cfg.model.heads == preset.heads


def test_the_finetune_cli_pins_the_checkpoint_it_starts_from(tmp_path, capsys):
    """End to end: ``kgc finetune --init`` keeps the checkpoint's shape and prints what it ignored."""
    import yaml

    from kgc.finetune import main as finetune_main
    from kgc.pretrain import main as pretrain_main

    pt = tmp_path / "pt"
    assert pretrain_main(["--dataset", "nations", "--signals", "lcc", "--model", "transformer-tiny", "--max-steps", "2",
                          "--out", str(pt), "--no-progress", "--set", "trainer.batch_size=16"]) == 0
    ft = tmp_path / "ft"
    capsys.readouterr()
    assert finetune_main(["--dataset", "nations", "--init", str(pt), "--max-steps", "2", "--out", str(ft),
                          "--no-progress", "--set", "model.dim=48", "--set", "model.dropout=0.25",
                          "--set", "trainer.val_every=2", "--set", "eval.val_max_queries=20"]) == 0
    out = capsys.readouterr().out
    assert "keeping the pretrained architecture: ignored model.dim (only dropout" in out
    cfg = yaml.safe_load((ft / "config.yaml").read_text())
    pre = yaml.safe_load((pt / "config.yaml").read_text())
    assert cfg["model"]["dim"] == pre["model"]["dim"] != 48 and cfg["model"]["dropout"] == 0.25


# ---- pretraining and resume ------------------------------------------------------------------------------
def test_pretrain_order_preset_keeps_max_len_and_signals_come_last():
    layers = [Layer("defaults", {"model": {"max_len": 50, "dim": 8, "heads": 2}}),
              Layer("model", {"model": {"max_len": 10, "dim": 16}}, replace=("model",), keep=("model.max_len",)),
              Layer("--set", overrides=("signals.names=[khop]",)),
              Layer("signals", overrides=("signals.names=[lcc]",))]
    res = resolve(layers, PRETRAIN_ORDER)
    assert res.data["model"] == {"max_len": 50, "dim": 16}  # replaced (heads gone), max_len kept
    assert res.origin["model.max_len"] == "defaults" and res.data["signals"]["names"] == ["lcc"]

    from kgc.models.config import load_model_config
    from kgc.pretrain import resolve_config

    import yaml

    ds_file = yaml.safe_load((PRETRAIN_CONFIG_DIR / "wn18rr.yaml").read_text())
    cfg = resolve_config(_pt_args("--dataset", "wn18rr", "--model", "hybrid-tiny", "--signals", "lcc, khop",
                                  "--set", "signals.names=[random_walk]", "--seed", "4"))
    preset = load_model_config("hybrid-tiny")
    assert cfg.model.name == preset.name and cfg.model.dim == preset.dim
    assert cfg.model.max_len == ds_file["model"]["max_len"]
    assert cfg.signals.names == ["lcc", "khop"] and cfg.seed == 4 and cfg.dataset == "wn18rr"


def test_resume_layers():
    args = _ft_args("--resume", "somewhere", "--set", "trainer.max_steps=9", "--set", "seed=3", "--seed", "5")
    res = resolve(resume_layers({"seed": 1, "trainer": {"max_steps": 4, "val_every": 2}}, args, source="config.yaml"),
                  RESUME_ORDER)
    assert res.data == {"seed": 5, "trainer": {"max_steps": 9, "val_every": 2}}
    assert res.origin["trainer.val_every"] == "run config (config.yaml)" and res.origin["seed"] == "flags"


# ---- every caller resolves the same config ---------------------------------------------------------------
def _load_benchmark(monkeypatch, name: str):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts benchmarks/ on its path: undone after the test
    had_common = "_common" in sys.modules
    spec = importlib.util.spec_from_file_location(f"kgc_bench_{name}_resolve", REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not had_common:  # the script's helper module stays the script's (it holds its own reference)
        sys.modules.pop("_common", None)
    return mod


@pytest.mark.parametrize("cpu_budget", [False, True], ids=["gpu-sized", "cpu-budget"])
def test_train_throughput_measures_the_config_the_cli_runs(monkeypatch, nations, cpu_budget):
    from kgc.finetune import resolve_config

    bench = _load_benchmark(monkeypatch, "train_throughput")
    sets = ["model.dim=32", "model.heads=2"]
    got = bench.kgc_config(nations, sets, cpu_budget=cpu_budget, dataset="nations")
    argv = ["--dataset", "nations", "--from-scratch", "--set", "model.dim=32", "--set", "model.heads=2"]
    if cpu_budget:
        argv += ["--max-time", bench.CPU_BUDGET_MAX_TIME, "--accelerator", "cpu"]
    want = resolve_config(_ft_args(*argv), nations)
    assert to_dict(got) == to_dict(want)
    if not cpu_budget:  # the size defaults are in (Nations has no dataset file): the batch the CLI trains with
        assert got.trainer.batch_size == size_defaults(nations)["trainer"]["batch_size"]
    assert to_dict(bench.kgc_config(nations, sets, cpu_budget, batch_size=64, dataset="nations"))["trainer"]["batch_size"] == 64


def test_hpo_trials_resolve_what_their_finetuning_run_resolves(tmp_path, nations):
    from kgc import hpo
    from kgc.finetune import resolve_config

    space = tmp_path / "space.yaml"
    space.write_text("optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\nmodel.dropout: [0.0, 0.2]\n")
    user = tmp_path / "user.yaml"
    user.write_text("model:\n  dim: 32\n  heads: 2\noptim:\n  weight_decay: 0.0\n")
    setup = hpo.prepare("nations", space, config=user, overrides=["trainer.val_every=7"], max_steps=11, budget="2m",
                        seed=3)
    values = {"optim.lr": 1.0e-3, "model.dropout": 0.2}
    trial = hpo._resolve(setup, hpo._base_config(setup), values)
    # the run a trial starts: run_finetuning(config=<--config with the values>, overrides, max_steps, max_time, seed)
    args = _ft_args("--dataset", "nations", "--from-scratch", "--set", "trainer.val_every=7", "--max-steps", "11",
                    "--max-time", "2m", "--seed", "3")
    args.config = hpo._trial_config(setup, values)
    assert to_dict(trial) == to_dict(resolve_config(args, nations))
    assert (trial.optim.lr, trial.model.dropout, trial.model.dim, trial.trainer.max_steps) == (1.0e-3, 0.2, 32, 11)
