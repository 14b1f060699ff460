"""Experiment tracking through Lightning's loggers (the ``logging:`` config section).

``logging.loggers`` names any of ``csv``, ``tensorboard``, ``mlflow`` and ``wandb``
(:data:`kgc.training.config.LOGGER_NAMES`); :func:`build_loggers` makes Lightning's own loggers
for them. ``csv`` keeps the run folder's resumable ``logs/csv/metrics.csv``; MLflow and W&B are
optional extras (``pip install 'kgc[mlflow]'`` / ``'kgc[wandb]'``), checked by
:func:`check_loggers_available` when the config is validated, i.e. before a run folder exists.

Every logger gets the resolved config as hyperparameters when training starts
(:class:`TrackingCallback`); fine-tuning then calls :func:`log_final_metrics` after writing
``metrics.json``, which logs the test metrics and the file itself to MLflow and W&B. The MLflow run
id and the W&B run id are kept in ``run.json`` (``trackers``) so that ``--resume`` continues the
same tracked run.

Default MLflow store: ``sqlite:///<root>/mlflow.db`` with artifacts in ``<root>/mlartifacts``, where
``<root>`` is the folder holding the run folder (docs/decisions.md, "Logging and experiment
tracking").
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import pytorch_lightning as pl
from lightning_fabric.utilities.logger import _convert_params, _flatten_dict
from pytorch_lightning.loggers import MLFlowLogger, WandbLogger  # importable without mlflow / wandb
from pytorch_lightning.utilities import rank_zero_only

from kgc.errors import KGCError
from kgc.training.config import _EXTRAS, check_loggers_available

if TYPE_CHECKING:  # pragma: no cover
    from kgc.training.config import LoggingConfig
    from kgc.training.runs import RunDir

# ---- MLflow -----------------------------------------------------------------------------------------
def mlflow_store(cfg: "LoggingConfig", run: "RunDir") -> tuple[str, str | None]:
    """``(tracking_uri, artifact_location)`` of ``run``: the configured ones, or the local default."""
    uri = cfg.mlflow.tracking_uri
    if uri is None:
        root = run.path.resolve().parent
        uri = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = cfg.mlflow.artifact_location
    if artifacts is None and uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        artifacts = str(Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts")
    return uri, artifacts


def _metric_key(key: str) -> str:
    """MLflow takes letters, digits and ``_/. -`` in metric names: ``val/hits@10`` -> ``val/hits_at_10``."""
    return re.sub(r"[^A-Za-z0-9_/. -]+", "_", key.replace("@", "_at_"))


class KGCMLFlowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger with readable metric names (``hits@10`` -> ``hits_at_10``, silently)
    and resumable params (a resumed run logs only the params its MLflow run does not have yet:
    MLflow refuses to change a logged param)."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics({_metric_key(k): v for k, v in metrics.items()}, step)

    @rank_zero_only
    def log_hyperparams(self, params) -> None:
        flat = _flatten_dict(_convert_params(params))
        have = self.experiment.get_run(self.run_id).data.params
        flat = {k: v for k, v in flat.items() if k not in have}
        if flat:
            super().log_hyperparams(flat)


# ---- building -------------------------------------------------------------------------------------
def build_loggers(run: "RunDir", cfg: "LoggingConfig", keep_below_step: int | None = None,
                  resuming: bool = False) -> list:
    """Lightning loggers for ``cfg.loggers`` writing into ``run`` (``resuming``: continue the MLflow
    and W&B runs recorded in ``run.json``)."""
    from pytorch_lightning.loggers import TensorBoardLogger

    from kgc.training.csv_log import _ResumableCSVLogger
    from kgc.training.runs import is_launch_rank_zero
    from kgc.utils.console import is_quiet

    check_loggers_available(cfg)
    ids: dict[str, Any] = {}
    if resuming and run.meta_path.is_file():
        ids = dict(run.meta().get("trackers") or {})
    kind = run.meta().get("kind", "run") if run.meta_path.is_file() else "run"
    out = []
    for name in cfg.loggers:
        if name in _EXTRAS and not is_launch_rank_zero():
            continue  # the trackers log from global rank 0 only; the others would race to create the store
        if name == "csv":
            out.append(_ResumableCSVLogger(run.logs, name="csv", version="", keep_below_step=keep_below_step))
        elif name == "tensorboard":
            out.append(TensorBoardLogger(run.logs, name="tb", version="", default_hp_metric=False))
        elif name == "mlflow":
            import logging

            logging.getLogger("alembic").setLevel(logging.WARNING)  # a dozen migration lines on a new store
            uri, artifacts = mlflow_store(cfg, run)
            run_id = ids.get("mlflow") if ids.get("mlflow_uri") == uri else None
            out.append(KGCMLFlowLogger(
                experiment_name=cfg.mlflow.experiment_name or f"kgc-{kind}",
                run_name=cfg.mlflow.run_name or run.path.name, tracking_uri=uri, artifact_location=artifacts,
                run_id=run_id, tags={"kgc.run_dir": str(run.path.resolve()), "kgc.kind": kind}))
        elif name == "wandb":
            import wandb

            if wandb.run is not None:  # left open by an earlier training in this process
                wandb.finish()
            w = cfg.wandb
            settings = wandb.Settings(silent=True) if is_quiet() else None
            out.append(WandbLogger(name=w.run_name or run.path.name, project=w.project, entity=w.entity,
                                   save_dir=str(run.logs), id=ids.get("wandb"), mode=w.mode, tags=list(w.tags),
                                   **({"settings": settings} if settings is not None else {})))
        else:  # pragma: no cover - LoggingConfig.validate rejects it
            raise KGCError(f"unknown logger {name!r}")
    return out


class TrackingCallback(pl.Callback):
    """At the start of ``fit``: log ``hparams`` (the resolved config) to every logger and record the
    tracked runs' ids in ``run.json`` (``trackers``) for ``--resume``."""

    def __init__(self, run: "RunDir", hparams: dict[str, Any] | None, cfg: "LoggingConfig"):
        self.run = run
        self.hparams = hparams
        self.cfg = cfg

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for lg in trainer.loggers:
            if self.hparams is not None:
                lg.log_hyperparams(self.hparams)
        ids = tracker_ids(trainer, self.cfg, self.run)
        if ids and self.run.meta_path.is_file():
            self.run.update_meta(trackers=ids)


