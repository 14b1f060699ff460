"""``kgc hpo`` on real Nations with tiny trials: TPE study in SQLite, a failing trial, resume after a
kill, pruning on validation MRR, best.yaml through ``kgc finetune``, and bad input before any study."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

if os.environ.get("KGC_CI"):
    import optuna  # CI asserts Optuna is installed
else:
    optuna = pytest.importorskip("optuna", reason="optuna is not installed (pip install optuna)")
from optuna.trial import TrialState  # noqa: E402

from kgc.cli import run_cli  # noqa: E402
from kgc.hpo import StudyError, main as hpo_main, prepare, run_hpo  # noqa: E402
from training_helpers import ROOT, run_module  # noqa: E402

TINY = """model:
  name: transformer
  dim: 32
  layers: 1
  heads: 2
  mlp_ratio: 2.0
  dropout: 0.0
  attn_dropout: 0.0
  max_len: 96
optim:
  lr: 3.0e-3
  warmup_steps: 2
trainer:
  batch_size: 128
  val_every: 3
  ckpt_every: 3
  log_every: 3
eval:
  val_max_queries: 200
"""
STEPS = "6"  # per trial: validations at steps 3 and 6

#: 32 heads do not divide dim 16 (a failed trial) but divide 32, so the space itself is valid
SPACE = """optim.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
model.dim: {type: categorical, choices: [16, 32]}
model.heads: [2, 32]
"""


def _files(tmp: Path, space: str = SPACE) -> tuple[Path, Path]:
    (tmp / "space.yaml").write_text(space)
    (tmp / "tiny.yaml").write_text(TINY)
    return tmp / "space.yaml", tmp / "tiny.yaml"


def _load(db: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def _snapshot(t: optuna.trial.FrozenTrial) -> tuple:
    return (t.number, t.state, t.params, t.value, t.user_attrs, t.intermediate_values, t.datetime_start,
            t.datetime_complete)


# ---------------------------------------------------------------------------------------------------------------
# one study of three trials (the second fails), run as --trials 2 and then resumed with --trials 3
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hpo")
    space, cfg = _files(tmp)
    out = tmp / "study"
    argv = ["--dataset", "nations", "--space", str(space), "--config", str(cfg), "--max-steps", STEPS,
            "--study-name", "tiny", "--out", str(out), "--runs-root", str(tmp / "runs"), "--pruner", "none",
            "--enqueue", "optim.lr=3e-3,model.dim=32,model.heads=2",
            "--enqueue", "model.dim=16,model.heads=32",  # the failing trial; its lr is sampled
            "--enqueue", "optim.lr=1e-2,model.dim=16,model.heads=2"]
    assert hpo_main(argv + ["--trials", "2"]) == 0
    db = out / "study.db"
    first = _load(db, "tiny").get_trials()
    assert hpo_main(argv + ["--trials", "3"]) == 0  # the same command again: resumes
    return {"tmp": tmp, "out": out, "db": db, "first": first, "cfg": cfg, "trials": _load(db, "tiny").get_trials()}


def test_first_run_stops_at_two_finished_trials(study):
    first = study["first"]
    assert study["db"].is_file()
    assert [t.state for t in first] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]


def test_resume_runs_only_the_remainder_and_leaves_earlier_trials_alone(study):
    trials = study["trials"]
    assert len(trials) == 3  # re-enqueueing the same params on resume added nothing
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert [_snapshot(t) for t in trials[:2]] == [_snapshot(t) for t in study["first"][:2]]


def test_failed_trial_is_recorded_with_its_reason(study):
    failed = study["trials"][1]
    assert failed.params["model.dim"] == 16 and failed.params["model.heads"] == 32
    assert "divisible by heads" in failed.user_attrs["fail_reason"]
    assert failed.value is None


def test_complete_trials_carry_validation_mrr_and_run_folder(study):
    for t in (study["trials"][0], study["trials"][2]):
        run = Path(t.user_attrs["run_dir"])
        assert run.parent == study["out"] / "trials"
        metrics = json.loads((run / "metrics.json").read_text())
        valid = metrics["valid"]["metrics"]["mrr"]
        assert t.value == pytest.approx(valid) and t.user_attrs["valid_mrr"] == pytest.approx(valid)
        assert 0 < valid <= 1
        # the callback reported the in-training validation MRR at every validation (steps 3 and 6)
        assert sorted(t.intermediate_values) == [3, 6]
        assert metrics["config"]["model"]["dim"] == t.params["model.dim"]
        assert metrics["config"]["optim"]["lr"] == pytest.approx(t.params["optim.lr"])
        assert metrics["finetune_steps"] == int(STEPS)


def test_best_is_chosen_on_validation_mrr(study):
    complete = [t for t in study["trials"] if t.state == TrialState.COMPLETE]
    valid = {t.number: json.loads((Path(t.user_attrs["run_dir"]) / "metrics.json").read_text())["valid"]["metrics"]["mrr"]
             for t in complete}
    best = _load(study["db"], "tiny").best_trial
    assert best.number == max(valid, key=valid.get)
    text = (study["out"] / "best.yaml").read_text()
    assert f"best trial {best.number} " in text


def test_best_yaml_is_accepted_by_finetune_and_reproduces_the_config(study, tmp_path):
    from kgc.finetune import main as finetune_main

    best = _load(study["db"], "tiny").best_trial
    best_yaml = study["out"] / "best.yaml"
    loaded = yaml.safe_load(best_yaml.read_text())
    assert "dataset" not in loaded and loaded["model"]["heads"] == best.params["model.heads"]
    run = tmp_path / "again"
    assert finetune_main(["--dataset", "nations", "--from-scratch", "--config", str(best_yaml), "--out", str(run),
                          "--runs-root", str(tmp_path), "--max-steps", "2", "--no-progress"]) == 0
    again = yaml.safe_load((run / "config.yaml").read_text())
    trial_cfg = yaml.safe_load((Path(best.user_attrs["run_dir"]) / "config.yaml").read_text())
    again["trainer"].pop("max_steps"), trial_cfg["trainer"].pop("max_steps")
    assert again == trial_cfg


def test_table_and_csv(study, capsys):
    md = (study["out"] / "trials.md").read_text()
    assert "| trial | state | optim.lr | model.dim | model.heads | valid MRR |" in md
    assert md.count("| COMPLETE |") == 2 and md.count("| FAIL |") == 1 and "divisible by heads" in md
    rows = (study["out"] / "trials.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("trial,state,optim.lr,model.dim,model.heads,valid MRR")
    assert rows[2].split(",")[1] == "FAIL"
    # each trial's own output (with its test MRR) is in the trial log, not on the terminal
    assert "metrics written to" in (study["out"] / "trials" / "trial-0000.log").read_text()


# ---------------------------------------------------------------------------------------------------------------
# a killed study resumes
# ---------------------------------------------------------------------------------------------------------------
HOLDER = """
import sys, time
import optuna
from kgc.hpo import study_lock
db, name = sys.argv[1], sys.argv[2]
with study_lock(__import__("pathlib").Path(db + ".lock"), name):
    study = optuna.load_study(study_name=name, storage="sqlite:///" + db)
    trial = study.ask()                      # the trial a killed kgc hpo leaves RUNNING
    trial.suggest_float("optim.lr", 1.0e-3, 1.0e-2, log=True)
    print("running", flush=True)
    time.sleep(600)
