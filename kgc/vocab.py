"""Token vocabulary shared by pretraining and fine-tuning (DESIGN.md section 1).

Layout (ids are contiguous, in this order)::

    [PAD, BOS, EOS, SEP, MASK, UNK]                       special
    [TASK_<t> for t in vocab.tasks]                       one task token per task: lp, then the signals
    [ROLE_0 .. ROLE_{max_arity-1}]                        n-ary role / position tokens
    [HOP_1 .. HOP_{max_hops}]                             hop tokens (khop signal)
    [DEG_0 .. DEG_{B-1}], [LCC_0 .. LCC_{B-1}]            bucket tokens (lcc signal)
    [relation labels: 0 .. num_labels-1]                  graph edge labels (r, r^-1, n-ary role pairs)
    [entities: 0 .. num_entities-1]                       one token per entity

Relation label ``r`` (``r < R``) is the base relation ``r`` read from role 0 to
role 1; label ``r + R`` is its inverse ``r^-1``; n-ary datasets append labels for
the other role pairs (``graph_algos.graph``). So for every dataset the first
``R`` labels are the base relations, which link-prediction queries use.

The vocabulary is built from the dataset alone (:meth:`Vocabulary.build`: entity
names, relation names and the maximum arity; no graph) and a task list, which
the signal registry supplies (``pretrain_tasks.build_vocab``: ``lp`` then
``pretrain_tasks.registry.SIGNALS`` in registry order). The task list is part
of the vocabulary: it is saved in ``vocab.json`` in each run folder and in every
checkpoint's ``kgc.vocab`` metadata, together with the dataset fingerprint. A
file written before the list was stored has no ``tasks`` field and means
:data:`LEGACY_TASKS`. :meth:`Vocabulary.check_compatible` compares the whole
layout and raises :class:`VocabularyMismatch` naming what differs, so a
checkpoint of another dataset or another layout is refused with a message,
never with a tensor shape error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from kgc.errors import KGCError
from kgc.utils.io import read_json, write_json

#: The task list of a vocabulary saved without one (``vocab.json`` / checkpoint metadata written
#: before the list was stored): link prediction, then the five signals of that time. Frozen: it
#: describes existing files. New signals are added to ``pretrain_tasks.registry`` only.
LEGACY_TASKS: tuple[str, ...] = ("lp", "random_walk", "shortest_path", "khop", "ig_path", "lcc")
#: The link-prediction task; always the first task of a vocabulary.
LP_TASK = "lp"
SPECIALS: tuple[str, ...] = ("[PAD]", "[BOS]", "[EOS]", "[SEP]", "[MASK]", "[UNK]")
#: Id of the first task token (``vocab.task(t) == TASK_OFFSET + vocab.tasks.index(t)``).
TASK_OFFSET = len(SPECIALS)
FORMAT_VERSION = 1


class VocabularyMismatch(KGCError):
    """A vocabulary (of a checkpoint or run folder) whose layout differs from the expected one."""


def label_names_for(relation_names, max_arity: int) -> list[str]:
    """Edge-label names of ``graph_algos``' label layout: ``r``, ``r^-1``, then ``r[i->j]`` per role pair."""
    from graph_algos.graph import role_pairs

    names = list(relation_names)
    out: list[str] = []
    for k, (i, j) in enumerate(role_pairs(max(2, int(max_arity)))):
        suffix = "" if k == 0 else "^-1" if k == 1 else f"[{i}->{j}]"
        out.extend(n + suffix for n in names)
    return out


