"""Logs that read well and experiment tracking through Lightning's loggers (issue 17, items 3 and 4).

Real runs on Nations (the dataset mirror) with a tiny model: MLflow round trip through a SQLite
store in tmp_path read back with ``MlflowClient``; W&B in offline mode; plain step lines when
stdout is a file; ``--quiet``; one-line errors for an unknown logger and a missing tracker extra.
MLflow and W&B are the ``track`` extra: CI installs it (``.ci/run`` sets ``KGC_CI=1``) and there a
missing one fails these tests; elsewhere they skip, naming the extra.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from kgc import KGCError
from kgc.cli import run_cli
from kgc.finetune import main as finetune_main
from kgc.pretrain import main as pretrain_main
from kgc.training.progress import StepLines, format_duration, heartbeat, resolve_progress
from training_helpers import ROOT, TINY_FINETUNE

STEP_LINE = re.compile(r"^\[kgc\] step (\d+)/(\d+) loss (\d+\.\d{4}) lr (\d\.\d\de[+-]\d\d) (\d+\.\d\d) steps/s "
                       r"elapsed (\d+:\d\d:\d\d) ETA (\d+:\d\d:\d\d)$")


def need(module: str):
    """Import ``module`` (part of the ``track`` extra): CI fails without it, elsewhere the test skips."""
    if os.environ.get("KGC_CI"):
        return __import__(module)
    return pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[track]')")


def _argv(tmp_path: Path, *extra: str, steps: int = 20) -> list[str]:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_FINETUNE)
    return ["--dataset", "nations", "--from-scratch", "--config", str(cfg), "--max-steps", str(steps),
            "--out", str(tmp_path / "run"), "--runs-root", str(tmp_path), *extra]


def _run_cli_module(module: str, argv: list[str], tmp_path: Path, env: dict | None = None):
    """``python -m module argv`` with stdout and stderr into one file (as ``> log.txt 2>&1``)."""
    log = tmp_path / "log.txt"
    with open(log, "wb") as fh:
        proc = subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                              env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=600)
    return proc.returncode, log.read_bytes()


# ---- MLflow ---------------------------------------------------------------------------------------
def test_mlflow_round_trip(tmp_path):
    need("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'track' / 'mlflow.db'}"
    (tmp_path / "track").mkdir()
    argv = _argv(tmp_path, "--logger", "csv,mlflow", "--seed", "7", "--set", f"logging.mlflow.tracking_uri={uri}",
                 "--set", "logging.mlflow.experiment_name=logging-test")
    assert finetune_main(argv) == 0
    run_dir = tmp_path / "run"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (run_dir / "logs" / "csv" / "metrics.csv").is_file()  # csv kept beside the tracker
    assert not (run_dir / "logs" / "tb").exists()  # ... and only the loggers asked for

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("logging-test")
    assert exp is not None and exp.artifact_location == str((tmp_path / "track" / "mlartifacts").resolve())
    (mrun,) = client.search_runs([exp.experiment_id])
    assert mrun.info.run_id == json.loads((run_dir / "run.json").read_text())["trackers"]["mlflow"]
    assert mrun.info.status == "FINISHED" and mrun.info.run_name == "run"
    params = mrun.data.params
    assert params["seed"] == "7" and params["dataset"] == "nations"
    assert float(params["optim/lr"]) == pytest.approx(3e-3) and params["trainer/max_steps"] == "20"
    assert params["logging/loggers"] == str(["csv", "mlflow"])
    # a metric logged during training, at the steps the CSV logger has
    history = client.get_metric_history(mrun.info.run_id, "train/loss")
    assert len(history) >= 3 and all(h.value > 0 for h in history)
    assert sorted(h.step for h in history)[-1] == 19
    assert client.get_metric_history(mrun.info.run_id, "val/mrr")[-1].value > 0
    # the test metrics equal metrics.json's ("@" is spelt "_at_" in MLflow names)
    assert mrun.data.metrics["test/mrr"] == pytest.approx(metrics["metrics"]["mrr"], abs=1e-12)
    assert mrun.data.metrics["test/hits_at_10"] == pytest.approx(metrics["metrics"]["hits@10"], abs=1e-12)
    assert mrun.data.metrics["test/pessimistic/mrr"] == pytest.approx(metrics["pessimistic"]["mrr"], abs=1e-12)
    # the metrics.json artifact, byte for byte
    assert [a.path for a in client.list_artifacts(mrun.info.run_id)] == ["metrics.json"]
    got = Path(client.download_artifacts(mrun.info.run_id, "metrics.json", str(tmp_path)))
    assert got.read_bytes() == (run_dir / "metrics.json").read_bytes()


def test_mlflow_default_store_is_beside_the_run_folder(tmp_path, monkeypatch):
    """No tracking URI: ``sqlite:///<folder holding the run>/mlflow.db``, artifacts in ``mlartifacts``
    there, experiment ``kgc-finetune``; nothing lands in the working directory."""
    need("mlflow")
    from mlflow.tracking import MlflowClient

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert finetune_main(_argv(tmp_path, "--logger", "mlflow", steps=5)) == 0
    assert (tmp_path / "mlflow.db").is_file() and list(cwd.iterdir()) == []
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("kgc-finetune")
    (mrun,) = client.search_runs([exp.experiment_id])
    assert Path(mrun.info.artifact_uri.removeprefix("file://")).is_relative_to((tmp_path / "mlartifacts").resolve())
    assert "test/mrr" in mrun.data.metrics


# ---- W&B ------------------------------------------------------------------------------------------
def test_wandb_offline_run_files(tmp_path):
    need("wandb")
    wdir = tmp_path / "wandb-home"
    env = {"WANDB_DIR": str(wdir), "WANDB_CACHE_DIR": str(wdir / "cache"), "WANDB_CONFIG_DIR": str(wdir / "config"),
           "WANDB_DATA_DIR": str(wdir / "data"), "WANDB_SILENT": "true"}
    code, log = _run_cli_module("kgc.finetune", _argv(tmp_path, "--logger", "wandb",
                                                       "--set", "logging.wandb.project=kgc-test"), tmp_path, env)
    assert code == 0, log.decode()[-3000:]
    run_dir = tmp_path / "run"
    wandb_id = json.loads((run_dir / "run.json").read_text())["trackers"]["wandb"]
    (offline,) = (run_dir / "logs" / "wandb").glob("offline-run-*")
    assert offline.name.endswith(f"-{wandb_id}")
    assert (offline / f"run-{wandb_id}.wandb").stat().st_size > 0  # what `wandb sync` uploads
    assert (offline / "files" / "metrics.json").read_bytes() == (run_dir / "metrics.json").read_bytes()
    assert not (run_dir / "logs" / "csv").exists()


# ---- step lines -----------------------------------------------------------------------------------
def test_non_tty_log_has_short_plain_step_lines(tmp_path):
    """stdout and stderr into a file, the progress bar allowed: ``auto`` prints plain lines, no bar."""
    argv = _argv(tmp_path, "--set", "trainer.progress_bar=true", "--set", "logging.every_n_steps=10",
                 "--set", "logging.every_s=600", steps=30)  # the time rule: test_step_lines_every_s_rule...
    code, log = _run_cli_module("kgc.finetune", argv, tmp_path)
    text = log.decode()
    assert code == 0, text[-3000:]
    assert b"\r" not in log
    lines = text.splitlines()
    assert max(len(line) for line in lines) < 300
    steps = [STEP_LINE.match(line) for line in lines]
    steps = [m for m in steps if m]
    assert [int(m.group(1)) for m in steps] == [1, 10, 20, 30]
    for m in steps:
        assert int(m.group(2)) == 30 and float(m.group(3)) > 0 and 0 < float(m.group(4)) <= 3e-3
    assert any(line.startswith("[kgc] step 20: validation val/mrr ") for line in lines)
    assert any(line.startswith("[kgc] training ended at step 30 (max_steps reached)") for line in lines)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_a_terminal_gets_the_progress_bar_not_step_lines(tmp_path):
    """stdout a pseudo-terminal: ``auto`` shows Lightning's bar (carriage returns) and no step lines."""
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # tqdm draws nothing at 0 columns
    with open(tmp_path / "err.txt", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "kgc.finetune",
                                 *_argv(tmp_path, "--set", "trainer.progress_bar=true", steps=10)],
                                cwd=ROOT, stdout=slave, stderr=err, env={**os.environ, "OMP_NUM_THREADS": "1"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=600) == 0, (tmp_path / "err.txt").read_text()[-3000:]
    out = b"".join(chunks).decode(errors="replace")
    assert "\r" in out.replace("\r\n", "\n") and "Epoch 0" in out  # the bar redraws its line
    assert "[kgc] step 1/10" not in out and "[kgc] metrics written to" in out


