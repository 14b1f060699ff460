"""Signal examples: the container of one signal's sequences and the vectorised packing into it.

Sequence layout (a prefix-LM; see the package docstring)::

    tokens  = [TASK_x] + prompt + [SEP] + target + [EOS] + [PAD ...]
    prefix_len = 1 + len(prompt) + 1            # up to and including SEP
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kgc.vocab import TASK_OFFSET

IGNORE_INDEX = -100
PAD = 0


@dataclass
class SignalExamples:
    """The generated examples of one signal.

    ``tokens`` int64 (N, L) right-padded with PAD=0; ``prefix_len`` int64 (N,)
    (tokens up to and including SEP); ``task`` int64 (N,) = index in the vocabulary's
    task list (so ``tokens[:, 0] == vocab.task(vocab.tasks[task])``).
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
    task = int(task_token) - TASK_OFFSET  # == vocab.task_id(name) for task_token = vocab.task(name)
    return SignalExamples(name, out, np.full(n, p + 2), np.full(n, task), source)


def path_target(vocab, labels: np.ndarray, entities: np.ndarray) -> np.ndarray:
    """Target tokens ``r1 e1 r2 e2 ... rL eL`` (N, 2L) of relational paths (walks, shortest and IG paths).

    ``labels`` (N, L) are the edge labels of the steps, ``entities`` (N, L + 1) the entity chain
    whose column 0 is the start (in the prompt, not the target). Padding (-1) maps to label or
    entity 0; :func:`pack` cuts each row at its target length (twice the number of steps).
    """
    labels = np.asarray(labels)
    n, L = labels.shape
    target = np.zeros((n, 2 * L), dtype=np.int64)
    target[:, 0::2] = vocab.rel(np.maximum(labels, 0))
    target[:, 1::2] = vocab.ent(np.maximum(np.asarray(entities)[:, 1:], 0))
    return target
