"""``python -m kgc.finetune``: fine-tune for link prediction, select on validation MRR, evaluate test once.

Examples::

    python -m kgc.finetune --dataset wn18rr                 # from the newest pretraining run of wn18rr, if any
    python -m kgc.finetune --dataset umls --from-scratch
    python -m kgc.finetune --dataset fb15k237 --init runs/<pretrain-run>/checkpoints/last.ckpt --max-time 30m
    python -m kgc.finetune --dataset ./my_kg/               # a folder with train/valid/test.txt

Writes ``runs/<dataset>-finetune-<init>-<model>-<time>/`` with ``metrics.json``
(test metrics under the stated tie policy, pessimistic beside them, breakdowns
per direction/relation/arity), checkpoints (``best.ckpt`` by validation MRR),
the resolved config and logs.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kgc.cli import add_training_flags, console_flags, run_cli
from kgc.config import config_source, to_dict
from kgc.errors import KGCError
from kgc.models.config import ModelConfig, check_context_fits
from kgc.resolve import (BUDGET_DIR, FINETUNE_CONFIG_DIR as CONFIG_DIR, FINETUNE_ORDER, FINETUNE_TUNABLE_MODEL_KEYS,
                         RESUME_ORDER, Layer, build, checkpoint_layer, dataset_layers, default_dataset,
                         finetune_base_layers, finetune_layers, pin_architecture, preset_layer, resume_layers,
                         size_defaults, uses_budget_recipe)
from kgc.training.config import LoggingConfig, OptimConfig, TrainerConfig, parse_duration
from kgc.utils.console import result as result_line, say

__all__ = ["BUDGET_DIR", "CONFIG_DIR", "FINETUNE_TUNABLE_MODEL_KEYS", "FinetuneConfig", "FinetuneResult",
           "build_parser", "dataset_layers", "main", "pin_architecture", "resolve_config", "run", "size_defaults",
           "uses_budget_recipe"]


@dataclass
class EvalConfig:
    """Evaluation settings. batch_size: queries per forward pass. val_max_queries: validate on a
    fixed seeded subsample (null = all valid queries). tie_policy: headline ranks (realistic |
    optimistic | pessimistic; pessimistic is always reported beside). chunk_mb: memory bound of a
    score block in ranking."""

    batch_size: int = 512
    val_max_queries: int | None = 10000
    tie_policy: str = "realistic"
    chunk_mb: int = 256

    def validate(self) -> None:
        from kgc.evaluation.ranks import TIE_POLICIES

        if self.tie_policy not in TIE_POLICIES:
            raise ValueError(f"tie_policy must be one of {', '.join(TIE_POLICIES)}, got {self.tie_policy!r}")
        if self.batch_size < 1 or self.chunk_mb < 1:
            raise ValueError("batch_size and chunk_mb must be >= 1")
        if self.val_max_queries is not None and self.val_max_queries < 1:
            raise ValueError(f"val_max_queries must be >= 1 or null, got {self.val_max_queries}")


@dataclass
class FinetuneConfig:
    """A fine-tuning run (``configs/finetune/default.yaml`` documents the defaults).

    label_smoothing: of the 1-N cross-entropy. targets: ``single`` (1vsAll: every train query is
    one example with its own answer, as CoKE/HittER) or ``all`` (KvsAll: one example per distinct query,
    the target distribution uniform over all its train answers, as ConvE/TuckER/PyKEEN's LCWA). patience: stop after this many validations
    without a better validation MRR (0 = never stop early).
    published: reference numbers the config aims at (free-form, for reports).
    """

    dataset: str = "synthetic"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    label_smoothing: float = 0.1
    targets: Literal["single", "all"] = "single"
    patience: int = 5
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    published: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")


@dataclass(frozen=True)
class FinetuneResult:
    """What a fine-tuning run returns (:func:`kgc.run_finetuning`): its ``metrics.json`` content,
    its run folder and the checkpoint it evaluated (``best.ckpt`` by validation MRR, else ``last.ckpt``)."""

    metrics: dict[str, Any]
    run_dir: Path
    checkpoint: Path

    @property
    def test_evaluated(self) -> bool:
        """False for a run made with ``--skip-test`` (validation only)."""
        return "metrics" in self.metrics

    @property
    def mrr(self) -> float | None:
        """Test MRR under the run's tie policy (``None`` with ``--skip-test``)."""
        return float(self.metrics["metrics"]["mrr"]) if self.test_evaluated else None

    @property
    def valid_mrr(self) -> float | None:
        """Validation MRR of the evaluated checkpoint (``None`` for a dataset without validation)."""
        valid = self.metrics.get("valid")
        return None if not valid else float(valid["metrics"]["mrr"])

    def hits(self, k: int) -> float | None:
        """Test Hits@k (k in 1, 3, 10; ``None`` with ``--skip-test``)."""
        return float(self.metrics["metrics"][f"hits@{k}"]) if self.test_evaluated else None


#: parameter prefixes a fine-tuning model may have beyond its pretraining checkpoint
FINETUNE_NEW_PARAMS = ("direct.", "pointer.")


def resolve_config(args: argparse.Namespace, ds, dataset: str | None = None, model: Layer | None = None,
                   base: list[Layer] | None = None) -> FinetuneConfig:
    """The :class:`FinetuneConfig` of a new run of ``ds`` (:data:`kgc.resolve.FINETUNE_ORDER`: defaults ->
    size defaults -> dataset file -> ``model`` (a checkpoint's pinned architecture or a ``--model`` preset)
    -> ``--config`` -> ``--set`` -> flags). ``dataset``: the name or folder as given (default ``args.dataset``);
    ``base``: the first three layers when the caller already has them."""
    dataset = dataset if dataset is not None else (args.dataset or default_dataset("finetune"))
    cfg, _ = build(FinetuneConfig, finetune_layers(ds, dataset, args, model, base=base), FINETUNE_ORDER,
                   where=config_source(args.config) or "finetune config")
    return cfg


def find_init(args, ds, runs_root: str) -> Path | None:
    """The checkpoint to start from: --init, else the newest pretraining run of this dataset, else None."""
    from kgc.training.runs import find_latest_run

    if args.from_scratch:
        if args.init:
            raise KGCError("--init and --from-scratch exclude each other")
        return None
    if args.init:
        p = Path(args.init)
        if p.is_dir():  # a run folder
            from kgc.training.runs import RunDir

            ck = RunDir(p).last_checkpoint()
            if ck is None:
                raise KGCError(f"{p}: run folder has no checkpoints/last.ckpt")
            return ck
        if not p.is_file():
            raise KGCError(f"{p}: --init checkpoint not found")
        return p
    run = find_latest_run(runs_root, "pretrain", ds.name, ds.fingerprint)
    return None if run is None else run.last_checkpoint()


def build_parser() -> argparse.ArgumentParser:
    """The ``kgc finetune`` / ``python -m kgc.finetune`` argument parser."""
    p = argparse.ArgumentParser(prog="kgc finetune", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", help="registered name or folder (default: the built-in synthetic KG)")
    p.add_argument("--init", help="pretraining checkpoint (or run folder) to start from")
    p.add_argument("--from-scratch", action="store_true", help="do not start from a pretraining checkpoint")
    p.add_argument("--model", help="model preset when training from scratch (transformer, hybrid, ...)")
    p.add_argument("--skip-test", action="store_true",
                   help="evaluate the chosen checkpoint on validation only, never on test (e.g. HPO trials)")
    add_training_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with console_flags(args):
        run(args)
    return 0


@dataclass
class FinetuneSetup:
    """What the *resolve* stage decides: the config, dataset, vocabulary and run folder, the checkpoint
    to initialise from (``init_path``/``init_state``/``init_meta``) or to resume (``resume_ckpt``)."""

    args: argparse.Namespace
    cfg: FinetuneConfig
    ds: Any
    vocab: Any
    run: Any
    init_path: Any = None
    init_state: dict[str, Any] | None = None
    init_meta: dict[str, Any] = field(default_factory=dict)
    resume_ckpt: Any = None
    t0: float = field(default_factory=time.time)
    train_time: float = 0.0


def run(args: argparse.Namespace, callbacks: list | None = None) -> "FinetuneResult | None":
    """Fine-tune as the parsed ``args`` say (the CLI and :func:`kgc.api.run_finetuning` both come here).

    Named stages: :func:`resolve_stage` (config, dataset, vocabulary, init checkpoint, run folder) ->
    :func:`data_stage` -> :func:`model_stage` (build, load the init weights) -> :func:`train_stage` ->
    :func:`evaluation_stage` (the chosen checkpoint on test once, and valid) -> :func:`report_stage`
    (``metrics.json``, trackers, the result). ``callbacks``: extra Lightning callbacks (e.g. an HPO
    pruner). Returns the result on rank 0 (``None`` on the other ranks of a multi-process run)."""
    setup = resolve_stage(args)
    dm = data_stage(setup)
    model = model_stage(setup, dm)
    trainer = train_stage(setup, dm, model, callbacks)
    if not trainer.is_global_zero:
        return None
    chosen, result, val_result = evaluation_stage(setup, dm, model)
    return report_stage(setup, trainer, chosen, result, val_result)


def resolve_stage(args: argparse.Namespace) -> FinetuneSetup:
    """Resume (``--resume`` or a DDP worker: the run folder's config, vocabulary and checkpoint) or
    a new run (:func:`resolve_config`, the init checkpoint, a new run folder with config and vocabulary)."""
    from kgc.data import load_dataset
    from kgc.training.checkpoint import check_vocab_fits, load_checkpoint_file
    from kgc.training.runs import RunDir, announce_run_dir, child_resume_checkpoint, child_run_dir, new_run_path
    from kgc.vocab import Vocabulary
    from pretrain_tasks import build_vocab

    t0 = time.time()
    resume_ckpt = None
    init_meta: dict[str, Any] = {}
    child = child_run_dir()
    if child is not None:  # a DDP worker started by Lightning: reuse rank 0's run folder
        args.resume = str(child.path)
    if args.resume:
        run = RunDir(args.resume)
        meta = run.meta()
        if meta.get("kind") != "finetune":
            raise KGCError(f"{run.path}: not a fine-tuning run (kind {meta.get('kind')!r})")
        resume_ckpt = run.last_checkpoint()
        if resume_ckpt is None and child is None:
            raise KGCError(f"{run.path}: no checkpoint to resume from (checkpoints/last.ckpt missing)")
        cfg, _ = build(FinetuneConfig, resume_layers(run.config(), args, source=str(run.config_path)), RESUME_ORDER,
                       where=str(run.config_path))
        ds = load_dataset(cfg.dataset)
        vocab = Vocabulary.load(run.vocab_path)
        init_path = meta.get("init")
        init_meta = meta.get("init_meta") or {}
        init_state = None
        if child is not None:
            resume_ckpt = child_resume_checkpoint()
            if init_path and resume_ckpt is None:
                init_state = load_checkpoint_file(init_path)["state_dict"]
    else:
        dataset = args.dataset or default_dataset("finetune")
        ds = load_dataset(dataset)
        base = finetune_base_layers(ds, dataset, args)
        for layer in base:
            if layer.name == "dataset file":
                say(f"config layer {layer.source}")
        model_layer = None
        init_path = find_init(args, ds, args.runs_root)
        init_state = None
        vocab = build_vocab(ds)  # from the dataset alone (no graph), with the signal registry's task list
        if init_path is not None:
            ckpt = load_checkpoint_file(init_path)
            kmeta = ckpt["kgc"]
            if kmeta.get("kind") != "pretrain":
                raise KGCError(f"{init_path}: not a pretraining checkpoint (kind {kmeta.get('kind')!r})")
            try:
                ck_vocab = Vocabulary(**kmeta["vocab"])
            except (KeyError, TypeError) as exc:
                raise KGCError(f"{init_path}: checkpoint vocabulary unreadable ({exc})") from None
            vocab.check_compatible(ck_vocab, what=f"checkpoint {init_path}")
            check_vocab_fits(ckpt["state_dict"], ck_vocab, what=f"checkpoint {init_path}")
            model_layer = checkpoint_layer(kmeta["model"], init_path)  # pinned: decided here, once
            init_state = ckpt["state_dict"]
            init_meta = {"signals": kmeta.get("signals"), "pretrain_steps": int(ckpt.get("global_step", 0)),
                         "checkpoint": str(init_path)}
            if args.model:
                raise KGCError("--model cannot change the architecture of a pretrained checkpoint; use --from-scratch")
            say(f"starting from pretraining checkpoint {init_path} "
                  f"(signals {init_meta['signals']}, {init_meta['pretrain_steps']} steps)")
        else:
            if args.model:
                model_layer = preset_layer(args.model)
            say("training from scratch" + (" (--from-scratch)" if args.from_scratch else
                  f" (no pretraining run of {ds.name} in {args.runs_root})"))
        cfg = resolve_config(args, ds, dataset, model_layer, base=base)
        check_context_fits(cfg.model, ds.max_arity,
                           where=f"checkpoint {init_path}" if init_state is not None else (config_source(args.config) or "finetune config"))
        if cfg.model.num_roles < ds.max_arity:  # role ids run to max_arity - 1: an IndexError mid-training otherwise
            raise KGCError(f"model.num_roles={cfg.model.num_roles} is below the maximum arity {ds.max_arity} of "
                           f"{ds.name}; set model.num_roles >= {ds.max_arity}")
        tag = "scratch" if init_path is None else ("pt-" + "+".join(init_meta.get("signals") or ["?"]) if
                                                   len(init_meta.get("signals") or []) < 5 else "pt-all")
        run = RunDir(new_run_path(args.out, args.runs_root, f"{ds.name}-finetune-{tag}-{cfg.model.name}"))
        if run.meta_path.exists():
            raise KGCError(f"{run.path}: run folder exists; pass --resume {run.path} to continue it or another --out")
        run.create({"kind": "finetune", "dataset": ds.name, "fingerprint": ds.fingerprint, "model": cfg.model.name,
                    "seed": cfg.seed, "init": None if init_path is None else str(init_path), "init_meta": init_meta},
                   to_dict(cfg))
        vocab.save(run.vocab_path)
    announce_run_dir(run, str(resume_ckpt) if resume_ckpt else None)
    say(f"run folder: {run.path}")
    return FinetuneSetup(args=args, cfg=cfg, ds=ds, vocab=vocab, run=run, init_path=init_path, init_state=init_state,
                         init_meta=init_meta, resume_ckpt=resume_ckpt, t0=t0)


def data_stage(setup: FinetuneSetup):
    """Seed everything, then the :class:`~kgc.training.lp_data.LinkPredictionDataModule` (train queries,
    sampled validation, filter lookups, query context)."""
    import pytorch_lightning as pl
    import torch

    from kgc.training.lp_data import LinkPredictionDataModule

    cfg = setup.cfg
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.trainer.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    dm = LinkPredictionDataModule(setup.ds, setup.vocab, cfg.trainer.batch_size, cfg.eval.batch_size,
                                  cfg.eval.val_max_queries, seed=cfg.seed, num_workers=cfg.trainer.num_workers,
                                  targets=cfg.targets, context=cfg.model.context)
    dm.setup("fit")
    return dm


def model_stage(setup: FinetuneSetup, dm):
    """Build the model; load the pretraining weights (only :data:`FINETUNE_NEW_PARAMS` may be missing)."""
    from kgc.models import build_model
    from kgc.training.checkpoint import strip_model_prefix

    cfg, vocab, ds, init_state, init_path = setup.cfg, setup.vocab, setup.ds, setup.init_state, setup.init_path
    model = build_model(cfg.model, len(vocab), vocab.num_entities, vocab.entity_offset)
    if init_state is not None:
        state = strip_model_prefix(init_state)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(FINETUNE_NEW_PARAMS)]
        if unexpected or missing:
            raise KGCError(f"checkpoint {init_path} does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    say(f"{ds.name}: {len(dm.train_set)} training queries, "
          f"{len(dm.eval_sets.get('val', [])) if dm.has_validation else 0} validation queries; "
          f"model {cfg.model.name} {model.num_parameters() / 1e6:.2f}M parameters")
    return model


def train_stage(setup: FinetuneSetup, dm, model, callbacks: list | None = None):
    """The LightningModule and Trainer (early stopping on val/mrr, best.ckpt), then ``fit``; a preempted
    run stops here (exit 75 through ``run_cli``), before any evaluation."""
    from pytorch_lightning.callbacks import EarlyStopping

    from kgc.training.losses import lp_loss_for
    from kgc.training.module import LinkPredictionModule
    from kgc.training.preemption import raise_if_preempted
    from kgc.training.runner import build_trainer

    cfg, vocab, ds, run, resume_ckpt = setup.cfg, setup.vocab, setup.ds, setup.run, setup.resume_ckpt
    # dataset_source: what load_dataset() takes (a registered name or the custom folder), so evaluate and
    # predict find a custom folder's train graph (for the context and the filter) without --dataset
    meta = {"kind": "finetune", "dataset": ds.name, "dataset_source": str(cfg.dataset), "model": to_dict(cfg.model)}
    module = LinkPredictionModule(model, vocab, cfg.optim, max_steps=cfg.trainer.max_steps,
                                  loss=lp_loss_for(cfg.targets, cfg.label_smoothing),
                                  max_time_s=parse_duration(cfg.trainer.max_time) if cfg.trainer.max_time else None,
                                  filter_lookups=dm.lookups, meta=meta)
    callbacks = list(callbacks or [])
    monitor = "val/mrr" if dm.has_validation else None
    if monitor and cfg.patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode="max", patience=cfg.patience, check_on_train_epoch_end=False))
    trainer = build_trainer(run, cfg.trainer, monitor=monitor, mode="max", callbacks=callbacks,
                            grad_clip=cfg.optim.grad_clip, resume_from=resume_ckpt,
                            logging_cfg=cfg.logging, hparams=to_dict(cfg))
    trainer.fit(module, datamodule=dm, ckpt_path=str(resume_ckpt) if resume_ckpt else None)
    raise_if_preempted(trainer)
    setup.train_time = time.time() - setup.t0
    return trainer


