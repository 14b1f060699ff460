"""Token vocabulary shared by pretraining and fine-tuning (DESIGN.md section 1).

Layout (ids are contiguous, in this order)::

    [PAD, BOS, EOS, SEP, MASK, UNK]                       special
    [TASK_lp, TASK_random_walk, ..., TASK_lcc]            one task token per signal + link prediction
    [ROLE_0 .. ROLE_{max_arity-1}]                        n-ary role / position tokens
    [HOP_1 .. HOP_{max_hops}]                             hop tokens (khop signal)
    [DEG_0 .. DEG_{B-1}], [LCC_0 .. LCC_{B-1}]            bucket tokens (lcc signal)
    [relation labels: 0 .. num_labels-1]                  graph edge labels (r, r^-1, n-ary role pairs)
    [entities: 0 .. num_entities-1]                       one token per entity

Relation label ``r`` (``r < R``) is the base relation ``r`` read from role 0 to
role 1; label ``r + R`` is its inverse ``r^-1``; n-ary datasets append labels for
the other role pairs (``graph_algos.graph``). So for every dataset the first
``R`` labels are the base relations, which link-prediction queries use.

The vocabulary is saved as ``vocab.json`` in each run folder and carries the
dataset fingerprint, so a checkpoint cannot be fine-tuned on another dataset
by accident (:meth:`Vocabulary.check_compatible`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from kgc import KGCError
from kgc.utils.io import read_json, write_json

SIGNALS: tuple[str, ...] = ("random_walk", "shortest_path", "khop", "ig_path", "lcc")
TASKS: tuple[str, ...] = ("lp",) + SIGNALS
SPECIALS: tuple[str, ...] = ("[PAD]", "[BOS]", "[EOS]", "[SEP]", "[MASK]", "[UNK]")
FORMAT_VERSION = 1


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
    # derived offsets (filled by __post_init__)
    task_offset: int = field(init=False)
    role_offset: int = field(init=False)
    hop_offset: int = field(init=False)
    deg_offset: int = field(init=False)
    lcc_offset: int = field(init=False)
    relation_offset: int = field(init=False)
    entity_offset: int = field(init=False)

    def __post_init__(self) -> None:
        self.task_offset = len(SPECIALS)
        self.role_offset = self.task_offset + len(TASKS)
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

    def task(self, name: str) -> int:
        if name not in TASKS:
            raise KGCError(f"unknown task {name!r}; valid: {', '.join(TASKS)}")
        return self.task_offset + TASKS.index(name)

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
            return f"[TASK:{TASKS[tok - self.task_offset]}]"
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
        except TypeError as exc:
            raise KGCError(f"{path}: malformed vocabulary ({exc})") from None

    def check_compatible(self, other: "Vocabulary", what: str = "checkpoint") -> None:
        """Raise a clear error if ``other`` (e.g. a checkpoint's vocabulary) does not match this one."""
        if other.fingerprint != self.fingerprint or other.dataset != self.dataset:
            raise KGCError(
                f"{what} was built for dataset {other.dataset!r} (fingerprint {other.fingerprint[:12]}), "
                f"not {self.dataset!r} ({self.fingerprint[:12]}); use a pretraining run of the same dataset "
                f"or --from-scratch"
            )
        if self.to_dict() != other.to_dict():
            raise KGCError(f"{what}: vocabulary layout differs from this dataset's (max_arity/hops/buckets)")

    @classmethod
    def build(
        cls,
        dataset,
        label_names: list[str] | None = None,
        max_hops: int = 4,
        num_buckets: int = 10,
    ) -> "Vocabulary":
        """Vocabulary for a :class:`kgc.data.KGDataset`.

        ``label_names`` defaults to the binary layout ``[r..., r^-1...]``; n-ary
        datasets pass the graph's label names (``KGraph.label_names``).
        """
        if label_names is None:
            label_names = list(dataset.relation_names) + [f"{r}^-1" for r in dataset.relation_names]
        return cls(
            dataset=dataset.name,
            fingerprint=dataset.fingerprint,
            entity_names=list(dataset.entity_names),
            label_names=list(label_names),
            num_relations=len(dataset.relation_names),
            max_arity=max(2, int(dataset.max_arity)),
            max_hops=max_hops,
            num_buckets=num_buckets,
        )
