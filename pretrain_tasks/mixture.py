"""Signal examples, their mixture, batching, held-out splits and task samplers.

Sequence layout (a prefix-LM; see the package docstring)::

    tokens  = [TASK_x] + prompt + [SEP] + target + [EOS] + [PAD ...]
    prefix_len = 1 + len(prompt) + 1            # up to and including SEP

:func:`collate` builds next-token labels: ``labels[i, j] = tokens[i, j + 1]`` for
``prefix_len[i] - 1 <= j <= n_i - 2`` (``n_i`` = unpadded length), i.e. the SEP
position predicts the first target token, every target position predicts the
next one, and the last target token predicts EOS. Every other position is
``-100`` (ignored by ``cross_entropy``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from kgc.errors import KGCError
from kgc.vocab import TASKS

IGNORE_INDEX = -100
PAD = 0


# --------------------------------------------------------------------------- examples
@dataclass
class SignalExamples:
    """The generated examples of one signal.

    ``tokens`` int64 (N, L) right-padded with PAD=0; ``prefix_len`` int64 (N,)
    (tokens up to and including SEP); ``task`` int64 (N,) = index in
    :data:`kgc.vocab.TASKS` (so ``tokens[:, 0] == vocab.task(TASKS[task])``).
    ``source`` int64 (N,) is a signal-specific provenance id (the seed entity, or
    the graph edge id for ig_path; -1 when unused) used by tests and inspection.
    """

    name: str
    tokens: np.ndarray
    prefix_len: np.ndarray
    task: np.ndarray
    source: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.tokens = np.ascontiguousarray(self.tokens, dtype=np.int64)
        if self.tokens.ndim != 2:
            self.tokens = self.tokens.reshape(len(self.tokens), -1)
        n = len(self.tokens)
        self.prefix_len = np.asarray(self.prefix_len, dtype=np.int64).reshape(n)
        self.task = np.asarray(self.task, dtype=np.int64).reshape(n)
        if self.source is None:
            self.source = np.full(n, -1, dtype=np.int64)
        self.source = np.asarray(self.source, dtype=np.int64).reshape(n)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def lengths(self) -> np.ndarray:
        """Unpadded sequence lengths (N,)."""
        if self.tokens.shape[1] == 0:
            return np.zeros(len(self), dtype=np.int64)
        nonpad = self.tokens != PAD
        # last non-pad position + 1 (sequences never contain inner PADs)
        return np.where(nonpad.any(1), self.tokens.shape[1] - np.argmax(nonpad[:, ::-1], axis=1), 0)

    def prompt(self, i: int) -> np.ndarray:
        return self.tokens[i, 1 : self.prefix_len[i] - 1]

    def target(self, i: int) -> np.ndarray:
        """Target tokens of example ``i`` without the final EOS."""
        return self.tokens[i, self.prefix_len[i] : self.lengths[i] - 1]

    def subset(self, idx) -> "SignalExamples":
        idx = np.asarray(idx, dtype=np.int64)
        toks = self.tokens[idx]
        if len(toks):
            width = int(SignalExamples(self.name, toks, self.prefix_len[idx], self.task[idx]).lengths.max())
            toks = toks[:, :width]
        return SignalExamples(self.name, toks, self.prefix_len[idx], self.task[idx], self.source[idx])

    @classmethod
    def empty(cls, name: str) -> "SignalExamples":
        z = np.zeros(0, dtype=np.int64)
        return cls(name, np.zeros((0, 0), dtype=np.int64), z, z, z)


def pack(
    name: str,
    task_token: int,
    sep: int,
    eos: int,
    prompt: np.ndarray,
    target: np.ndarray,
    target_len: np.ndarray,
    source: np.ndarray | None = None,
) -> SignalExamples:
    """Vectorised layout ``[TASK] prompt [SEP] target[:len] [EOS]`` for a fixed-width prompt.

    ``prompt`` (N, P); ``target`` (N, T) (values beyond ``target_len`` ignored).
    """
    prompt = np.asarray(prompt, dtype=np.int64)
    target = np.asarray(target, dtype=np.int64)
    target_len = np.asarray(target_len, dtype=np.int64)
    n, p = prompt.shape
    if target.ndim != 2 or len(target) != n:
        target = target.reshape(n, -1)
    t = target.shape[1]
    width = 1 + p + 1 + (int(target_len.max()) if n else 0) + 1
    out = np.zeros((n, width), dtype=np.int64)
    out[:, 0] = task_token
    out[:, 1 : 1 + p] = prompt
    out[:, 1 + p] = sep
    tw = min(t, width - p - 3)
    keep = np.arange(tw)[None, :] < target_len[:, None]
    out[:, 2 + p : 2 + p + tw] = np.where(keep, target[:, :tw], PAD)
    out[np.arange(n), 2 + p + target_len] = eos
    task = TASKS.index(name)
    return SignalExamples(name, out, np.full(n, p + 2), np.full(n, task), source)


# --------------------------------------------------------------------------- dataset
class SignalDataset(Dataset):
    """Concatenation of several signals' examples, stored flat (CSR) to avoid padding waste.

    ``dataset[i]`` -> ``(tokens int64 1-D tensor, prefix_len int, task int)``.
    ``task_index[t]`` lists the positions of task id ``t`` (index in TASKS).
    """

    def __init__(self, parts: Sequence[SignalExamples]):
        parts = [p for p in parts if len(p)]
        if not parts:
            raise KGCError("no signal examples to train on (every selected signal produced 0 sequences)")
        lens = [p.lengths for p in parts]
        self.lengths = np.concatenate(lens).astype(np.int64)
        self.offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])
        flat = []
        for p, ln in zip(parts, lens):
            mask = np.arange(p.tokens.shape[1])[None, :] < ln[:, None]
            flat.append(p.tokens[mask])
        self.flat = torch.from_numpy(np.concatenate(flat))
        self.prefix_len = np.concatenate([p.prefix_len for p in parts])
        self.task = np.concatenate([p.task for p in parts])
        self.names = [p.name for p in parts]
        self.task_index: dict[int, np.ndarray] = {
            int(t): np.flatnonzero(self.task == t) for t in np.unique(self.task)
        }

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int):
        i = int(i)
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.flat[a:b], int(self.prefix_len[i]), int(self.task[i])

    def task_sizes(self) -> dict[str, int]:
        return {TASKS[t]: len(ix) for t, ix in self.task_index.items()}


def collate(batch) -> dict[str, torch.Tensor]:
    """Pad a batch of ``(tokens, prefix_len, task)`` to its longest sequence.

    Returns ``tokens`` (B, L) int64 (PAD=0), ``prefix_len`` (B,), ``labels``
    (B, L) with ``labels[i, j] = tokens[i, j + 1]`` at target positions
    (``prefix_len - 1 <= j < len_i - 1``) and -100 elsewhere, ``task`` (B,).
    """
    b = len(batch)
    lens = torch.tensor([len(x[0]) for x in batch], dtype=torch.long)
    width = int(lens.max()) if b else 0
    tokens = torch.zeros((b, width), dtype=torch.long)
    for i, (toks, _, _) in enumerate(batch):
        tokens[i, : len(toks)] = torch.as_tensor(toks, dtype=torch.long)
    prefix_len = torch.tensor([int(x[1]) for x in batch], dtype=torch.long)
    task = torch.tensor([int(x[2]) for x in batch], dtype=torch.long)
    return {"tokens": tokens, "prefix_len": prefix_len, "labels": make_labels(tokens, prefix_len, lens), "task": task}


def make_labels(tokens: torch.Tensor, prefix_len: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token labels at target positions (see module docstring)."""
    if lengths is None:
        lengths = (tokens != PAD).sum(1)
    j = torch.arange(tokens.shape[1], device=tokens.device)[None, :]
    shifted = torch.full_like(tokens, IGNORE_INDEX)
    shifted[:, :-1] = tokens[:, 1:]
    active = (j >= (prefix_len[:, None] - 1)) & (j < (lengths[:, None] - 1))
    return torch.where(active, shifted, torch.full_like(tokens, IGNORE_INDEX))