class _ConstantModule(pl.LightningModule):
    """A 1-parameter model whose loss at batch ``i`` is ``i`` and whose clock advances 7 s a step."""

    def __init__(self, clock):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.clock = clock

    def training_step(self, batch, batch_idx):
        self.clock.now += 7.0
        return (self.w * batch).sum() * 0 + float(batch_idx)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.ones(64, 1), batch_size=1)


class _FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("every_n, expected", [(0, [1, 4, 7, 10, 13]), (5, [1, 4, 5, 8, 10, 13, 15])])
def test_step_lines_every_s_rule_with_a_fake_clock(every_n, expected):
    """7 s per step, a line every 20 s (and every ``every_n`` steps): the first step, then the first step
    at least 20 s after the previous line; a step multiple of ``every_n`` always."""
    clock, lines = _FakeClock(), []
    cb = StepLines(every_n_steps=every_n, every_s=20, clock=clock, emit=lines.append)
    trainer = pl.Trainer(max_steps=15, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[cb], accelerator="cpu", devices=1)
    trainer.fit(_ConstantModule(clock))
    assert lines[0].startswith("training from step 0 (max_steps 15)")
    assert lines[-1] == "training ended at step 15 (max_steps reached) after 0:01:45, 0.14 steps/s"
    step_lines = lines[1:-1]
    assert [int(line.split()[1].split("/")[0]) for line in step_lines] == expected
    # step 4 (28 s in): mean loss of batches 1..3, 3 steps in 21 s, 11 steps left at 4 per 28 s
    line4 = step_lines[1]
    assert line4 == "step 4/15 loss 2.0000 lr 1.00e-01 0.14 steps/s elapsed 0:00:28 ETA 0:01:17"


