"""kgc: knowledge-graph completion Transformers pretrained on graph-algorithm signals.

Implements "Using Graph Algorithms to Pretrain Graph Completion Transformers"
(Pilault, Galkin, Fatemi, Taslakian, Vazquez, Pal; arXiv 2210.07453), with the
open points fixed in DESIGN.md / docs/decisions.md.
"""

from kgc._version import __version__  # noqa: F401  (a leaf module: run folders record it)
from kgc.errors import KGCError, Preempted  # noqa: F401  (re-exported: ``kgc.KGCError``, ``kgc.Preempted``)


def __getattr__(name):  # lazy: keep `import kgc` cheap
    if name == "load_dataset":
        from kgc.data import load_dataset

        return load_dataset
    if name in ("run_finetuning", "run_pretraining"):
        import kgc.api as _api

        return getattr(_api, name)
    if name == "predict":  # the module is callable: kgc.predict(...) == kgc.predict.predict(...)
        import kgc.predict as _predict

        return _predict
    raise AttributeError(f"module 'kgc' has no attribute {name!r}")