def tracker_ids(trainer: pl.Trainer, cfg: "LoggingConfig", run: "RunDir") -> dict[str, Any]:
    ids: dict[str, Any] = {}
    for lg in trainer.loggers:
        if isinstance(lg, MLFlowLogger):
            ids["mlflow"] = lg.run_id
            ids["mlflow_uri"] = mlflow_store(cfg, run)[0]
        elif isinstance(lg, WandbLogger):
            ids["wandb"] = getattr(lg.experiment, "id", None)
    return ids


def _numeric(prefix: str, values: Mapping[str, Any] | None) -> dict[str, float]:
    out = {}
    for k, v in (values or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
            out[f"{prefix}/{k}"] = float(v)
    return out


def log_final_metrics(trainer: pl.Trainer, metrics_path: str | Path, metrics: Mapping[str, Any]) -> None:
    """Fine-tuning's end: log the test metrics (``test/<metric>``, ``test/pessimistic/<metric>``) and
    the ``metrics.json`` file to the MLflow and W&B loggers of ``trainer``, then close their runs."""
    if not trainer.is_global_zero:
        return
    final = {**_numeric("test", metrics.get("metrics")), **_numeric("test/pessimistic", metrics.get("pessimistic"))}
    step = int(trainer.global_step)
    path = Path(metrics_path)
    for lg in trainer.loggers:
        if isinstance(lg, MLFlowLogger):
            lg.log_metrics(final, step=step)
            lg.experiment.log_artifact(lg.run_id, str(path))
            lg.finalize("success")  # Lightning closed the run after fit; this updates its end time
        elif isinstance(lg, WandbLogger):
            exp = lg.experiment
            exp.summary.update(final)
            exp.save(str(path), base_path=str(path.parent), policy="now")
            exp.finish()