def evaluation_stage(setup: FinetuneSetup, dm, model):
    """Load the chosen checkpoint (``best.ckpt`` by validation MRR, else ``last.ckpt``) and evaluate it
    on test (once; not with ``--skip-test``) and on the full validation split."""
    from kgc.evaluation.evaluator import ModelScorer, evaluate
    from kgc.training.checkpoint import load_checkpoint_file, strip_model_prefix
    from kgc.training.progress import heartbeat

    cfg, ds, run, args = setup.cfg, setup.ds, setup.run, setup.args
    best = run.checkpoints / "best.ckpt"
    chosen = best if best.is_file() else run.last_checkpoint()
    if chosen is None:
        raise KGCError(f"{run.path}: training wrote no checkpoint")
    state = load_checkpoint_file(chosen)["state_dict"]
    model.load_state_dict(strip_model_prefix(state))
    model.eval()
    scorer = ModelScorer(model, setup.vocab, dm.context)
    say(f"final evaluation of {chosen.name}" + (" on validation only (--skip-test)" if args.skip_test else ""))
    with heartbeat("final evaluation", cfg.logging.every_s):  # a batch log gets a line at least every every_s
        result = None
        if not args.skip_test:  # the test split is read once, here, after selection on validation
            result = evaluate(scorer, ds, "test", batch_size=cfg.eval.batch_size, tie_policy=cfg.eval.tie_policy,
                              chunk_bytes=cfg.eval.chunk_mb * 2**20, distributed=False)
        val_result = None
        if dm.has_validation:
            val_result = evaluate(scorer, ds, "valid", batch_size=cfg.eval.batch_size, tie_policy=cfg.eval.tie_policy,
                                  chunk_bytes=cfg.eval.chunk_mb * 2**20, distributed=False)
    return chosen, result, val_result


