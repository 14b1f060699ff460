"""Hand-made signal examples for the container, batching, held-out and sampler tests."""

from __future__ import annotations

import numpy as np

from pretrain_tasks.examples import pack
from pretrain_tasks.registry import TASKS


def toy(name, n, prompt_len=1, target_len=2, base=100):
    prompt = base + np.arange(n * prompt_len).reshape(n, prompt_len)
    target = base + 1000 + np.arange(n * 5).reshape(n, 5)
    tl = np.full(n, target_len) if np.isscalar(target_len) else np.asarray(target_len)
    return pack(name, 6 + TASKS.index(name), 3, 2, prompt, target, tl, source=np.arange(n))
