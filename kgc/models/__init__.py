"""Sequence encoders and heads (docs/models.md; contract in docs/architecture.md "Models").

``build_model(cfg, vocab_size, num_entities, entity_offset)`` returns a
:class:`KGCModel`: ``transformer`` (prefix-LM Transformer) or ``hybrid``
(Zamba-style Mamba2 backbone with one shared attention block).
"""

from __future__ import annotations

from kgc.errors import KGCError
from kgc.models.base import KGCModel
from kgc.models.config import ModelConfig, load_model_config, preset_names
from kgc.models.hybrid import HybridModel
from kgc.models.transformer import TransformerModel

MODELS: dict[str, type[KGCModel]] = {"transformer": TransformerModel, "hybrid": HybridModel}


def build_model(cfg: ModelConfig, vocab_size: int, num_entities: int, entity_offset: int) -> KGCModel:
    """Instantiate the encoder named ``cfg.name`` with its heads."""
    cls = MODELS.get(cfg.name)
    if cls is None:
        raise KGCError(f"unknown model {cfg.name!r}; valid: {', '.join(sorted(MODELS))}")
    cfg.validate()
    return cls(cfg, vocab_size, num_entities, entity_offset)


__all__ = [
    "MODELS",
    "HybridModel",
    "KGCModel",
    "ModelConfig",
    "TransformerModel",
    "build_model",
    "load_model_config",
    "preset_names",
]
