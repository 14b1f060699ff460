"""The LightningModule: one injected ``kgc.models`` model, one shared step for both phases.

A batch is either a *signal* batch (pretraining, ``pretrain_tasks.batching.collate``)::

    tokens (B, L), prefix_len (B,), labels (B, L) (-100 outside target positions), task (B,)

and is trained by next-token prediction over the whole vocabulary, or a
*link-prediction* batch, a :class:`kgc.models.batch.LPBatch` (``kgc.training.lp_data``),
trained with 1-N label-smoothed cross-entropy over all entities (fused by
``kernels.linear_cross_entropy``; with a context pointer the (B, E) scores are formed
densely and ``kernels.cross_entropy_from_logits`` takes the same loss). Validation logs per-task loss and token
accuracy for signal batches and filtered MRR/Hits (realistic ranks) for
link-prediction batches, ranked by the one filtered-rank op (``kernels.filtered_rank`` through
``kgc.evaluation.ranks.rank_output``) and collected in a ``kgc.evaluation.RankAccumulator``, the
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
from kgc.training.checkpoint import CHECKPOINT_FORMAT
from kgc.training.config import OptimConfig
from kgc.vocab import Vocabulary


#: top-level model attributes trained at ``optim.embedding_lr`` (the identity path's tables)
EMBEDDING_TABLES = ("tok_emb", "entity_emb", "ent_bias", "direct")


class KGCLitModule(pl.LightningModule):
    """Wraps a :class:`kgc.models.base.KGCModel`; see the module docstring for batch formats.

    Args:
        model: the injected encoder+heads module.
        vocab: the dataset's vocabulary (saved in each checkpoint's ``kgc`` metadata).
        optim: optimiser/schedule settings. max_steps: schedule horizon in steps.
        max_time_s: the run's wall-clock cap; with ``optim.horizon == "time"`` the decay also ends there
            (elapsed training time from Lightning's ``Timer``, which ``max_time`` installs).
        label_smoothing: for the link-prediction loss.
        filter_lookups: ``{"val": fn, "test": fn}`` with fn(query_index (B,) int64) -> (indptr (B+1,),
            indices (nnz,)) of the known true answers (train+valid+test) of those queries; a missing
            entry ranks unfiltered.
        meta: extra JSON-able metadata stored in checkpoints (run kind, dataset, model config...).
        task_sampler: optional ``UncertaintyTaskSampler`` fed with per-example losses.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        vocab: Vocabulary,
        optim: OptimConfig,
        max_steps: int,
        label_smoothing: float = 0.1,
        max_time_s: float | None = None,
        filter_lookups=None,
        meta: dict[str, Any] | None = None,
        task_sampler=None,
    ):
        super().__init__()
        self.model = model
        self.vocab = vocab
        self.optim_cfg = optim
        self.max_steps = max_steps
        self.max_time_s = max_time_s
        self._schedule: _Schedule | None = None
        self.label_smoothing = label_smoothing
        self.filter_lookups = dict(filter_lookups or {})
        self.meta = dict(meta or {})
        self.task_sampler = task_sampler
        self._rank_acc = None  # kgc.evaluation.RankAccumulator, created by the first link-prediction batch
        self._task_names = list(vocab.tasks)
        self._val_task_stats: torch.Tensor | None = None

    # ---- steps -------------------------------------------------------------
    def signal_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Next-token cross-entropy over the vocabulary at target positions; returns (loss, per-token stats).

        The (N, V) logits are never kept for backward: ``kernels.linear_cross_entropy`` fuses the tied
        output projection with the loss; token accuracy comes from a no-grad chunked argmax."""
        import kernels

        tokens, labels = batch["tokens"], batch["labels"]
        h = self.model.encode(tokens, batch.get("prefix_len"), batch.get("roles"))  # (B, L, D)
        sel = labels != -100  # (B, L)
        q = self.model.query_vectors(h[sel])  # (N, D)
        y = labels[sel]  # (N,)
        weight = self.model.tok_emb.weight  # (V, D), tied output layer
        bias = self.model.token_bias()
        tok_loss = kernels.linear_cross_entropy(q, weight, y, bias=bias, reduction="none")  # (N,)
        with torch.no_grad():
            correct = torch.empty_like(tok_loss)
            step = max(1, (64 * 2**20) // (4 * weight.shape[0]))
            for a in range(0, q.shape[0], step):
                logits = q[a : a + step].float() @ weight.float().T
                if bias is not None:
                    logits += bias.float()
                correct[a : a + step] = (logits.argmax(-1) == y[a : a + step]).float()
        row = torch.nonzero(sel, as_tuple=True)[0]  # (N,) batch row of each target token
        return tok_loss.mean(), {"tok_loss": tok_loss.detach(), "correct": correct, "row": row}

    def lp_loss(self, batch: LPBatch) -> torch.Tensor:
        import kernels

        out = self.model.lp_forward(batch)
        targets = dict(target=batch.target) if batch.target_indptr is None else dict(
            target=None, target_indptr=batch.target_indptr, target_indices=batch.target_indices)
        if out.item_entity is None:  # no pointer: fused output layer + loss
            return kernels.linear_cross_entropy(out.query, self.model.entity_weight(), bias=self.model.entity_bias(),
                                                label_smoothing=self.label_smoothing, **targets)
        return kernels.cross_entropy_from_logits(self.model.lp_output_scores(out),
                                                 label_smoothing=self.label_smoothing, **targets)

    def shared_step(self, batch, stage: str) -> torch.Tensor:
        if isinstance(batch, LPBatch):
            loss = self.lp_loss(batch)
            self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=len(batch), sync_dist=stage != "train")
            return loss
        bsz = batch["tokens"].shape[0]
        loss, stats = self.signal_loss(batch)
        task_of_tok = batch["task"][stats["row"]]
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
                self.task_sampler.update(batch["task"].cpu().numpy(), (per_row / cnt.clamp_min(1)).cpu().numpy())
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
        """``batch["task"]`` holds the index in ``vocab.tasks``."""
        return self._task_names[task] if 0 <= task < len(self._task_names) else f"task{task}"

    def training_step(self, batch, batch_idx):
        return self.shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        if not isinstance(batch, LPBatch):
            return self.shared_step(batch, "val")
        self._rank_batch(batch, "val")

    def test_step(self, batch, batch_idx):
        self._rank_batch(batch, "test")

    # ---- link-prediction ranking -------------------------------------------------
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
        if acc is None:  # no link-prediction batch (every process sees the same kinds of batch)
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

    def on_test_epoch_end(self) -> None:
        self._log_rank_metrics("test")

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
        if self.task_sampler is not None and hasattr(self.task_sampler, "state_dict"):
            checkpoint["kgc_task_sampler"] = _plain(self.task_sampler.state_dict())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("kgc_task_sampler")
        if state is not None and self.task_sampler is not None:
            self.task_sampler.load_state_dict(state)


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
