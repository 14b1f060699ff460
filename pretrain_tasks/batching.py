"""The mixture of several signals' examples as one dataset, and its batching.

:func:`collate` builds next-token labels: ``labels[i, j] = tokens[i, j + 1]`` for
``prefix_len[i] - 1 <= j <= n_i - 2`` (``n_i`` = unpadded length), i.e. the SEP
position predicts the first target token, every target position predicts the
next one, and the last target token predicts EOS. Every other position is
``-100`` (ignored by ``cross_entropy``).

:func:`collate_packed` lays several sequences of one task side by side in each row (first-fit
decreasing, :func:`pack_rows`) so that a step's batch carries little padding: ``segments`` numbers
the sequences of a row 1..k (0 on PAD), ``prefix_mask`` marks their prompt tokens, and the labels are
each sequence's own (its last token predicts its EOS, never the next sequence's first token). Rows
are ``width = longest * k`` tokens wide, ``longest`` the batch's longest sequence and ``k =
max(1, min(cap // longest, ceil(total / longest)))`` with ``cap = min(PACK_ROW_CAP, max_len)`` and
``total`` the batch's tokens: as many copies of the longest sequence as fit in the cap (but no more
than the batch fills), so a batch of equal-length sequences has no padding at all and shorter ones
fill the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from kgc.errors import KGCError

from .examples import IGNORE_INDEX, PAD, SignalExamples


#: the widest packed row (tokens), further capped by the model's max_len (see the module docstring)
PACK_ROW_CAP = 96


@dataclass
class SignalBatch:
    """One batch of pretraining sequences (int64 unless said; :func:`collate` / :func:`collate_packed`).

    tokens (B, L) (PAD=0, right-padded); prefix_len (B,): the row's number of prompt tokens (its one
    sequence's prefix length when unpacked); labels (B, L): the next token at target positions, -100
    elsewhere; task (B,): each row's index in ``vocab.tasks`` (a packed row holds one task's sequences).
    Packed rows only (None when unpacked): segments (B, L) 1..k per sequence of the row, 0 on PAD;
    prefix_mask (B, L) bool, the token lies in its sequence's prompt. :meth:`encode_with` encodes
    either layout, so losses never branch on it.
    """

    tokens: torch.Tensor
    prefix_len: torch.Tensor
    labels: torch.Tensor
    task: torch.Tensor
    segments: torch.Tensor | None = None
    prefix_mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def packed(self) -> bool:
        return self.segments is not None

    def to(self, device) -> "SignalBatch":
        return replace(self, **{f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                                for f in fields(self)})

    def encode_with(self, model) -> torch.Tensor:
        """``model.encode`` of this batch -> h (B, L, D): prefix-LM per row, or per packed sequence."""
        if self.segments is None:
            return model.encode(self.tokens, self.prefix_len, None)
        return model.encode(self.tokens, None, None, segments=self.segments, prefix_mask=self.prefix_mask)


class SignalDataset(Dataset):
    """Concatenation of several signals' examples, stored flat (CSR) to avoid padding waste.

    ``dataset[i]`` -> ``(tokens int64 1-D tensor, prefix_len int, task int)``.
    ``task_index[t]`` lists the positions of task id ``t`` (index in the vocabulary's task list);
    ``task_names[t]`` is that task's signal name and ``task_ids`` the inverse mapping.
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
        self.task_names: dict[int, str] = {int(p.task[0]): p.name for p in parts}
        self.task_ids: dict[str, int] = {n: t for t, n in self.task_names.items()}
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
        return {self.task_names[t]: len(ix) for t, ix in self.task_index.items()}


def collate(batch) -> SignalBatch:
    """Pad a batch of ``(tokens, prefix_len, task)`` to its longest sequence.

    Returns a :class:`kgc.models.batch.SignalBatch`: ``tokens`` (B, L) int64 (PAD=0), ``prefix_len`` (B,), ``labels``
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
    return SignalBatch(tokens=tokens, prefix_len=prefix_len, labels=make_labels(tokens, prefix_len, lens), task=task)


def make_labels(tokens: torch.Tensor, prefix_len: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token labels at target positions (see module docstring)."""
    if lengths is None:
        lengths = (tokens != PAD).sum(1)
    j = torch.arange(tokens.shape[1], device=tokens.device)[None, :]
    shifted = torch.full_like(tokens, IGNORE_INDEX)
    shifted[:, :-1] = tokens[:, 1:]
    active = (j >= (prefix_len[:, None] - 1)) & (j < (lengths[:, None] - 1))
    return torch.where(active, shifted, torch.full_like(tokens, IGNORE_INDEX))


def pack_width(longest: int, max_len: int | None = None, total: int | None = None) -> int:
    """Row width of a packed batch whose longest sequence has ``longest`` tokens, ``total`` tokens in
    all (module docstring). Raises a KGCError naming ``model.max_len`` when that sequence does not
    fit in it."""
    longest = int(longest)
    if max_len is not None and longest > max_len:
        raise KGCError(f"a {longest}-token pretraining sequence does not fit in model.max_len {max_len}")
    cap = PACK_ROW_CAP if max_len is None else min(PACK_ROW_CAP, int(max_len))
    k = cap // longest if total is None else min(cap // longest, -(-int(total) // longest))
    return longest * max(1, k)


def pack_rows(lengths, width: int) -> tuple[np.ndarray, np.ndarray]:
    """First-fit decreasing bin packing: lengths (N,) -> (row (N,), offset (N,)) int64.

    Sequences are placed longest first, each in the first row with room (rows ``width`` tokens);
    a row's sequences are contiguous from offset 0. Equal lengths are placed as one group (the same
    result as one at a time, vectorised)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    row, off = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    if n == 0:
        return row, off
    if lengths.min() < 1 or lengths.max() > width:
        raise KGCError(f"cannot pack sequences of {lengths.min()}..{lengths.max()} tokens into rows of {width}")
    used = np.zeros(0, dtype=np.int64)  # tokens used per row
    for ln in np.unique(lengths)[::-1]:
        ix = np.flatnonzero(lengths == ln)  # this length's sequences, in input order
        cap = (width - used) // ln  # how many more fit in each open row
        cum = np.cumsum(cap)
        take = int(min(len(ix), cum[-1])) if len(cum) else 0
        if take:
            j = np.arange(take)
            r = np.searchsorted(cum, j, side="right")  # first rows with room, filled in order
            row[ix[:take]] = r
            off[ix[:take]] = used[r] + (j - (cum[r] - cap[r])) * ln
            used = used + np.bincount(r, minlength=len(used)) * ln
        rest = len(ix) - take
        if rest:  # new rows of width // ln sequences each
            per = width // ln
            j = np.arange(rest)
            row[ix[take:]] = len(used) + j // per
            off[ix[take:]] = (j % per) * ln
            used = np.concatenate([used, np.bincount(j // per) * ln])
    return row, off


def collate_packed(batch, max_len: int | None = None) -> SignalBatch:
    """Pack a batch of ``(tokens, prefix_len, task)`` into rows (module docstring): -> a packed
    :class:`SignalBatch` (B rows of :func:`pack_width`; only sequences of one task share a row).

    ``labels`` at a sequence's positions are its own :func:`make_labels`; ``prefix_len`` (B,) is the
    number of prompt tokens of each row."""
    if not len(batch):
        raise KGCError("cannot pack an empty batch")
    seqs = [torch.as_tensor(x[0], dtype=torch.long) for x in batch]
    lens = np.array([len(t) for t in seqs], dtype=np.int64)
    pre = np.array([int(x[1]) for x in batch], dtype=np.int64)
    task = np.array([int(x[2]) for x in batch], dtype=np.int64)
    width = pack_width(int(lens.max()), max_len, int(lens.sum()))
    row, off = np.zeros(len(batch), dtype=np.int64), np.zeros(len(batch), dtype=np.int64)
    row_task: list[int] = []
    for t in np.unique(task):  # one task per row
        ix = np.flatnonzero(task == t)
        r, o = pack_rows(lens[ix], width)
        row[ix], off[ix] = r + len(row_task), o
        row_task += [int(t)] * (int(r.max()) + 1)
    order = np.lexsort((off, row))  # sequences by (row, offset): segment ids 1..k within each row
    new_row = np.r_[True, row[order][1:] != row[order][:-1]]
    k = np.arange(len(batch))
    seg = np.empty(len(batch), dtype=np.int64)
    seg[order] = k - np.maximum.accumulate(np.where(new_row, k, 0)) + 1
    # token-level placement
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    within = np.arange(int(lens.sum())) - np.repeat(starts, lens)  # position inside its sequence
    r_tok = torch.from_numpy(np.repeat(row, lens))
    c_tok = torch.from_numpy(np.repeat(off, lens) + within)
    within_t = torch.from_numpy(within)
    pre_t, len_t = torch.from_numpy(np.repeat(pre, lens)), torch.from_numpy(np.repeat(lens, lens))
    flat = torch.cat(seqs)
    nxt = torch.full_like(flat, IGNORE_INDEX)
    nxt[:-1] = flat[1:]
    active = (within_t >= pre_t - 1) & (within_t < len_t - 1)  # make_labels' rule, per sequence
    B = len(row_task)
    tokens = torch.zeros((B, width), dtype=torch.long)
    labels = torch.full((B, width), IGNORE_INDEX, dtype=torch.long)
    segments = torch.zeros((B, width), dtype=torch.long)
    prefix_mask = torch.zeros((B, width), dtype=torch.bool)
    tokens[r_tok, c_tok] = flat
    labels[r_tok, c_tok] = torch.where(active, nxt, torch.full_like(nxt, IGNORE_INDEX))
    segments[r_tok, c_tok] = torch.from_numpy(np.repeat(seg, lens))
    prefix_mask[r_tok, c_tok] = within_t < pre_t
    return SignalBatch(tokens=tokens, prefix_len=prefix_mask.sum(1), labels=labels,
                       task=torch.tensor(row_task, dtype=torch.long), segments=segments, prefix_mask=prefix_mask)


def padding_fraction(batch: SignalBatch) -> float:
    """Share of a batch's token slots that are PAD."""
    return float((batch.tokens == PAD).float().mean()) if batch.tokens.numel() else 0.0
