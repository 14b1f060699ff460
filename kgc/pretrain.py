"""``python -m kgc.pretrain``: pretrain a KG Transformer on graph-algorithm signals.

Examples::

    python -m kgc.pretrain --signals all                         # built-in synthetic KG, offline
    python -m kgc.pretrain --dataset fb15k237 --signals ig_path,shortest_path --model hybrid
    python -m kgc.pretrain --resume runs/synthetic-pretrain-all-transformer-20261128-101500

The run folder gets ``config.yaml`` (resolved), ``vocab.json``, ``run.json``,
checkpoints every ``trainer.ckpt_every`` steps plus ``last.ckpt``, and CSV /
TensorBoard logs with per-signal loss and token accuracy.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

from kgc.cli import add_training_flags, console_flags, run_cli
from kgc.config import config_source, from_dict, to_dict
from kgc.errors import KGCError
from kgc.models.config import ModelConfig
from kgc.resolve import PRETRAIN_CONFIG_DIR as CONFIG_DIR, PRETRAIN_ORDER, RESUME_ORDER, build, pretrain_layers, resume_layers
from kgc.training.config import LoggingConfig, OptimConfig, SignalLossConfig, TrainerConfig, parse_duration
from kgc.training.pretrain_data import SignalsConfig
from kgc.utils.console import result as result_line, say


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs (``configs/pretrain/default.yaml`` documents the defaults)."""

    dataset: str = "synthetic"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    signals: SignalsConfig = field(default_factory=SignalsConfig)
    loss: SignalLossConfig = field(default_factory=SignalLossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


def resolve_config(args: argparse.Namespace) -> PretrainConfig:
    """The config of a new run (:data:`kgc.resolve.PRETRAIN_ORDER`): defaults.yaml (+ ``--dataset``) ->
    configs/pretrain/<dataset>.yaml (if any) -> --model preset (keeps model.max_len) -> --config -> --set
    -> flags -> --signals."""
    cfg, _ = build(PretrainConfig, pretrain_layers(args), PRETRAIN_ORDER,
                   where=config_source(args.config) or "pretrain config")
    return cfg


def build_parser() -> argparse.ArgumentParser:
    """The ``kgc pretrain`` / ``python -m kgc.pretrain`` argument parser."""
    p = argparse.ArgumentParser(prog="kgc pretrain", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", help="registered name or folder (default: the built-in synthetic KG)")
    p.add_argument("--signals", help="'all' or a comma list of: random_walk, shortest_path, khop, ig_path, lcc")
    p.add_argument("--model", help="model preset: transformer, hybrid (or any configs/model/*.yaml name or path)")
    add_training_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with console_flags(args):
        run(args)
    return 0


@dataclass(frozen=True)
class PretrainResult:
    """What a pretraining run returns (:func:`kgc.run_pretraining`): its run folder, the final
    checkpoint (``checkpoints/last.ckpt``, what ``kgc finetune --init`` takes), steps and signals."""

    run_dir: Path
    checkpoint: Path
    steps: int
    signals: list[str]


def run(args: argparse.Namespace, callbacks: list | None = None) -> PretrainResult | None:
    """Pretrain as the parsed ``args`` say (the CLI and :func:`kgc.api.run_pretraining` both come here).

    Named stages: :func:`resolve_stage` (the config: new, resumed or a DDP worker's) ->
    :func:`data_stage` (signals and vocabulary) -> :func:`run_folder_stage` (create, resume or join
    the run folder; ``run.json`` records the signal sizes) -> :func:`model_stage` ->
    :func:`train_stage` -> :func:`report_stage`. ``callbacks``: extra Lightning callbacks. Returns the
    result on rank 0 (``None`` on other ranks)."""
    cfg, child, ckpt_path = resolve_stage(args)
    dm, t0 = data_stage(cfg)
    run = run_folder_stage(args, cfg, dm, child, ckpt_path, t0)
    model = model_stage(cfg, dm)
    trainer = train_stage(cfg, dm, model, run, ckpt_path, callbacks)
    return report_stage(cfg, run, trainer, t0)


def resolve_stage(args: argparse.Namespace):
    """-> ``(config, the DDP worker's run folder or None, the checkpoint to resume or None)``."""
    from kgc.training.runs import RunDir, child_resume_checkpoint, child_run_dir

    ckpt_path = None
    child = child_run_dir()
    if child is not None:  # a DDP worker: rank 0 made the folder and wrote config/vocab
        args.resume = None
        cfg = from_dict(PretrainConfig, child.config(), where=str(child.config_path))
        ckpt_path = child_resume_checkpoint()
    elif args.resume:
        run = RunDir(args.resume)
        meta = run.meta()
        if meta.get("kind") != "pretrain":
            raise KGCError(f"{run.path}: not a pretraining run (kind {meta.get('kind')!r})")
        ckpt = run.last_checkpoint()
        if ckpt is None:
            raise KGCError(f"{run.path}: no checkpoint to resume from (checkpoints/last.ckpt missing)")
        cfg, _ = build(PretrainConfig, resume_layers(run.config(), args, source=str(run.config_path)), RESUME_ORDER,
                       where=str(run.config_path))
        ckpt_path = str(ckpt)
    else:
        cfg = resolve_config(args)
    return cfg, child, ckpt_path


def data_stage(cfg: PretrainConfig):
    """Seed everything, then the :class:`~kgc.training.pretrain_data.PretrainDataModule`: the dataset,
    its vocabulary and every signal's sequences (cached under ``KGC_HOME``), with a heartbeat line."""
    import pytorch_lightning as pl

    from kgc.training.pretrain_data import PretrainDataModule
    from kgc.training.progress import heartbeat

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    t0 = time.time()
    dm = PretrainDataModule(cfg.dataset, cfg.signals, cfg.trainer.batch_size, seed=cfg.seed,
                            num_workers=cfg.trainer.num_workers, log=say, model_name=cfg.model.name,
                            max_len=cfg.model.max_len)
    with heartbeat("building the pretraining signals", cfg.logging.every_s):  # a log line at least every every_s
        dm.prepare_data()
        dm.setup("fit")
    return dm, t0


def run_folder_stage(args: argparse.Namespace, cfg: PretrainConfig, dm, child, ckpt_path, t0: float):
    """A new run folder (config, vocabulary, ``run.json`` with the signal sizes), the resumed one (its
    vocabulary must match) or, in a DDP worker, rank 0's."""
    from kgc.training.runs import RunDir, announce_run_dir, new_run_path

    vocab = dm.vocab
    sig_tag = "all" if sorted(cfg.signals.names) == sorted(SignalsConfig().names) else "+".join(cfg.signals.names)
    if child is not None:
        run = child
    elif not args.resume:
        run = RunDir(new_run_path(args.out, args.runs_root, f"{dm.ds.name}-pretrain-{sig_tag}-{cfg.model.name}"))
        if run.meta_path.exists():
            raise KGCError(f"{run.path}: run folder exists; pass --resume {run.path} to continue it or another --out")
        run.create(
            {"kind": "pretrain", "dataset": dm.ds.name, "fingerprint": dm.ds.fingerprint, "model": cfg.model.name,
             "signals": cfg.signals.names, "seed": cfg.seed, "signal_sizes": dm.sizes},
            to_dict(cfg),
        )
        vocab.save(run.vocab_path)
    else:
        from kgc.vocab import Vocabulary

        run = RunDir(args.resume)
        Vocabulary.load(run.vocab_path).check_compatible(vocab, what=f"{run.path} vocabulary")
        say(f"resuming from {ckpt_path}")
    announce_run_dir(run, ckpt_path)
    say(f"run folder: {run.path}")
    say(f"{dm.ds.name}: {dm.ds.num_entities} entities, {dm.ds.num_relations} relations; "
          f"signals {dict(dm.sizes)} ({time.time() - t0:.1f}s to build)")
    return run


def model_stage(cfg: PretrainConfig, dm):
    from kgc.models import build_model

    vocab = dm.vocab
    model = build_model(cfg.model, len(vocab), vocab.num_entities, vocab.entity_offset)
    say(f"model {cfg.model.name}: {model.num_parameters() / 1e6:.2f}M parameters")
    return model


def train_stage(cfg: PretrainConfig, dm, model, run, ckpt_path, callbacks: list | None = None):
    """The LightningModule and Trainer, then ``fit``; a preempted run stops here (exit 75 via run_cli)."""
    from kgc.training.losses import SignalLoss
    from kgc.training.module import PretrainModule
    from kgc.training.preemption import raise_if_preempted
    from kgc.training.runner import build_trainer

    vocab = dm.vocab
    module = PretrainModule(
        model, vocab, cfg.optim, max_steps=cfg.trainer.max_steps,
        loss=SignalLoss.from_config(cfg.loss, vocab),
        max_time_s=parse_duration(cfg.trainer.max_time) if cfg.trainer.max_time else None,
        meta={"kind": "pretrain", "dataset": dm.ds.name, "model": to_dict(cfg.model), "signals": cfg.signals.names},
        task_sampler=dm.sampler if cfg.signals.sampler == "uncertainty" else None,
    )
    trainer = build_trainer(run, cfg.trainer, grad_clip=cfg.optim.grad_clip, resume_from=ckpt_path,
                            callbacks=callbacks, logging_cfg=cfg.logging, hparams=to_dict(cfg))
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    raise_if_preempted(trainer)
    return trainer


def report_stage(cfg: PretrainConfig, run, trainer, t0: float) -> PretrainResult | None:
    """``run.json`` (steps, wall time, finished) and the result line, on rank 0."""
    if not trainer.is_global_zero:
        return None
    run.update_meta(steps=int(trainer.global_step), wall_time_s=round(time.time() - t0, 1),
                    finished=trainer.global_step >= cfg.trainer.max_steps)
    result_line(f"done: {trainer.global_step} steps in {time.time() - t0:.0f}s; checkpoints in {run.checkpoints}")
    return PretrainResult(run_dir=run.path, checkpoint=run.checkpoints / "last.ckpt",
                          steps=int(trainer.global_step), signals=list(cfg.signals.names))


if __name__ == "__main__":
    run_cli(main)
