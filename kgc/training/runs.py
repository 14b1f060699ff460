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

from kgc._version import __version__
from kgc.errors import KGCError
from kgc.utils.io import atomic_write, read_json, write_json

REPO_ROOT = Path(__file__).resolve().parents[2]
#: layout version of a run folder, stored as ``run.json["format"]`` (a missing field reads as 1)
RUN_FORMAT = 1
_TEMP_FILE = re.compile(r"^\..+\.tmp$")


def default_runs_root() -> Path:
    """Where run folders go unless a flag says otherwise: ``$KGC_RUNS``, else ``runs`` (relative to the
    working folder). The one place that reads ``KGC_RUNS``."""
    return Path(os.environ.get("KGC_RUNS", "runs"))


def timestamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def new_run_path(out: str | os.PathLike | None, runs_root: str | os.PathLike, stem: str) -> Path:
    """The folder of a new run: ``out`` as given, else ``<runs_root>/<stem>-<time>``; a folder of that
    name made in the same second (two API calls in a row) gets ``-2``, ``-3``, ... (reserved by an
    exclusive ``mkdir``, so concurrent runs cannot pick the same one)."""
    if out is not None:
        return Path(out)
    root = Path(runs_root)
    root.mkdir(parents=True, exist_ok=True)
    base = slug(f"{stem}-{timestamp()}")
    for i in range(1, 10_000):
        path = root / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise KGCError(f"{root}: no free run folder name for {base}")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


def git_commit() -> str | None:
    """The short commit (``-dirty`` when tracked files changed) of the kgc checkout being run; ``None``
    for an installed wheel (its folder is no checkout) or without git."""
    if not (REPO_ROOT / ".git").exists() or not (REPO_ROOT / "kgc" / "__init__.py").is_file():
        return None
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

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete the temp files (``.<name>.<random>.tmp``, :func:`kgc.utils.io.atomic_write`) that
        killed writes left in the folder, ``checkpoints/`` and ``logs/csv/``; returns them. Call it
        only while no process writes into the folder (the start of a run, before training)."""
        removed = []
        for folder in (self.path, self.checkpoints, self.logs / "csv"):
            if not folder.is_dir():
                continue
            for f in folder.iterdir():
                if _TEMP_FILE.match(f.name) and f.is_file():
                    try:
                        f.unlink()
                    except FileNotFoundError:
                        continue
                    removed.append(f)
        return removed

    # io
    def create(self, meta: dict[str, Any], config: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        meta = {
            "format": RUN_FORMAT,
            "kgc_version": __version__,
            "created": _dt.datetime.now().isoformat(timespec="microseconds"),
            "commit": git_commit(),
            "hardware": hardware(),
            **meta,
        }
        write_json(self.meta_path, meta)
        with atomic_write(self.config_path, "w") as fh:
            yaml.safe_dump(config, fh, sort_keys=False)

    def meta(self) -> dict[str, Any]:
        """``run.json``; a folder of another layout (``format`` other than :data:`RUN_FORMAT`) is an
        error naming the file and both formats. A ``run.json`` without ``format`` predates the field
        and has the layout of format 1."""
        if not self.meta_path.is_file():
            raise KGCError(f"{self.path}: not a kgc run folder (run.json missing)")
        meta = read_json(self.meta_path)
        if not isinstance(meta, dict):
            raise KGCError(f"{self.meta_path}: not a kgc run.json (top level is not an object)")
        fmt = meta.get("format", RUN_FORMAT)
        if fmt != RUN_FORMAT:
            by = meta.get("kgc_version", "?")
            raise KGCError(f"{self.meta_path}: run folder format {fmt!r} (written by kgc {by}); "
                           f"this kgc {__version__} reads format {RUN_FORMAT}: use the kgc version that wrote it")
        return meta

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


def external_rank() -> int | None:
    """The global rank given by a launcher that starts every process itself: ``srun`` (``SLURM_PROCID``
    when the job step has several tasks and is not interactive: the rule of Lightning's
    ``SLURMEnvironment``) or ``torchrun`` (``RANK``); ``None`` when Lightning starts the processes."""
    env = os.environ
    if {"RANK", "GROUP_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"} <= env.keys():
        return int(env["RANK"] or 0)
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        return int(env.get("SLURM_PROCID", "0") or 0)
    return None


def is_launch_rank_zero() -> bool:
    """False in every DDP process but global rank 0, whoever launched it (Lightning, srun, torchrun)."""
    ext = external_rank()
    if ext is not None:
        return ext == 0
    return int(os.environ.get("LOCAL_RANK", "0") or 0) == 0 and int(os.environ.get("NODE_RANK", "0") or 0) == 0


#: how long (seconds) an externally launched rank > 0 waits for rank 0 to create the run folder
RUN_DIR_WAIT_S = float(os.environ.get("KGC_RUN_DIR_WAIT_S", "600"))


def _wait_for_run_folder(run: RunDir, timeout: float = RUN_DIR_WAIT_S) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not all(p.is_file() for p in (run.meta_path, run.config_path, run.vocab_path)):
        if time.monotonic() > deadline:
            raise KGCError(f"{run.path}: rank 0 did not create this run folder ({RUN_DIR_ENV}) within {timeout:.0f} s; "
                           f"pass --out \"${RUN_DIR_ENV}\" (first start) or --resume \"${RUN_DIR_ENV}\" to every task")
        time.sleep(0.2)


def child_run_dir() -> RunDir | None:
    """In a DDP process other than rank 0, the run folder rank 0 created (``KGC_RUN_DIR``); ``None``
    in rank 0 and in a single process.

    Lightning's own DDP workers (``LOCAL_RANK`` > 0 or ``NODE_RANK`` > 0) inherit ``KGC_RUN_DIR``
    from rank 0 (:func:`announce_run_dir`). Under ``srun`` or ``torchrun`` every process starts at
    once, so ``KGC_RUN_DIR`` must be exported for all of them (and rank 0 given ``--out`` or
    ``--resume`` with it); ranks > 0 wait until rank 0 has written ``run.json``, ``config.yaml`` and
    ``vocab.json``."""
    path = os.environ.get(RUN_DIR_ENV)
    ext = external_rank()
    if ext is not None:
        if ext == 0:
            return None
        if not path:
            raise KGCError(f"rank {ext} of an srun/torchrun launch: export {RUN_DIR_ENV}=<run folder> for every task "
                           f"and pass --out \"${RUN_DIR_ENV}\" (first start) or --resume \"${RUN_DIR_ENV}\"")
        run = RunDir(path)
        _wait_for_run_folder(run)
        return run
    rank = int(os.environ.get("LOCAL_RANK", "0") or 0) + int(os.environ.get("NODE_RANK", "0") or 0)
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
    """The checkpoint rank 0 resumes from, in a process other than rank 0 (``None``: a fresh start).

    Lightning's workers inherit it (``KGC_RESUME_CKPT``). Externally launched ranks read
    ``last.ckpt`` of ``KGC_RUN_DIR`` themselves: it is the file rank 0 resumes from, since no rank
    writes a checkpoint before all of them have joined the process group."""
    if RESUME_ENV in os.environ:
        return os.environ[RESUME_ENV] or None
    path = os.environ.get(RUN_DIR_ENV)
    if external_rank() and path:
        ck = RunDir(path).last_checkpoint()
        return None if ck is None else str(ck)
    return None