def test_progress_modes():
    class _Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    assert resolve_progress("auto", stream=_Stream(True)) == "bar"
    assert resolve_progress("auto", stream=_Stream(False)) == "lines"
    assert resolve_progress("auto", bar_allowed=False, stream=_Stream(True)) == "none"
    assert resolve_progress("bar", stream=_Stream(False)) == "bar"
    assert resolve_progress("lines", stream=_Stream(True)) == "lines"
    assert resolve_progress("none", stream=_Stream(False)) == "none"
    assert format_duration(3725.4) == "1:02:05" and format_duration(None) == "?"


# ---- --quiet --------------------------------------------------------------------------------------
def test_quiet_prints_only_the_final_metrics(tmp_path):
    log = tmp_path / "out.txt"
    with open(log, "wb") as fh:
        proc = subprocess.run([sys.executable, "-m", "kgc.finetune", *_argv(tmp_path, "--quiet", steps=10)],
                              cwd=ROOT, stdout=fh, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"},
                              timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    lines = log.read_text().splitlines()
    assert len(lines) == 2, lines
    assert re.match(r"^\[kgc\] nations/test \(realistic, filtered, \d+ queries\): MRR=0\.\d{4} ", lines[0])
    assert lines[1] == f"[kgc] metrics written to {tmp_path / 'run' / 'metrics.json'}"


# ---- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cli", ["finetune", "pretrain"])
def test_unknown_logger_is_a_one_line_error_before_any_run_folder(tmp_path, capsys, cli):
    if cli == "finetune":
        main, argv = finetune_main, _argv(tmp_path, "--logger", "csv", "--logger", "mlfow")
    else:
        main, argv = pretrain_main, ["--signals", "khop", "--max-steps", "5", "--out", str(tmp_path / "run"),
                                     "--runs-root", str(tmp_path), "--logger", "csv,mlfow"]
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: ")
    assert "unknown logger 'mlfow'" in err and "csv, tensorboard, mlflow, wandb" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("logger, extra", [("mlflow", "mlflow"), ("wandb", "wandb")])
def test_missing_tracker_extra_is_named_before_any_run_folder(tmp_path, capsys, monkeypatch, logger, extra):
    monkeypatch.setitem(sys.modules, extra, None)  # `import mlflow` now raises ImportError
    with pytest.raises(KGCError, match=rf"logger '{logger}' needs the {extra} extra .*pip install 'kgc\[{extra}\]'"):
        finetune_main(_argv(tmp_path, "--logger", f"csv,{logger}"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit) as exc:
        run_cli(finetune_main, _argv(tmp_path, "--logger", logger))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error: logger '{logger}' needs the {extra} extra")
    assert not (tmp_path / "run").exists()


def test_heartbeat_says_still_working_during_a_silent_block():
    import threading

    lines, done = [], threading.Event()
    with heartbeat("building", 0.05, emit=lines.append):
        done.wait(0.4)
    n = len(lines)
    assert n >= 3 and all(re.fullmatch(r"building: still working \(0:00:0\d\)", line) for line in lines)
    done.wait(0.2)
    assert len(lines) == n  # stopped with the block
    with heartbeat("never", 0, emit=lines.append):
        done.wait(0.1)
    assert len(lines) == n