# --------------------------------------------------------------------------- held-out split
def split_heldout(ex: SignalExamples, fraction: float = 0.02, seed: int = 0, min_heldout: int = 1,
                  max_heldout: int | None = 2000) -> tuple[SignalExamples, SignalExamples]:
    """Random (seeded) ``(train, heldout)`` split of one signal's examples for per-task validation.

    ``heldout`` has ``round(fraction * N)`` examples, at least ``min_heldout`` (when N >= 2)
    and at most ``max_heldout``; ``fraction=0`` gives an empty held-out set.
    """
    if not 0.0 <= fraction < 1.0:
        raise KGCError(f"held-out fraction must be in [0, 1), got {fraction}")
    n = len(ex)
    k = int(round(fraction * n))
    if fraction > 0 and n >= 2:
        k = max(k, min_heldout)
    if max_heldout is not None:
        k = min(k, max_heldout)
    k = min(k, max(n - 1, 0))
    rng = np.random.default_rng([seed, TASKS.index(ex.name), 7])
    perm = rng.permutation(n)
    held, train = np.sort(perm[:k]), np.sort(perm[k:])
    return ex.subset(train), ex.subset(held)


# --------------------------------------------------------------------------- weights / samplers
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
        task_ids = [TASKS.index(n) for n in names]
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
        return {TASKS[t]: float(pi) for t, pi in zip(self.task_ids, p)}

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
            p = np.array([probs[TASKS[t]] for t in self.task_ids])
            choice = rng.choice(len(self.task_ids), size=k, p=p / p.sum())
            for c in choice:
                pool = self.dataset.task_index[self.task_ids[c]]
                yield int(pool[rng.integers(0, len(pool))])
            done += k
