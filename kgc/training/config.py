"""Training configuration shared by pretraining and fine-tuning (strict, documented defaults).

Every field is documented here; ``configs/pretrain/*.yaml`` and
``configs/finetune/*.yaml`` set them per dataset. Unknown keys are errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and a decay schedule.

    lr: peak learning rate. weight_decay: AdamW decoupled decay (not applied to
    norms, biases and embeddings of special tokens). betas: AdamW betas.
    warmup_steps: linear warm-up from 0. schedule: after warm-up, ``constant``,
    ``cosine`` (to ``min_lr_ratio * lr`` at ``max_steps``) or ``linear``.
    horizon: where the decay ends. ``steps`` = at ``trainer.max_steps``; ``time`` = at
    ``trainer.max_time`` of training wall time or at ``max_steps``, whichever comes first (for
    budgeted runs, where the step cap is never reached; the elapsed time survives ``--resume``
    through Lightning's Timer state). ``time`` makes the schedule depend on the machine's speed.
    grad_clip: gradient-norm clipping (0 = off).
    embedding_lr: peak learning rate of the embedding tables (token and entity embeddings, entity
    bias, the direct term's relation and role tables); ``null`` = ``lr``. Knowledge-graph
    embeddings train well at 1e-2 with Adam, where a Transformer's blocks diverge; the schedule
    scales both alike.
    """

    lr: float = 5e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    warmup_steps: int = 100
    schedule: Literal["constant", "cosine", "linear"] = "cosine"
    min_lr_ratio: float = 0.05
    horizon: Literal["steps", "time"] = "steps"
    grad_clip: float = 1.0
    embedding_lr: float | None = None

    def validate(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.embedding_lr is not None and self.embedding_lr <= 0:
            raise ValueError(f"embedding_lr must be > 0 or null, got {self.embedding_lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")
        if self.horizon not in ("steps", "time"):
            raise ValueError(f"horizon must be 'steps' or 'time', got {self.horizon!r}")


@dataclass
class TrainerConfig:
    """Loop settings passed to Lightning.

    max_steps: optimiser steps. max_time: wall-clock cap (``"5m"``, ``"90s"``,
    ``"1h30m"`` or ``"DD:HH:MM:SS"``; ``null`` = none). batch_size: sequences per
    step (per device). val_every: validation every N steps (0 = only at the end).
    ckpt_every: checkpoint every N steps (a killed run loses at most this many).
    log_every: log every N steps. precision: ``auto`` = bf16-mixed on CUDA, 32 on
    CPU. accelerator/devices/strategy: as Lightning takes them (``ddp`` works on
    CPU with gloo). deterministic: ``torch.use_deterministic_algorithms``.
    num_workers: DataLoader workers.
    """

    max_steps: int = 2000
    max_time: str | None = None
    batch_size: int = 256
    val_every: int = 500
    ckpt_every: int = 500
    log_every: int = 50
    precision: str = "auto"
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    deterministic: bool = False
    num_workers: int = 0
    progress_bar: bool = True

    def validate(self) -> None:
        for key in ("max_steps", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("val_every", "ckpt_every", "num_workers"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        if self.max_time is not None:
            parse_duration(self.max_time)


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")


def parse_duration(text: str | int | float) -> float:
    """Seconds in ``"5m"``, ``"1h30m"``, ``"90s"``, ``"90"`` or ``"DD:HH:MM:SS"``; must be > 0."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        s = str(text).strip()
        if ":" in s:
            parts = s.split(":")
            if len(parts) > 4 or not all(p.strip().isdigit() for p in parts):
                raise ValueError(f"max_time {text!r}: expected DD:HH:MM:SS")
            mult = [86400, 3600, 60, 1][-len(parts):]
            seconds = float(sum(int(p) * m for p, m in zip(parts, mult)))
        else:
            try:
                seconds = float(s)
            except ValueError:
                m = _DURATION.match(s)
                if not m or not any(m.groups()):
                    raise ValueError(f"max_time {text!r}: expected e.g. '5m', '1h30m', '90s'") from None
                h, mi, se = (float(g) if g else 0.0 for g in m.groups())
                seconds = h * 3600 + mi * 60 + se
    if seconds <= 0:
        raise ValueError(f"max_time {text!r} must be > 0")
    return seconds