@dataclass
class Vocabulary:
    """Token ids for one dataset. Build with :meth:`build`, persist with :meth:`save`/:meth:`load`."""

    dataset: str
    fingerprint: str
    entity_names: list[str]
    label_names: list[str]
    num_relations: int
    max_arity: int = 2
    max_hops: int = 4
    num_buckets: int = 10
    format_version: int = FORMAT_VERSION
    #: task names in token order; a saved vocabulary without the field means LEGACY_TASKS
    tasks: list[str] = field(default_factory=lambda: list(LEGACY_TASKS))
    # derived offsets (filled by __post_init__)
    task_offset: int = field(init=False)
    role_offset: int = field(init=False)
    hop_offset: int = field(init=False)
    deg_offset: int = field(init=False)
    lcc_offset: int = field(init=False)
    relation_offset: int = field(init=False)
    entity_offset: int = field(init=False)

    def __post_init__(self) -> None:
        self.tasks = [str(t) for t in self.tasks]
        if not self.tasks or self.tasks[0] != LP_TASK or len(set(self.tasks)) != len(self.tasks):
            raise KGCError(f"vocabulary tasks {self.tasks}: must start with {LP_TASK!r} and have no repeats")
        self.task_offset = TASK_OFFSET
        self.role_offset = self.task_offset + len(self.tasks)
        self.hop_offset = self.role_offset + self.max_arity
        self.deg_offset = self.hop_offset + self.max_hops
        self.lcc_offset = self.deg_offset + self.num_buckets
        self.relation_offset = self.lcc_offset + self.num_buckets
        self.entity_offset = self.relation_offset + len(self.label_names)

    # ---- sizes -------------------------------------------------------------
    @property
    def num_entities(self) -> int:
        return len(self.entity_names)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def __len__(self) -> int:
        return self.entity_offset + self.num_entities

    # ---- special ids -------------------------------------------------------
    pad = property(lambda self: 0)
    bos = property(lambda self: 1)
    eos = property(lambda self: 2)
    sep = property(lambda self: 3)
    mask = property(lambda self: 4)
    unk = property(lambda self: 5)

    def task_id(self, name: str) -> int:
        """Index of task ``name`` in :attr:`tasks` (the ``task`` column of signal examples and batches)."""
        if name not in self.tasks:
            raise VocabularyMismatch(f"task {name!r} is not in this vocabulary; its tasks: {', '.join(self.tasks)}")
        return self.tasks.index(name)

    def task(self, name: str) -> int:
        return self.task_offset + self.task_id(name)

    def role(self, i: int) -> int:
        if not 0 <= i < self.max_arity:
            raise KGCError(f"role {i} out of range for max arity {self.max_arity}")
        return self.role_offset + i

    def hop(self, k: int) -> int:
        if not 1 <= k <= self.max_hops:
            raise KGCError(f"hop {k} out of range 1..{self.max_hops}")
        return self.hop_offset + k - 1

    def deg_bucket(self, b: int) -> int:
        return self.deg_offset + b

    def lcc_bucket(self, b: int) -> int:
        return self.lcc_offset + b

    # Vectorised mappings work on ints, numpy arrays and torch tensors alike.
    def rel(self, label):
        return label + self.relation_offset

    def ent(self, entity):
        return entity + self.entity_offset

    def is_entity(self, token):
        return token >= self.entity_offset

    # ---- names ---------------------------------------------------------------
    def token_name(self, tok: int) -> str:
        tok = int(tok)
        if tok < self.task_offset:
            return SPECIALS[tok]
        if tok < self.role_offset:
            return f"[TASK:{self.tasks[tok - self.task_offset]}]"
        if tok < self.hop_offset:
            return f"[ROLE_{tok - self.role_offset}]"
        if tok < self.deg_offset:
            return f"[HOP_{tok - self.hop_offset + 1}]"
        if tok < self.lcc_offset:
            return f"[DEG_{tok - self.deg_offset}]"
        if tok < self.relation_offset:
            return f"[LCC_{tok - self.lcc_offset}]"
        if tok < self.entity_offset:
            return self.label_names[tok - self.relation_offset]
        if tok < len(self):
            return self.entity_names[tok - self.entity_offset]
        raise KGCError(f"token id {tok} out of range (vocabulary size {len(self)})")

    def decode(self, tokens) -> list[str]:
        return [self.token_name(t) for t in list(tokens) if int(t) != self.pad]

    # ---- persistence ---------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("task_offset", "role_offset", "hop_offset", "deg_offset", "lcc_offset",
                  "relation_offset", "entity_offset"):
            d.pop(k)
        return d

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        path = Path(path)
        if not path.exists():
            raise KGCError(f"{path}: vocabulary file missing; the run folder is incomplete (re-run or pass another run)")
        d = read_json(path)
        if not isinstance(d, dict) or d.get("format_version") != FORMAT_VERSION:
            raise KGCError(
                f"{path}: vocabulary format {d.get('format_version') if isinstance(d, dict) else '?'} "
                f"is not {FORMAT_VERSION}; rebuild the run with this kgc version"
            )
        try:
            return cls(**d)
        except (TypeError, KGCError) as exc:
            raise KGCError(f"{path}: malformed vocabulary ({exc})") from None

    def check_compatible(self, other: "Vocabulary", what: str = "checkpoint") -> None:
        """Raise :class:`VocabularyMismatch` naming what differs if ``other`` (e.g. a checkpoint's
        vocabulary) does not have this vocabulary's dataset and token layout."""
        if other.fingerprint != self.fingerprint or other.dataset != self.dataset:
            raise VocabularyMismatch(
                f"{what} was built for dataset {other.dataset!r} (fingerprint {other.fingerprint[:12]}), "
                f"not {self.dataset!r} ({self.fingerprint[:12]}); use a pretraining run of the same dataset "
                f"or --from-scratch"
            )
        diffs = self.layout_differences(other)
        if diffs:
            raise VocabularyMismatch(
                f"{what}: vocabulary layout differs from this dataset's: {'; '.join(diffs)} "
                f"(theirs vs ours); token ids would not line up: use a run made with this layout or --from-scratch"
            )

    def layout_differences(self, other: "Vocabulary") -> list[str]:
        """``"<part> differ: <other's> vs <this one's>"`` for every part of the token layout that differs."""
        out = []
        for key, label in (("tasks", "tasks"), ("max_arity", "roles (max_arity)"), ("max_hops", "hops"),
                           ("num_buckets", "buckets"), ("num_relations", "relations")):
            a, b = getattr(other, key), getattr(self, key)
            if a != b:
                out.append(f"{label} differ: {a} vs {b}")
        for key, label, one in (("label_names", "labels", "label"), ("entity_names", "entities", "entity")):
            a, b = getattr(other, key), getattr(self, key)
            if a != b:
                if len(a) != len(b):
                    out.append(f"{label} differ: {len(a)} vs {len(b)}")
                else:
                    i = next(k for k in range(len(a)) if a[k] != b[k])
                    out.append(f"{label} differ: {one} {i} is {a[i]!r} vs {b[i]!r}")
        if other.format_version != self.format_version:
            out.append(f"format differ: {other.format_version} vs {self.format_version}")
        return out

    @classmethod
    def build(
        cls,
        dataset,
        tasks=LEGACY_TASKS,
        max_hops: int = 4,
        num_buckets: int = 10,
    ) -> "Vocabulary":
        """Vocabulary of a :class:`kgc.data.KGDataset`, from the dataset alone.

        Entities and relations come from the dataset's sorted names; the edge labels are
        ``graph_algos``' layout for the dataset's maximum arity (:func:`label_names_for`: ``[r...,
        r^-1...]`` for binary KGs, then the n-ary role pairs). ``tasks`` is the task list (``lp``
        first). A new run takes the signal registry's, ``pretrain_tasks.registry.TASKS``, through
        ``pretrain_tasks.build_vocab`` (this module sits below the signals and cannot import them);
        the default, :data:`LEGACY_TASKS`, is the list of vocabularies saved without one.
        """
        max_arity = max(2, int(dataset.max_arity))
        return cls(
            dataset=dataset.name,
            fingerprint=dataset.fingerprint,
            entity_names=list(dataset.entity_names),
            label_names=label_names_for(dataset.relation_names, max_arity),
            num_relations=len(dataset.relation_names),
            max_arity=max_arity,
            max_hops=max_hops,
            num_buckets=num_buckets,
            tasks=list(tasks),
        )
