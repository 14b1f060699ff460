"""Run folders: ``runs/<name>/`` with the resolved config, vocabulary, checkpoints, logs, metrics.

Layout::

    runs/<name>/
        run.json            kind (pretrain|finetune), dataset, fingerprint, model, signals, created, commit, host
        config.yaml         the resolved config (every default spelled out)
        vocab.json          the token vocabulary (kgc.vocab.Vocabulary)
        checkpoints/        last.ckpt, step-*.ckpt, best.ckpt (fine-tuning)
        logs/               CSV and TensorBoard logs
        metrics.json        evaluation results (fine-tuning / kgc.evaluate)
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from kgc import KGCError
from kgc.utils.io import atomic_write, read_json, write_json

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_runs_root() -> Path:
    return Path(os.environ.get("KGC_RUNS", "runs"))


def timestamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
        if out.returncode == 0:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=REPO_ROOT, capture_output=True, text=True, timeout=5,
            ).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


class RunDir:
    """A run folder; see the module docstring for its layout."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # paths
    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def vocab_path(self) -> Path:
        return self.path / "vocab.json"

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def meta_path(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    def last_checkpoint(self) -> Path | None:
        p = self.checkpoints / "last.ckpt"
        return p if p.is_file() else None

    # io
    def create(self, meta: dict[str, Any], config: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        meta = {
            "created": _dt.datetime.now().isoformat(timespec="microseconds"),
            "commit": git_commit(),
            "hardware": hardware(),
            **meta,
        }
        write_json(self.meta_path, meta)
        with atomic_write(self.config_path, "w") as fh:
            yaml.safe_dump(config, fh, sort_keys=False)

    def meta(self) -> dict[str, Any]:
        if not self.meta_path.is_file():
            raise KGCError(f"{self.path}: not a kgc run folder (run.json missing)")
        return read_json(self.meta_path)

    def update_meta(self, **kwargs: Any) -> None:
        meta = self.meta()
        meta.update(kwargs)
        write_json(self.meta_path, meta)

    def config(self) -> dict[str, Any]:
        from kgc.utils.io import read_yaml

        if not self.config_path.is_file():
            raise KGCError(f"{self.config_path}: resolved config missing; the run folder is incomplete")
        return read_yaml(self.config_path) or {}


def find_latest_run(runs_root: str | os.PathLike, kind: str, dataset: str, fingerprint: str | None = None) -> RunDir | None:
    """Newest run of ``kind`` for ``dataset`` (matching ``fingerprint`` if given) that has a last checkpoint.

    "Newest" is the largest ``created`` stamp of ``run.json`` (ISO 8601, microseconds; an older
    seconds-only stamp compares as its ``.000000``), ties broken by folder name; folders without a
    readable ``run.json`` are skipped."""
    root = Path(runs_root)
    if not root.is_dir():
        return None
    best: tuple[tuple[str, str], RunDir] | None = None
    for meta_path in root.glob("*/run.json"):
        run = RunDir(meta_path.parent)
        try:
            meta = run.meta()
        except KGCError:
            continue
        if meta.get("kind") != kind or meta.get("dataset") != dataset:
            continue
        if fingerprint is not None and meta.get("fingerprint") != fingerprint:
            continue
        if run.last_checkpoint() is None:
            continue
        key = (str(meta.get("created", "")), run.path.name)
        if best is None or key > best[0]:
            best = (key, run)
    return None if best is None else best[1]


RUN_DIR_ENV = "KGC_RUN_DIR"


def child_run_dir() -> RunDir | None:
    """In a DDP worker process started by Lightning (``LOCAL_RANK`` > 0 or ``NODE_RANK`` > 0), the run
    folder that rank 0 created (passed down in ``KGC_RUN_DIR``); ``None`` in the main process."""
    rank = int(os.environ.get("LOCAL_RANK", "0") or 0) + int(os.environ.get("NODE_RANK", "0") or 0)
    path = os.environ.get(RUN_DIR_ENV)
    if rank > 0 and path:
        return RunDir(path)
    return None


def announce_run_dir(run: RunDir, resume_ckpt: str | None = None) -> None:
    """Let DDP worker processes (which re-run the CLI) find this run folder and the checkpoint rank 0
    resumes from, instead of making their own."""
    os.environ[RUN_DIR_ENV] = str(run.path)
    os.environ[RESUME_ENV] = str(resume_ckpt or "")


RESUME_ENV = "KGC_RESUME_CKPT"


def child_resume_checkpoint() -> str | None:
    return os.environ.get(RESUME_ENV) or None