def report_stage(setup: FinetuneSetup, trainer, chosen, result, val_result) -> FinetuneResult:
    """``metrics.json`` (headline + pessimistic + breakdowns + provenance), the trackers' final metrics
    and artifact, ``run.json`` marked finished, the result lines."""
    from kgc.training.runs import git_commit, hardware
    from kgc.training.tracking import log_final_metrics
    from kgc.utils.io import write_json

    cfg, run, init_meta = setup.cfg, setup.run, setup.init_meta
    metrics = {
        **(result.to_dict() if result is not None else {}),
        "test_evaluated": result is not None,
        "valid": None if val_result is None else {"metrics": val_result.metrics, "pessimistic": val_result.pessimistic},
        "checkpoint": str(chosen),
        "run": str(run.path),
        "model": cfg.model.name,
        "signals": init_meta.get("signals") or [],
        "pretrain_steps": init_meta.get("pretrain_steps", 0),
        "init_checkpoint": init_meta.get("checkpoint"),
        "finetune_steps": int(trainer.global_step),
        "finetune_max_time": cfg.trainer.max_time,
        "config": to_dict(cfg),
        "seed": cfg.seed,
        "train_wall_time_s": round(setup.train_time, 1),
        "wall_time_s_total": round(time.time() - setup.t0, 1),
        "commit": git_commit(),
        "hardware": hardware(),
    }
    write_json(run.metrics_path, metrics)
    log_final_metrics(trainer, run.metrics_path, metrics)  # test metrics + metrics.json to MLflow / W&B
    run.update_meta(steps=int(trainer.global_step), finished=True, test_mrr=None if result is None else result.mrr)
    result_line((result or val_result).summary())
    result_line(f"metrics written to {run.metrics_path}")
    return FinetuneResult(metrics=metrics, run_dir=run.path, checkpoint=Path(chosen))


if __name__ == "__main__":
    run_cli(main)