"""


def test_killed_study_resumes(tmp_path):
    space, cfg = _files(tmp_path, "optim.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n")
    out = tmp_path / "study"
    kw = dict(config=cfg, max_steps=3, study_name="killed", out=out, pruner="none", quiet=True)
    run_hpo("nations", space, trials=1, **kw)
    db = out / "study.db"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), "killed"], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "running"
        with pytest.raises(StudyError, match="being run by another process"):
            run_hpo("nations", space, trials=3, **kw)
        assert [t.state for t in _load(db, "killed").get_trials()] == [TrialState.COMPLETE, TrialState.RUNNING]
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    res = run_hpo("nations", space, trials=3, **kw)
    trials = res.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert "interrupted" in trials[1].user_attrs["fail_reason"]
    # the resumed sampler does not replay the first run's draws
    assert trials[2].params["optim.lr"] != trials[0].params["optim.lr"]
    # resuming with other settings is refused and leaves the study as it is
    with pytest.raises(StudyError, match="--max-steps"):
        run_hpo("nations", space, trials=4, **{**kw, "max_steps": 4})
    assert len(_load(db, "killed").get_trials()) == 3


# ---------------------------------------------------------------------------------------------------------------
# pruning and divergence
# ---------------------------------------------------------------------------------------------------------------
def test_callback_reports_and_prunes(tmp_path):
    space, cfg = _files(tmp_path, "optim.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n")
    # a threshold no MRR reaches: every reported trial is pruned at its first validation
    res = run_hpo("nations", space, trials=1, config=cfg, max_steps=int(STEPS), out=tmp_path / "s",
                  pruner=optuna.pruners.ThresholdPruner(lower=1.1), quiet=True)
    (t,) = res.study.get_trials()
    assert t.state == TrialState.PRUNED
    assert list(t.intermediate_values) == [3] and t.user_attrs["pruned_at_step"] == 3
    assert 0 < t.user_attrs["valid_mrr"] == t.intermediate_values[3] <= 1
    assert res.best_trial is None and not (tmp_path / "s" / "best.yaml").exists()


def test_nan_loss_fails_the_trial_and_the_study_goes_on(tmp_path):
    space, cfg = _files(tmp_path, "optim.lr: [1.0e+30, 3.0e-3]\n")
    res = run_hpo("nations", space, trials=2, config=cfg, max_steps=int(STEPS), out=tmp_path / "s", pruner="none",
                  overrides=["optim.warmup_steps=0"], enqueue=["optim.lr=1e30", "optim.lr=3e-3"], quiet=True)
    diverged, ok = res.study.get_trials()
    assert diverged.state == TrialState.FAIL and diverged.params["optim.lr"] == 1e30
    assert "NonFiniteError: training loss is nan" in diverged.user_attrs["fail_reason"]
    assert ok.state == TrialState.COMPLETE and math.isfinite(ok.value)
    assert res.best_trial.number == ok.number


def test_example_space_is_valid_for_nations():
    setup = prepare("nations", "nations", max_steps=10)
    assert {"optim.lr", "model.dropout", "trainer.batch_size"} <= set(setup.space.keys)


# ---------------------------------------------------------------------------------------------------------------
# bad input: one line, exit 2, no study
# ---------------------------------------------------------------------------------------------------------------
BAD = [
    ("optim.lrr: {type: float, low: 1.0e-4, high: 1.0e-2}", [], "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
    ("optim.lr: {type: float, low: 1.0e-2, high: 1.0e-4}", [], "optim.lr: low (0.01) must be below high (0.0001)"),
    ("model.layers: {type: int, low: 2, high: 2}", [], "model.layers: low (2) must be below high (2)"),
    ("optim.lr: {type: float, low: 0.0, high: 1.0e-2, log: true}", [], "optim.lr: log: true needs low > 0"),
    ("model.heads: {type: categorical, choices: []}", [], "model.heads: choices must be a non-empty list"),
    ("optim.lr: {type: float, lo: 1.0e-4, high: 1.0e-2}", [], "unknown field 'lo' (did you mean 'low'?)"),
    ("optim.lr: {type: flaot, low: 1.0e-4, high: 1.0e-2}", [], "unknown type 'flaot' (did you mean 'float'?)"),
    ("model.layers: {type: float, low: 1, high: 3}", [], "model.layers: type: float does not fit the config field"),
    ("model.name: [transformer, mamba]", [], "model.name: choice 'mamba' does not fit the config field"),
    ("model: {type: int, low: 1, high: 2}", [], "model is a config section"),
    ("dataset: [nations, umls]", [], "dataset cannot be searched"),
    ("model.dropout: {type: float, low: 0.0, high: 1.5}", [], "model.dropout: high=1.5 gives no valid fine-tuning config"),
    ("model.heads: [2, 3]", [], "model.heads: choice 3 gives no valid fine-tuning config"),  # dim fixed at 32
    ("model.dim: [16, 32]\nmodel.heads: [2, 3]", [], "model.heads: choice 3 gives no valid fine-tuning config"),
    ("optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2}", ["--set", "optim.lr=1e-3"], "optim.lr is searched, but --set"),
    ("optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2}", ["--budget", "5x"], "--budget"),
    ("optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2}", ["--enqueue", "optim.lr=0.5"], "--enqueue: optim.lr=0.5 is outside"),
    ("optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2}", ["--storage", "no url"], "--storage 'no url': not a database URL"),
    ("[1, 2]", [], "top level must be a mapping"),
]


@pytest.mark.parametrize("space,extra,message", BAD, ids=[b[2][:40] for b in BAD])
def test_bad_input_is_one_line_and_leaves_no_study(tmp_path, capsys, space, extra, message):
    space_file, cfg = _files(tmp_path, space + "\n")
    out = tmp_path / "study"
    with pytest.raises(SystemExit) as exc:
        run_cli(hpo_main, ["--dataset", "nations", "--space", str(space_file), "--config", str(cfg), "--trials", "2",
                           "--max-steps", "5", "--out", str(out), "--runs-root", str(tmp_path / "runs"), *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err
    if not extra or extra[0] == "--set":  # a problem of the space file: the message names it
        assert str(space_file) in err
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_module_entry_point_refuses_bad_space(tmp_path):
    space_file, _ = _files(tmp_path, "optim.lrr: {type: float, low: 1.0e-4, high: 1.0e-2}\n")
    res = run_module("kgc.hpo", "--dataset", "nations", "--space", str(space_file), "--runs-root", str(tmp_path / "r"),
                     timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [f"error: {space_file}: unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"]
    assert not (tmp_path / "r").exists()
