"""Task mixing: weights per signal and the samplers that draw examples by task."""

from __future__ import annotations

import math
from typing import Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import Sampler

from kgc.errors import KGCError

from .batching import SignalDataset


def resolve_weights(weights: str | Mapping[str, float], sizes: Mapping[str, int]) -> dict[str, float]:
    """Task probabilities from ``"size"`` (proportional to #examples), ``"uniform"`` or ``{name: weight}``."""
    names = [n for n in sizes if sizes[n] > 0]
    if not names:
        raise KGCError("no tasks with examples to sample from")
    if isinstance(weights, str):
        if weights == "size":
            w = {n: float(sizes[n]) for n in names}
        elif weights == "uniform":
            w = {n: 1.0 for n in names}
        else:
            raise KGCError(f"unknown mixing weights {weights!r}; valid: 'size', 'uniform' or a mapping name -> weight")
    else:
        unknown = [k for k in weights if k not in sizes]
        if unknown:
            raise KGCError(f"mixing weight for {unknown[0]!r}, which is not a selected signal; selected: {', '.join(sizes)}")
        w = {}
        for n in names:
            v = float(weights.get(n, 0.0))
            if v < 0 or not math.isfinite(v):
                raise KGCError(f"mixing weight for {n!r} must be a finite number >= 0, got {v}")
            w[n] = v
    total = sum(w.values())
    if total <= 0:
        raise KGCError("mixing weights sum to 0")
    return {n: v / total for n, v in w.items()}


class WeightedTaskSampler(Sampler[int]):
    """Samples ``num_samples`` indices per epoch: a task by fixed weight, then an example of it uniformly.

    Deterministic given ``seed`` and the epoch (:meth:`set_epoch`).
    """

    def __init__(self, dataset: SignalDataset, weights: str | Mapping[str, float] = "size",
                 num_samples: int | None = None, seed: int = 0):
        self.dataset = dataset
        self.probs = resolve_weights(weights, dataset.task_sizes())
        self.num_samples = int(num_samples or len(dataset))
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def probabilities(self) -> dict[str, float]:
        """Task name -> sampling probability (the resolved fixed weights)."""
        return dict(self.probs)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch, 11])
        names = list(self.probs)
        task_ids = [self.dataset.task_ids[n] for n in names]
        choice = rng.choice(len(names), size=self.num_samples, p=[self.probs[n] for n in names])
        out = np.empty(self.num_samples, dtype=np.int64)
        for k, t in enumerate(task_ids):
            sel = choice == k
            pool = self.dataset.task_index[t]
            out[sel] = pool[rng.integers(0, len(pool), size=int(sel.sum()))]
        self.epoch += 1
        return iter(out.tolist())


class UncertaintyTaskSampler(Sampler[int]):
    """Task sampling driven by the model's current uncertainty per task (CA-MTL style).

    In the spirit of CA-MTL (Pilault, Elhattami, Pal, ICLR 2021), which samples tasks
    by the model's uncertainty on them to counter imbalance between tasks of very
    different sizes. The training loop reports per-example uncertainty (e.g. mean
    target-token entropy or loss) with :meth:`update`; per task we keep an EMA ``u_t``
    and, with ``normalize=True``, divide it by the task's first reported value (so
    tasks whose losses live on different scales are compared by relative progress).
    Tasks are drawn with probability ``p = floor + (1 - T*floor) * softmax(u / temperature)``
    (so every task keeps at least ``floor``); before a task is observed its ``u`` is the
    mean of the observed tasks' (1.0 if none). An example of the drawn task is then
    taken uniformly.

    It is an endless-per-epoch sampler of ``num_samples`` indices; the probabilities are
    re-read every ``refresh`` draws, so updates made during the epoch take effect
    (the DataLoader iterates the sampler in the main process).
    """

    def __init__(self, dataset: SignalDataset, num_samples: int | None = None, temperature: float = 1.0,
                 floor: float = 0.02, momentum: float = 0.9, normalize: bool = True, refresh: int = 64,
                 seed: int = 0):
        if temperature <= 0:
            raise KGCError(f"uncertainty sampler temperature must be > 0, got {temperature}")
        self.dataset = dataset
        self.task_ids = sorted(dataset.task_index)
        if not 0 <= floor * len(self.task_ids) <= 1:
            raise KGCError(f"uncertainty sampler floor {floor} too large for {len(self.task_ids)} tasks")
        self.num_samples = int(num_samples or len(dataset))
        self.temperature = float(temperature)
        self.floor = float(floor)
        self.momentum = float(momentum)
        self.normalize = normalize
        self.refresh = max(1, int(refresh))
        self.seed = seed
        self.epoch = 0
        self.ema: dict[int, float] = {}
        self.initial: dict[int, float] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def update(self, task_ids, uncertainty) -> None:
        """Report per-example uncertainty (tensor/array (B,)) for examples of the given task ids (B,)."""
        t = torch.as_tensor(task_ids).detach().to("cpu", torch.float64).reshape(-1).numpy().astype(np.int64)
        u = torch.as_tensor(uncertainty).detach().to("cpu", torch.float64).reshape(-1).numpy()
        if len(t) != len(u):
            raise KGCError(f"update(): {len(t)} task ids but {len(u)} uncertainty values")
        for tid in np.unique(t):
            vals = u[t == tid]
            vals = vals[np.isfinite(vals)]
            if not len(vals):
                continue
            m = float(vals.mean())
            tid = int(tid)
            if tid not in self.ema:
                self.initial[tid] = max(abs(m), 1e-8)
                self.ema[tid] = m
            else:
                self.ema[tid] = self.momentum * self.ema[tid] + (1 - self.momentum) * m

    def uncertainties(self) -> dict[int, float]:
        obs = {t: (self.ema[t] / self.initial[t] if self.normalize else self.ema[t]) for t in self.ema
               if t in self.dataset.task_index}
        fill = float(np.mean(list(obs.values()))) if obs else 1.0
        return {t: obs.get(t, fill) for t in self.task_ids}

    def probabilities(self) -> dict[str, float]:
        u = self.uncertainties()
        x = np.array([u[t] for t in self.task_ids]) / self.temperature
        e = np.exp(x - x.max())
        soft = e / e.sum()
        p = self.floor + (1 - self.floor * len(self.task_ids)) * soft
        p = p / p.sum()
        return {self.dataset.task_names[t]: float(pi) for t, pi in zip(self.task_ids, p)}

    def state_dict(self) -> dict:
        return {"ema": dict(self.ema), "initial": dict(self.initial), "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.ema = {int(k): float(v) for k, v in state["ema"].items()}
        self.initial = {int(k): float(v) for k, v in state["initial"].items()}
        self.epoch = int(state.get("epoch", 0))

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch, 13])
        self.epoch += 1
        done = 0
        while done < self.num_samples:
            k = min(self.refresh, self.num_samples - done)
            probs = self.probabilities()
            p = np.array([probs[self.dataset.task_names[t]] for t in self.task_ids])
            choice = rng.choice(len(self.task_ids), size=k, p=p / p.sum())
            for c in choice:
                pool = self.dataset.task_index[self.task_ids[c]]
                yield int(pool[rng.integers(0, len(pool))])
            done += k
