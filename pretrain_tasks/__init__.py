"""Pretraining signals: graph-algorithm output -> ``(prompt, target)`` token sequences.

Five signals (DESIGN.md section 2), one file each, all built from the **train**
graph only (:class:`graph_algos.graph.KGraph` of ``ds.splits["train"]``;
validation/test facts are never read):

==================  =========================  ===============================================
signal              prompt                     target
==================  =========================  ===============================================
``random_walk``     ``e0``                     ``r1 e1 ... rL eL`` (walk generation)
``shortest_path``   ``s t``                    ``r1 e1 ... rk t``: one shortest path, every
                                               direct ``s``-``t`` edge excluded
``khop``            ``c``                      ``HOP_k r e`` items, hop 1 first (see khop.py)
``ig_path``         ``h r t`` (a train edge)   ``r1 e1 ... rk t``: the best information-gain
                                               path with the fact's own edges removed
``lcc``             ``e``                      ``DEG_b LCC_c`` bucket tokens
==================  =========================  ===============================================

Sequence layout (prefix-LM), ``prefix_len`` = number of tokens up to and including SEP::

    tokens = [TASK_x] + prompt + [SEP] + target + [EOS]      (right-padded with PAD = 0)

The model attends bidirectionally over the prefix and causally over the rest and
is trained by next-token prediction at target positions:
``labels[i, j] = tokens[i, j + 1]`` for ``prefix_len[i] - 1 <= j <= len_i - 2``
(the SEP position predicts the first target token; the last target token
predicts EOS), ``-100`` elsewhere (:func:`pretrain_tasks.batching.collate`).
Entities are ``vocab.ent(e)``, edge labels ``vocab.rel(l)`` with the
``graph_algos`` label layout (``r``, ``r + R`` = ``r^-1``, n-ary role pairs).

API::

    from graph_algos.graph import KGraph
    from pretrain_tasks import build_vocab, get_signal, load_signal, parse_signals, cached_generate
    g = KGraph.from_dataset(ds)                       # train facts only
    vocab = build_vocab(ds)                           # Vocabulary.build(ds, tasks=registry.TASKS): no graph
    sig = load_signal("shortest_path", ["max_distance=3"])   # configs/signals/<name>.yaml + overrides
    ex = sig.generate(ds, g, vocab, num_examples=None, seed=0)   # SignalExamples (None = config / all)
    ex = cached_generate(sig, ds, g, vocab, seed=0)  # same, cached under kgc_home()/signals/
    train, held = split_heldout(ex, 0.02, seed=0)
    data = SignalDataset([train_a, train_b, ...]); sampler = WeightedTaskSampler(data, "size")
    loader = DataLoader(data, batch_size=..., sampler=sampler, collate_fn=collate)

Modules: :mod:`~pretrain_tasks.examples` (``SignalExamples``, ``pack``, ``path_target``),
:mod:`~pretrain_tasks.batching` (``SignalDataset``, ``collate``, ``collate_packed``, ``make_labels``),
:mod:`~pretrain_tasks.heldout` (``split_heldout``), :mod:`~pretrain_tasks.sampling` (weights, samplers),
:mod:`~pretrain_tasks.registry` (the signal list, ``TASKS``, ``build_vocab``), one module per signal.

Mixing (:mod:`pretrain_tasks.sampling`): fixed weights ("size", "uniform" or
per signal) with :class:`WeightedTaskSampler`, or :class:`UncertaintyTaskSampler`
(CA-MTL style: the loop reports per-example uncertainty, tasks are drawn
∝ softmax(EMA uncertainty / temperature) with a floor).

Caching (:mod:`pretrain_tasks.cache`): one ``.npz`` per (dataset fingerprint,
signal, config, num_examples, seed, vocabulary layout, format version).

Streaming (:class:`pretrain_tasks.streaming.StreamingSignalDataset`): for graphs
too large to precompute, an ``IterableDataset`` generates fixed-size chunks on
the fly (chunk ``c`` of worker ``w`` uses seed ``(seed, c, w)``), mixing signals
by weight; no cache, nothing held in memory but the current chunk.
"""

from .base import Signal
from .batching import SignalDataset, collate, collate_packed, make_labels
from .cache import cached_generate
from .examples import SignalExamples, pack, path_target
from .heldout import split_heldout
from .registry import SIGNALS, TASKS, build_vocab, get_signal, load_signal, parse_signals
from .sampling import UncertaintyTaskSampler, WeightedTaskSampler, resolve_weights
from .streaming import StreamingSignalDataset

__all__ = [
    "SIGNALS",
    "Signal",
    "SignalDataset",
    "SignalExamples",
    "StreamingSignalDataset",
    "TASKS",
    "UncertaintyTaskSampler",
    "WeightedTaskSampler",
    "build_vocab",
    "cached_generate",
    "collate",
    "collate_packed",
    "get_signal",
    "load_signal",
    "make_labels",
    "pack",
    "parse_signals",
    "path_target",
    "resolve_weights",
    "split_heldout",
]
