"""The LightningModules: a shared base and one thin module per task, each with an injected loss.

:class:`KGCModule` (the base) wraps one ``kgc.models`` model and holds what both phases share: the
optimiser (AdamW; embedding tables at ``optim.embedding_lr``, no weight decay on biases/norms), the
learning-rate schedule (:class:`_Schedule`, with the ``time`` horizon read from Lightning's ``Timer``)
and the checkpoint metadata (``checkpoint["kgc"]``: format, vocabulary, ``meta``). Its
``training_step`` calls the subclass's :meth:`KGCModule.step`.

* :class:`PretrainModule` trains :class:`kgc.models.batch.SignalBatch` batches
  (``pretrain_tasks.batching.collate``) with a :class:`kgc.training.losses.SignalLoss`; it logs
  per-task loss and token accuracy (validation sums are reduced across processes at epoch end) and
  feeds per-example losses to an optional ``UncertaintyTaskSampler``.
* :class:`LinkPredictionModule` trains :class:`kgc.models.batch.LPBatch` batches
  (``kgc.training.lp_data``) with a label-smoothed 1-N loss object (``OneVsAllLoss`` / ``KvsAllLoss``,
  picked by the caller; the module never reads ``targets``). Validation and test rank every query
  with the one filtered-rank op (``kernels.filtered_rank`` through ``kgc.evaluation.ranks.rank_output``)
  and collect filtered MRR/Hits (realistic ranks) in a ``kgc.evaluation.RankAccumulator``, the
  collector ``kgc.evaluate`` uses: every query is counted exactly once under DDP (ranks are gathered
  with their query index and de-duplicated).
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Timer
import torch

from kgc.models.batch import LPBatch
from pretrain_tasks.batching import SignalBatch
from kgc.training.checkpoint import CHECKPOINT_FORMAT
from kgc.training.config import OptimConfig
from kgc.training.losses import LabelSmoothedCE, SignalLoss
from kgc.vocab import Vocabulary


#: top-level model attributes trained at ``optim.embedding_lr`` (the identity path's tables)
EMBEDDING_TABLES = ("tok_emb", "entity_emb", "ent_bias", "direct")


class KGCModule(pl.LightningModule):
    """Shared base: optimiser, schedule, checkpoint metadata; subclasses implement :meth:`step`.

    Args:
        model: the injected encoder+heads module (a :class:`kgc.models.base.KGCModel`).
        vocab: the dataset's vocabulary (saved in each checkpoint's ``kgc`` metadata).
        optim: optimiser/schedule settings. max_steps: schedule horizon in steps.
        loss: the injected loss object, called as ``loss(model, batch)``.
        max_time_s: the run's wall-clock cap; with ``optim.horizon == "time"`` the decay also ends there
            (elapsed training time from Lightning's ``Timer``, which ``max_time`` installs).
        meta: extra JSON-able metadata stored in checkpoints (run kind, dataset, model config...).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        vocab: Vocabulary,
        optim: OptimConfig,
        max_steps: int,
        loss,
        max_time_s: float | None = None,
        meta: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.model = model
        self.vocab = vocab
        self.optim_cfg = optim
        self.max_steps = max_steps
        self.max_time_s = max_time_s
        self.loss = loss
        self._schedule: _Schedule | None = None
        self.meta = dict(meta or {})

    # ---- steps -------------------------------------------------------------
    def step(self, batch, stage: str) -> torch.Tensor:
        """The loss of one batch (``stage`` "train" or "val"), logging as the task sees fit."""
        raise NotImplementedError

    def training_step(self, batch, batch_idx):
        return self.step(batch, "train")

    # ---- optimisation --------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.optim_cfg
        emb_lr = cfg.embedding_lr if cfg.embedding_lr is not None else cfg.lr
        groups: dict[tuple[bool, bool], list] = {}
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            decay = not (p.dim() < 2 or "norm" in name or name.endswith("bias"))
            groups.setdefault((decay, name.split(".")[0] in EMBEDDING_TABLES), []).append(p)
        opt = torch.optim.AdamW(
            [{"params": ps, "weight_decay": cfg.weight_decay if decay else 0.0, "lr": emb_lr if emb else cfg.lr}
             for (decay, emb), ps in sorted(groups.items())],
            lr=cfg.lr, betas=tuple(cfg.betas),
        )
        horizon_s = self.max_time_s if cfg.horizon == "time" else None
        self._schedule = _Schedule(cfg, self.max_steps, horizon_s)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=self._schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_batch_start(self, batch, batch_idx) -> None:
        if self._schedule is not None and self._schedule.horizon_s:
            timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
            if timer is not None:
                self._schedule.elapsed_s = float(timer.time_elapsed("train"))
        if self.trainer.optimizers:
            self.log("train/lr", float(self.trainer.optimizers[0].param_groups[0]["lr"]), batch_size=1)

    # ---- checkpoint metadata -------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["kgc"] = {"format": CHECKPOINT_FORMAT, "vocab": self.vocab.to_dict(), **self.meta}


class PretrainModule(KGCModule):
    """Pretraining on :class:`SignalBatch` batches (see the module docstring).

    Args: as :class:`KGCModule` (``loss`` defaults to :class:`SignalLoss`), plus
        task_sampler: optional ``UncertaintyTaskSampler`` fed with per-example losses (its state is
            saved in checkpoints as ``kgc_task_sampler``).
    """

    def __init__(self, model: torch.nn.Module, vocab: Vocabulary, optim: OptimConfig, max_steps: int,
                 loss: SignalLoss | None = None, max_time_s: float | None = None,
                 meta: dict[str, Any] | None = None, task_sampler=None):
        super().__init__(model, vocab, optim, max_steps, loss if loss is not None else SignalLoss(),
                         max_time_s=max_time_s, meta=meta)
        self.task_sampler = task_sampler
        self._task_names = list(vocab.tasks)
        self._val_task_stats: torch.Tensor | None = None

    def signal_loss(self, batch: SignalBatch, exact: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(mean loss, per-token stats ``tok_loss``/``correct``/``row``) of the injected loss; ``exact``
        (validation) asks a sampled loss for its exact per-class softmax instead."""
        return self.loss(self.model, batch, exact=exact)

    def step(self, batch: SignalBatch, stage: str) -> torch.Tensor:
        bsz = batch.tokens.shape[0]
        loss, stats = self.signal_loss(batch, exact=stage != "train")
        task_of_tok = batch.task[stats["row"]]
        if stage == "train":
            self.log("train/loss", loss, prog_bar=True, batch_size=bsz)
            for t in torch.unique(task_of_tok).tolist():
                m = task_of_tok == t
                name = self._task_name(t)
                self.log(f"train/{name}/loss", stats["tok_loss"][m].mean(), batch_size=int(m.sum()))
                self.log(f"train/{name}/acc", stats["correct"][m].mean(), batch_size=int(m.sum()))
            if self.task_sampler is not None:
                per_row = torch.zeros(bsz, device=loss.device).index_add_(0, stats["row"], stats["tok_loss"])
                cnt = torch.zeros(bsz, device=loss.device).index_add_(0, stats["row"], torch.ones_like(stats["tok_loss"]))
                self.task_sampler.update(batch.task.cpu().numpy(), (per_row / cnt.clamp_min(1)).cpu().numpy())
        else:
            # fixed-size per-task sums, reduced across processes at epoch end (DDP-safe)
            T = len(self._task_names)
            acc = self._val_task_stats
            if acc is None or acc.device != loss.device:
                acc = self._val_task_stats = torch.zeros(3, T, dtype=torch.float64, device=loss.device)
            acc[0].index_add_(0, task_of_tok, stats["tok_loss"].double())
            acc[1].index_add_(0, task_of_tok, stats["correct"].double())
            acc[2].index_add_(0, task_of_tok, torch.ones_like(stats["tok_loss"], dtype=torch.float64))
        return loss

    def _task_name(self, task: int) -> str:
        """``batch.task`` holds the index in ``vocab.tasks``."""
        return self._task_names[task] if 0 <= task < len(self._task_names) else f"task{task}"

    def validation_step(self, batch: SignalBatch, batch_idx):
        return self.step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        acc = self._val_task_stats
        self._val_task_stats = None
        if acc is not None:
            if self.trainer is not None and self.trainer.world_size > 1:
                acc = self.all_gather(acc).reshape(-1, *acc.shape).sum(0)
            total = acc[2].sum().clamp_min(1)
            self.log("val/loss", float(acc[0].sum() / total), prog_bar=True)
            for t, name in enumerate(self._task_names):
                if acc[2, t] > 0:
                    self.log(f"val/{name}/loss", float(acc[0, t] / acc[2, t]))
                    self.log(f"val/{name}/acc", float(acc[1, t] / acc[2, t]))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.task_sampler is not None and hasattr(self.task_sampler, "state_dict"):
            checkpoint["kgc_task_sampler"] = _plain(self.task_sampler.state_dict())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("kgc_task_sampler")
        if state is not None and self.task_sampler is not None:
            self.task_sampler.load_state_dict(state)


class LinkPredictionModule(KGCModule):
    """Link prediction on :class:`LPBatch` batches (see the module docstring).

    Args: as :class:`KGCModule`, with ``loss`` a :class:`kgc.training.losses.LabelSmoothedCE`
        (``OneVsAllLoss`` / ``KvsAllLoss``; ``kgc.training.losses.lp_loss_for(targets, eps)`` picks it), plus
        filter_lookups: ``{"val": fn, "test": fn}`` with fn(query_index (B,) int64) -> (indptr (B+1,),
            indices (nnz,)) of the known true answers (train+valid+test) of those queries; a missing
            entry ranks unfiltered.
    """

    def __init__(self, model: torch.nn.Module, vocab: Vocabulary, optim: OptimConfig, max_steps: int,
                 loss: LabelSmoothedCE, max_time_s: float | None = None, filter_lookups=None,
                 meta: dict[str, Any] | None = None):
        super().__init__(model, vocab, optim, max_steps, loss, max_time_s=max_time_s, meta=meta)
        self.filter_lookups = dict(filter_lookups or {})
        self._rank_acc = None  # kgc.evaluation.RankAccumulator, created by the first ranked batch

    def lp_loss(self, batch: LPBatch) -> torch.Tensor:
        """The injected loss of one batch."""
        return self.loss(self.model, batch)

    def step(self, batch: LPBatch, stage: str) -> torch.Tensor:
        loss = self.lp_loss(batch)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=len(batch), sync_dist=stage != "train")
        return loss

    def validation_step(self, batch: LPBatch, batch_idx):
        self._rank_batch(batch, "val")

    def test_step(self, batch: LPBatch, batch_idx):
        self._rank_batch(batch, "test")

    # ---- ranking -------------------------------------------------------------------
    def _rank_batch(self, batch: LPBatch, stage: str) -> None:
        from kernels.filtered_rank import NaNScoreError
        from kgc.evaluation.accumulator import RankAccumulator
        from kgc.evaluation.ranks import rank_output

        qi = batch.query_index
        lookup = self.filter_lookups.get(stage)
        if lookup is not None:
            indptr, indices = lookup(qi.cpu())
        else:
            indptr = torch.zeros(len(qi) + 1, dtype=torch.long)
            indices = torch.zeros(0, dtype=torch.long)
        try:
            ranks = rank_output(self.model, self.model.lp_forward(batch), batch.target, indptr, indices)
        except NaNScoreError as err:  # name the query by its index in the split
            raise err.relabel(qi.cpu()) from None
        if self._rank_acc is None:
            self._rank_acc = RankAccumulator()
        self._rank_acc.add(qi, ranks)

    def _log_rank_metrics(self, stage: str) -> None:
        acc, self._rank_acc = self._rank_acc, None
        if acc is None:  # no batch ranked (every process sees the same batches)
            return
        world = (1, 0)
        if self.trainer is not None and self.trainer.world_size > 1:
            world = (self.trainer.world_size, self.trainer.global_rank)
        # every process's ranks, each query once (DDP samplers may repeat queries to even out shards)
        m = acc.collect(world=world).metrics()["realistic"]
        for key in ("mrr", "mr", "hits@1", "hits@3", "hits@10"):
            self.log(f"{stage}/{key}", m[key], prog_bar=key == "mrr", sync_dist=False)
        self.log(f"{stage}/num_queries", float(m["count"]), sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        self._log_rank_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_rank_metrics("test")


class _Schedule:
    """Linear warm-up then constant/cosine/linear decay (a picklable lr_lambda).

    The decay's progress is the step fraction or, with ``horizon_s``, the larger of it and the fraction
    of ``horizon_s`` seconds of training time spent (``elapsed_s``, updated by the module before each
    batch). Warm-up is always counted in steps.
    """

    def __init__(self, cfg: OptimConfig, max_steps: int, horizon_s: float | None = None):
        self.warmup = cfg.warmup_steps
        self.kind = cfg.schedule
        self.floor = cfg.min_lr_ratio
        self.max_steps = max(1, max_steps)
        self.horizon_s = float(horizon_s) if horizon_s else None
        self.elapsed_s = 0.0

    def __call__(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "constant":
            return 1.0
        span = max(1, self.max_steps - self.warmup)
        frac = min(1.0, (step - self.warmup) / span)
        if self.horizon_s:
            frac = max(frac, min(1.0, self.elapsed_s / self.horizon_s))
        if self.kind == "cosine":
            return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * frac))
        return self.floor + (1 - self.floor) * (1 - frac)


def _plain(obj: Any) -> Any:
    """Convert numpy scalars/arrays in a state dict to plain Python/tensors (weights_only-safe)."""
    import numpy as np

    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
