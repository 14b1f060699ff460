"""The seeded held-out split of one signal's examples (per-task validation during pretraining)."""

from __future__ import annotations

import numpy as np

from kgc.errors import KGCError

from .examples import SignalExamples


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
    rng = np.random.default_rng([seed, int(ex.task[0]) if n else 0, 7])  # task id
    perm = rng.permutation(n)
    held, train = np.sort(perm[:k]), np.sort(perm[k:])
    return ex.subset(train), ex.subset(held)
