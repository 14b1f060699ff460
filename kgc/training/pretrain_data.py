"""Pretraining data: dataset -> train graph -> signal sequences -> batches (a LightningDataModule).

``prepare_data`` downloads/verifies the dataset (and fills the parse cache);
``setup`` builds the train-only graph, the vocabulary and every selected
signal's sequences (through the on-disk signal cache), splits a small held-out
part of each signal for per-task validation, and builds the samplers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from kgc.errors import KGCError


def _all_signals() -> list[str]:
    from pretrain_tasks.registry import SIGNAL_NAMES

    return list(SIGNAL_NAMES)


@dataclass
class SignalsConfig:
    """Which signals to pretrain on and how to mix them.

    names: signal names (``all`` = every registered signal). weights: ``uniform``, ``size``
    (proportional to #sequences) or ``{signal: weight}``. sampler: ``fixed``
    (the weights) or ``uncertainty`` (CA-MTL-style: tasks drawn by the model's
    current relative loss; ``temperature`` and ``floor`` shape it).
    num_examples: cap on sequences per signal (null = each signal's own default).
    heldout_fraction: share of each signal's sequences kept for validation.
    options: per-signal config overrides, e.g. ``{shortest_path: {max_distance: 2}}``.

    packing: fill each training step to a token budget and pack its sequences into rows
    (``pretrain_tasks.batching.collate_packed``) instead of ``batch_size`` right-padded sequences.
    batch_tokens: that budget, in real (non-pad) tokens; null = ``trainer.batch_size * 48``. A step
    draws sequences of its task (:class:`StepTaskBatchSampler`) while their total stays within the
    budget (at least one) and packs them first-fit decreasing into rows ``longest * max(1, cap //
    longest)`` tokens wide (``longest`` = the step's longest sequence, ``cap = min(96, model.max_len)``;
    fewer copies when the batch is too small to fill them, ``pretrain_tasks.batching.pack_width``):
    equal-length sequences leave no padding, and rows hold only one task's sequences. An epoch is
    then ``ceil(tokens of an epoch / batch_tokens)`` steps. Under DDP (world > 1) Lightning's
    distributed sampler still draws ``batch_size`` sequences per batch, which are packed within the
    batch (rows grouped by task). Validation batches stay unpacked. The hybrid model cannot take
    packed rows: the data module turns packing off for it with one log line (``config.yaml`` keeps
    the requested value). With ``packing: false`` batches are exactly the unpacked ones.

    step_tasks: ``mixed`` (default: each sequence of a step draws its own task from the mixture, so
    every step's gradient is one of the whole mixture; docs/decisions.md, "Mixed-task steps") or
    ``single`` (each optimiser step is one task's sequences; the task follows the mixture over steps).
    With one selected signal both give the same stream. Under DDP the distributed sampler's batches
    are drawn example by example from the task sampler, so they are mixed whatever this says.
    """

    names: list[str] = field(default_factory=_all_signals)
    weights: Any = "uniform"
    sampler: Literal["fixed", "uncertainty"] = "fixed"
    temperature: float = 0.5
    floor: float = 0.05
    num_examples: int | None = None
    heldout_fraction: float = 0.02
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    packing: bool = True
    batch_tokens: int | None = None
    step_tasks: Literal["single", "mixed"] = "mixed"

    def validate(self) -> None:
        from pretrain_tasks import parse_signals

        self.names = parse_signals(self.names)
        unknown = [k for k in self.options if k not in self.names]
        if unknown:
            raise ValueError(f"options for {unknown[0]!r}, which is not a selected signal ({', '.join(self.names)})")
        if self.num_examples is not None and self.num_examples < 1:
            raise ValueError(f"num_examples must be >= 1 or null, got {self.num_examples}")
        if not 0 <= self.heldout_fraction < 0.5:
            raise ValueError(f"heldout_fraction must be in [0, 0.5), got {self.heldout_fraction}")
        if not isinstance(self.weights, (str, dict)):
            raise ValueError(f"weights must be 'uniform', 'size' or a mapping, got {self.weights!r}")
        if not isinstance(self.packing, bool):
            raise ValueError(f"packing must be true or false, got {self.packing!r}")
        if self.step_tasks not in ("single", "mixed"):
            raise ValueError(f"step_tasks must be 'single' or 'mixed', got {self.step_tasks!r}")
        if self.batch_tokens is not None and (isinstance(self.batch_tokens, bool) or not isinstance(
                self.batch_tokens, int) or self.batch_tokens < 1):
            raise ValueError(f"batch_tokens must be an integer >= 1 or null, got {self.batch_tokens!r}")


class StepTaskBatchSampler(Sampler[list[int]]):
    """Single-task batches indexed by the global optimiser step: a resumed run sees exactly the
    batches an uninterrupted run would have seen.

    Batch ``g`` (global step ``g``) draws its task from ``task_sampler.probabilities()`` (fixed
    weights, or the uncertainty sampler's current ones) and then ``batch_size`` examples of that
    task uniformly with replacement, all from a generator seeded with ``(seed, g)`` alone.
    Sequences of one signal have similar lengths (``lcc`` 5 tokens, ``khop`` up to 52), so a
    batch carries little padding, and over steps the tasks follow the sampler's mixture. An
    epoch is ``ceil(len(task_sampler) / batch_size)`` batches; each iteration reads the
    (restored) global step from ``step_fn`` and yields the rest of that step's epoch (Lightning's
    batch counters, restored from the checkpoint, end the epoch at the same batch). With fixed
    weights the stream is a pure function of ``(seed, step)``; with the uncertainty sampler it also
    depends on the sampler's state, which the checkpoint carries.

    With ``batch_tokens`` (packing; ``lengths`` (N,) the dataset's sequence lengths) a batch is not
    ``batch_size`` examples but, from the same generator after the same task draw,
    ``batch_tokens // (the task's shortest length) + 1`` uniform draws cut to the longest prefix whose
    total length is at most ``batch_tokens`` (at least one example). An epoch is then
    ``ceil(len(task_sampler) * mean length / batch_tokens)`` batches.

    With ``mixed`` (``signals.step_tasks: mixed``) and more than one task, the task is drawn per
    draw instead of per step (:meth:`_mixed_draws`), so a step holds sequences of every task in
    the mixture's proportions; the rest (budget cut, step indexing) is the same.
    """

    def __init__(self, task_sampler, task_index: dict[int, np.ndarray], task_ids: dict[str, int], batch_size: int,
                 seed: int, step_fn: Callable[[], int], lengths: np.ndarray | None = None,
                 batch_tokens: int | None = None, mixed: bool = False):
        self.task_sampler = task_sampler
        self.mixed = bool(mixed)
        self.task_index = task_index
        self.task_ids = task_ids  # signal name -> task id (SignalDataset.task_ids)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.step_fn = step_fn
        self.batch_tokens = None if batch_tokens is None else int(batch_tokens)
        if self.batch_tokens is None:
            self.steps_per_epoch = max(1, -(-len(task_sampler) // self.batch_size))
        else:
            if lengths is None or self.batch_tokens < 1:
                raise KGCError("a token-budget batch sampler needs the sequence lengths and batch_tokens >= 1")
            self.lengths = np.asarray(lengths, dtype=np.int64)
            self.min_len = {t: int(self.lengths[ix].min()) for t, ix in task_index.items() if len(ix)}
            tokens = len(task_sampler) * float(self.lengths.mean())
            self.steps_per_epoch = max(1, int(np.ceil(tokens / self.batch_tokens)))

    def __len__(self) -> int:
        return self.steps_per_epoch

    def batch(self, step: int) -> list[int]:
        """The indices of the batch at global step ``step`` (B,), all of one task."""
        rng = np.random.default_rng([self.seed, 29, int(step)])
        probs = self.task_sampler.probabilities()  # {signal name: p}
        names = list(probs)
        p = np.array([probs[n] for n in names], dtype=np.float64)
        if self.mixed and len(names) > 1:
            pick = self._mixed_draws(rng, names, p / p.sum())
        else:
            tid = self.task_ids[names[rng.choice(len(names), p=p / p.sum())]]
            pool = self.task_index[tid]
            if self.batch_tokens is None:
                return pool[rng.integers(0, len(pool), size=self.batch_size)].tolist()
            pick = pool[rng.integers(0, len(pool), size=self.batch_tokens // self.min_len[tid] + 1)]  # enough to pass it
        if self.batch_tokens is None:
            return pick.tolist()
        total = np.cumsum(self.lengths[pick])
        return pick[: max(1, int(np.searchsorted(total, self.batch_tokens, side="right")))].tolist()

    def _mixed_draws(self, rng: np.random.Generator, names: list[str], p: np.ndarray) -> np.ndarray:
        """Mixed-task draws (``step_tasks: mixed``): every draw picks its own task from ``p`` (T,) and then
        an example of that task uniformly; ``batch_size`` draws, or with a token budget enough draws to
        exceed it (``batch_tokens // shortest length of a drawable task + 1``). -> (N,) dataset indices."""
        tids = [self.task_ids[n] for n in names]
        if self.batch_tokens is None:
            n = self.batch_size
        else:
            n = self.batch_tokens // min(self.min_len[t] for t, q in zip(tids, p) if q > 0) + 1
        which = rng.choice(len(names), size=n, p=p)  # (N,) task of each draw
        out = np.empty(n, dtype=np.int64)
        for k, t in enumerate(tids):
            sel = which == k
            pool = self.task_index[t]
            out[sel] = pool[rng.integers(0, len(pool), size=int(sel.sum()))]
        return out

    def __iter__(self):
        step = int(self.step_fn() or 0)
        end = (step // self.steps_per_epoch + 1) * self.steps_per_epoch
        for g in range(step, end):
            yield self.batch(g)


class PretrainDataModule(pl.LightningDataModule):
    def __init__(
        self,
        dataset: str,
        signals: SignalsConfig,
        batch_size: int,
        seed: int = 0,
        num_workers: int = 0,
        log: Callable[[str], None] | None = None,
        model_name: str | None = None,
        max_len: int | None = None,
    ):
        """``model_name``/``max_len``: the run's ``model.name`` and ``model.max_len`` (packing: the
        hybrid turns it off, and packed rows are at most ``max_len`` wide)."""
        super().__init__()
        self.dataset_name = dataset
        self.signals = signals
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.log_fn = log or (lambda msg: None)
        self.max_len = max_len
        self.packing = bool(getattr(signals, "packing", False))
        if self.packing and model_name is not None:
            from kgc.models import MODELS

            cls = MODELS.get(model_name)
            if cls is not None and not cls.supports_segments:
                self.packing = False
                self.log_fn(f"signals.packing: off for model {model_name} (its Mamba2 scan cannot reset its state "
                            "between packed sequences)")
        bt = getattr(signals, "batch_tokens", None)
        self.batch_tokens = (int(bt) if bt is not None else int(batch_size) * 48) if self.packing else None
        self.ds = self.graph = self.vocab = None
        self.train_set = self.val_set = self.sampler = None

    def prepare_data(self) -> None:
        from kgc.data import load_dataset

        load_dataset(self.dataset_name)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from graph_algos.graph import KGraph
        from kgc.data import load_dataset
        from pretrain_tasks import (
            SignalDataset, UncertaintyTaskSampler, WeightedTaskSampler, build_vocab, cached_generate,
            load_signal, split_heldout,
        )

        self.ds = ds = load_dataset(self.dataset_name)
        self.graph = KGraph.from_dataset(ds)
        self.vocab = build_vocab(ds, self.graph)
        train_parts, val_parts = [], []
        self.sizes: dict[str, int] = {}
        for name in self.signals.names:
            sig = load_signal(name, self.signals.options.get(name))
            ex = cached_generate(sig, ds, self.graph, self.vocab, num_examples=self.signals.num_examples,
                                 seed=self.seed, log=self.log_fn)
            if len(ex) == 0:
                self.log_fn(f"warning: signal {name} produced no sequences on {ds.name}; skipped")
                continue
            tr, va = split_heldout(ex, self.signals.heldout_fraction, seed=self.seed)
            train_parts.append(tr)
            val_parts.append(va)
            self.sizes[name] = len(ex)
        if not train_parts:
            raise KGCError(f"no pretraining sequences for {ds.name} with signals {', '.join(self.signals.names)}")
        self.train_set = SignalDataset(train_parts)
        if self.packing:
            longest = int(self.train_set.lengths.max())
            if longest > self.batch_tokens:
                raise KGCError(f"signals.batch_tokens {self.batch_tokens} is smaller than the longest training "
                               f"sequence ({longest} tokens)")
            from pretrain_tasks.batching import pack_width

            pack_width(longest, self.max_len)  # a sequence longer than model.max_len cannot be packed
        val_parts = [v for v in val_parts if len(v)]
        self.val_set = SignalDataset(val_parts) if val_parts else None
        if self.signals.sampler == "uncertainty":
            self.sampler = UncertaintyTaskSampler(self.train_set, temperature=self.signals.temperature,
                                                  floor=self.signals.floor, seed=self.seed)
        else:
            self.sampler = WeightedTaskSampler(self.train_set, self.signals.weights, seed=self.seed)

    def train_collate(self):
        """The training batches' collate function: packed (:func:`~pretrain_tasks.batching.collate_packed`)
        or right-padded (``collate``)."""
        from functools import partial

        from pretrain_tasks import collate, collate_packed

        return partial(collate_packed, max_len=self.max_len) if self.packing else collate

    def train_dataloader(self) -> DataLoader:
        collate = self.train_collate()
        world = self.trainer.world_size if self.trainer is not None else 1
        # an explicit generator: a DataLoader iterator without one draws its base seed from the global
        # torch RNG, which would shift dropout after each epoch boundary (and break the RNG restore
        # of a resumed run, kgc.training.preemption.RNGStateCallback)
        g = torch.Generator().manual_seed(self.seed)
        if world == 1:  # step-indexed batches, single- or mixed-task (DDP keeps Lightning's distributed sampler,
            # its batch_size sequences packed within the batch when packing)
            batches = StepTaskBatchSampler(self.sampler, self.train_set.task_index, self.train_set.task_ids,
                                           self.batch_size, self.seed, self._global_step,
                                           lengths=self.train_set.lengths, batch_tokens=self.batch_tokens,
                                           mixed=self.signals.step_tasks == "mixed")
            return DataLoader(self.train_set, batch_sampler=batches, collate_fn=collate, num_workers=self.num_workers,
                              generator=g)
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=self.sampler, collate_fn=collate,
                          num_workers=self.num_workers, drop_last=False, generator=g)

    def _global_step(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.global_step) if trainer is not None else 0

    def val_dataloader(self):
        from pretrain_tasks import collate

        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, collate_fn=collate,
                          num_workers=self.num_workers)
