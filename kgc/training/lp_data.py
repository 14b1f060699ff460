"""Link-prediction data (fine-tuning): queries -> token batches, with filtered validation.

Training examples are the link-prediction queries of the **train** split
(binary: ``(h, r, ?)`` and ``(t, r^-1, ?)`` per fact; n-ary: every position of
every fact), each with its single true target; the loss is 1-N label-smoothed
cross-entropy over all entities. Validation ranks the valid queries (optionally
a fixed, seeded subsample of ``val_max_queries``) against all entities, filtered
by every known fact of train+valid+test.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from kgc.vocab import Vocabulary


class QueryTensorDataset(Dataset):
    """Rows of one pre-built :class:`~kgc.models.batch.LPBatch` (a whole split: tokens, context
    items, targets); ``collate`` cuts a batch of rows and drops its all-PAD columns.

    With ``answers`` = CSR ``(indptr (Q + 1,), indices (nnz,))`` every row is a KvsAll example whose
    targets are all its known train answers; batches then carry ``target_indptr``/``target_indices``.
    """

    def __init__(self, rows, answers: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.rows = rows
        self.answers = answers

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, idx: list[int]):
        from kgc.evaluation.queries import select_rows

        ix = torch.as_tensor(idx, dtype=torch.long)
        out = select_rows(self.rows, ix)
        if self.answers is not None:
            indptr, indices = self.answers
            start, stop = indptr[ix], indptr[ix + 1]
            counts = stop - start
            out.target_indptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
            offsets = torch.repeat_interleave(start - out.target_indptr[:-1], counts)
            out.target_indices = indices[offsets + torch.arange(int(counts.sum()))]
        return out


class ResumableShuffleSampler(Sampler[int]):
    """Shuffled training order that survives a mid-epoch resume exactly.

    Epoch ``e`` visits the queries in ``randperm(N)`` drawn from a generator seeded
    with ``(seed, e)`` only, so the order is a pure function of ``(seed, e)``.
    With ``n = ceil(N / batch_size)`` optimiser steps per epoch (drop_last=False,
    no gradient accumulation), global step ``g`` is batch ``g % n`` of epoch
    ``g // n``. Each iteration reads the (restored) global step from ``step_fn``
    when it starts and skips the ``g % n`` batches already consumed, so a run
    resumed from a mid-epoch checkpoint sees exactly the batches an uninterrupted
    run would have seen (Lightning alone restarts the epoch's data). ``len()``
    stays ``N`` so Lightning's batch counters (restored from the checkpoint) end
    the epoch at the right batch.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, step_fn: Callable[[], int]):
        self.num_items = int(num_items)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.step_fn = step_fn
        self.steps_per_epoch = max(1, -(-self.num_items // self.batch_size))

    def __len__(self) -> int:
        return self.num_items

    def order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, 23, int(epoch)]).generate_state(1)[0]))
        return torch.randperm(self.num_items, generator=g)

    def __iter__(self):
        step = int(self.step_fn() or 0)
        epoch, skip = divmod(step, self.steps_per_epoch)
        yield from self.order(epoch)[skip * self.batch_size:].tolist()


def _tokenise(queries, vocab: Vocabulary, context=None, answers=None) -> QueryTensorDataset:
    from kgc.evaluation.context import query_batch

    return QueryTensorDataset(query_batch(queries, vocab, context), answers)


def kvsall_queries(train_queries, num_entities: int):
    """Unique train queries (one per (label, roles, context) key) and the CSR of all their train answers.

    This is 1-N "KvsAll" training (ConvE/TuckER, PyKEEN's LCWA): each distinct query is one example whose
    target distribution is uniform over its known train answers. Returns ``(queries, (indptr, indices))``.
    """
    from kgc.evaluation.filter import FilterIndex

    index = FilterIndex(train_queries, num_entities)
    key = index.key_ids(train_queries)
    _, first = np.unique(key, return_index=True)
    uniq = train_queries[torch.from_numpy(np.sort(first))]
    return uniq, index.lookup(uniq)


class LinkPredictionDataModule(pl.LightningDataModule):
    """``prepare_data`` downloads; ``setup`` builds queries, tokens and the filter index.

    Args:
        dataset: registered name, folder path, or an already loaded ``KGDataset``.
        targets: ``single`` (1vsAll: one example per train query with its own target) or ``all``
            (KvsAll: one example per distinct query, targets = all its train answers).
        vocab: the vocabulary (from the pretraining run, or built for this dataset).
        val_max_queries: validate on a fixed seeded subsample of this many valid queries (None = all).
        context: a ``ContextConfig`` (the model's ``context`` section); every query then carries its
            train-graph context (``kgc.evaluation.context``), built once per split at setup.
    """

    def __init__(self, dataset, vocab: Vocabulary, batch_size: int, eval_batch_size: int = 512,
                 val_max_queries: int | None = None, seed: int = 0, num_workers: int = 0,
                 targets: str = "single", context=None):
        super().__init__()
        if targets not in ("single", "all"):
            raise ValueError(f"targets must be 'single' or 'all', got {targets!r}")
        self.targets = targets
        self.dataset = dataset
        self.vocab = vocab
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_max_queries = val_max_queries
        self.seed = seed
        self.num_workers = num_workers
        self.context_cfg = context
        self.context = None
        self.ds = None
        self.train_set = None
        self.lookups: dict[str, Callable] = {}

    def prepare_data(self) -> None:
        if isinstance(self.dataset, str):
            from kgc.data import load_dataset

            load_dataset(self.dataset)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from kgc.data import load_dataset
        from kgc.evaluation.filter import FilterIndex
        from kgc.evaluation.queries import LinkPredictionQueries

        self.ds = ds = load_dataset(self.dataset) if isinstance(self.dataset, str) else self.dataset
        if self.context_cfg is not None:
            from kgc.evaluation.context import QueryContext

            self.context = QueryContext.for_dataset(ds, self.context_cfg)
        self.train_queries = LinkPredictionQueries.from_dataset(ds, "train")
        if self.targets == "all":
            uniq, answers = kvsall_queries(self.train_queries, ds.num_entities)
            self.train_set = _tokenise(uniq, self.vocab, self.context, answers)
        else:
            self.train_set = _tokenise(self.train_queries, self.vocab, self.context)
        self.filter = FilterIndex.for_dataset(ds)
        self.eval_queries = {}
        self.eval_sets = {}
        # only validation is tokenised here: the test split is evaluated once, after training, by
        # kgc.evaluation.evaluator.evaluate, which builds its own queries
        if "valid" in ds.splits and len(ds.splits["valid"]) > 0:
            q = LinkPredictionQueries.from_dataset(ds, "valid")
            if self.val_max_queries is not None and len(q) > self.val_max_queries:
                rng = np.random.default_rng([self.seed, 17])
                q = q[torch.from_numpy(np.sort(rng.choice(len(q), self.val_max_queries, replace=False)))]
            self.eval_queries["val"] = q
            self.eval_sets["val"] = _tokenise(q, self.vocab, self.context)
            self.lookups["val"] = self._make_lookup(q)

    def _make_lookup(self, queries):
        flt = self.filter

        def lookup(query_index: torch.Tensor):
            return flt.lookup(queries[query_index])

        return lookup

    @property
    def has_validation(self) -> bool:
        return "val" in self.eval_sets

    def _global_step(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.global_step) if trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed)
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:
            # DDP: Lightning swaps in a DistributedSampler (shuffled per epoch); a mid-epoch resume
            # restarts that epoch's order (not step-exact; see docs/reliability.md)
            return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=g,
                              collate_fn=self.train_set.collate, num_workers=self.num_workers, drop_last=False)
        import warnings

        # the sampler below makes mid-epoch resume exact; Lightning cannot see that and warns
        warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
        sampler = ResumableShuffleSampler(len(self.train_set), self.batch_size, self.seed, self._global_step)
        # an explicit generator keeps DataLoader iterators from drawing on the global RNG
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler, generator=g,
                          collate_fn=self.train_set.collate, num_workers=self.num_workers, drop_last=False)

    def _eval_loader(self, key: str):
        if key not in self.eval_sets:
            return []
        s = self.eval_sets[key]
        return DataLoader(s, batch_size=self.eval_batch_size, shuffle=False, collate_fn=s.collate,
                          num_workers=self.num_workers)

    def val_dataloader(self):
        return self._eval_loader("val")
