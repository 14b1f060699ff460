"""Model configuration: one strict dataclass for both encoders.

Presets are the YAML files in ``configs/model/`` (``transformer``, ``hybrid``,
``transformer-tiny``, ``hybrid-tiny``); :func:`load_model_config` takes a preset
name or a path plus ``key=value`` overrides. An unknown key or a value of the
wrong type is a :class:`kgc.config.ConfigError` (a :class:`kgc.KGCError`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kgc.config import ConfigError, load_config
from kgc.resources import config_dir

PRESET_DIR = config_dir("model")


@dataclass
class ContextConfig:
    """What a link-prediction query reads of the train graph (``graph_algos.context``).

    budget: 1-hop items ``(label, neighbour)`` of the query's known entities (0 = no context).
    sampling: which items fill the budget: ``degree`` (prefer well-connected neighbours, weighted
        sampling without replacement) or ``uniform``; fixed per edge by ``seed``, so training,
        evaluation and ``kgc.predict`` build the same context.
    pointer: score each context item's entity by a bilinear form of the query's and the item's
        hidden states (a copy path: answers that sit in the context are scored directly).
    """

    budget: int = 0
    sampling: Literal["degree", "uniform"] = "degree"
    seed: int = 0
    pointer: bool = True

    def validate(self) -> None:
        if self.budget < 0:
            raise ValueError(f"context.budget must be >= 0, got {self.budget}")


@dataclass
class ModelConfig:
    """Hyper-parameters of a sequence encoder (``transformer`` or ``hybrid``) and its heads.

    Shared:
        name: which encoder (``transformer`` | ``hybrid``).
        dim: model width D.
        layers: Transformer blocks (transformer) or Mamba2 blocks (hybrid).
        heads: attention heads (the hybrid's shared attention block too); D % heads == 0.
        mlp_ratio: MLP hidden width = mlp_ratio * D.
        dropout: residual/embedding dropout; attn_dropout: attention-probability dropout.
        max_len: number of learned positions (longest sequence).
        tie_entity_embeddings: entity head weight = entity rows of the token embedding.
        entity_bias: learn a per-entity score bias (E,).
        num_roles: size of the role embedding (n-ary role ids; 0 elsewhere).
        direct: a direct bilinear term added to the link-prediction query vector, the fast identity
            path from the query's entities and relation to the answer (``none``, ``distmult``:
            ``e_h * w_r``, ``complex``: ComplEx's ``Re(e_h * w_r)`` product; n-ary queries sum the
            role-rotated known entities first).
        direct_dropout: dropout on the direct term's entity inputs and on its query vector (TuckER's
            input/hidden dropout; the regulariser of the identity path, which overfits WN18RR in an epoch).
        context: the train-graph context of link-prediction queries (:class:`ContextConfig`).
    Hybrid only (Mamba2 blocks, names as in ``mamba_ssm.Mamba2``):
        d_state: SSM state size N; d_conv: causal conv width; expand: d_inner = expand * D;
        headdim: SSM head size P (d_inner % headdim == 0); chunk_size: SSD chunk length;
        attn_every: apply the shared attention block after every ``attn_every`` Mamba2 blocks;
        use_mamba_ssm: ``auto`` (mamba-ssm kernels on CUDA when importable), ``never``, ``always``.
    """

    name: Literal["transformer", "hybrid"] = "transformer"
    dim: int = 256
    layers: int = 6
    heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    attn_dropout: float = 0.1
    max_len: int = 512
    tie_entity_embeddings: bool = True
    entity_bias: bool = True
    num_roles: int = 16
    direct: Literal["none", "distmult", "complex"] = "none"
    direct_dropout: float = 0.0
    context: ContextConfig = field(default_factory=ContextConfig)
    d_state: int = 64
    d_conv: int = 4
    expand: int = 2
    headdim: int = 32
    chunk_size: int = 64
    attn_every: int = 3
    use_mamba_ssm: Literal["auto", "never", "always"] = "auto"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when a value is out of range."""

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)

        for key in ("dim", "layers", "heads", "max_len", "num_roles", "d_state", "expand", "headdim", "chunk_size", "attn_every"):
            need(getattr(self, key) >= 1, f"{key} must be >= 1, got {getattr(self, key)}")
        need(self.dim % self.heads == 0, f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        need(self.mlp_ratio > 0, f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        for key in ("dropout", "attn_dropout", "direct_dropout"):
            need(0.0 <= getattr(self, key) < 1.0, f"{key} must be in [0, 1), got {getattr(self, key)}")
        need(1 <= self.d_conv <= 4, f"d_conv must be in [1, 4] (mamba-ssm's causal conv), got {self.d_conv}")
        need(
            (self.expand * self.dim) % self.headdim == 0,
            f"expand * dim ({self.expand * self.dim}) must be divisible by headdim ({self.headdim})",
        )
        need(self.direct != "complex" or self.dim % 2 == 0, f"direct: complex needs an even dim, got {self.dim}")
        self.context.validate()
        if self.name == "hybrid":
            need(
                self.attn_every <= self.layers,
                f"attn_every ({self.attn_every}) must be <= layers ({self.layers}) or the shared block never runs",
            )


def query_length(cfg: ModelConfig, max_arity: int) -> int:
    """Longest link-prediction sequence: ``[TASK, items.., relation, max_arity - 1 entities, MASK]``."""
    return 1 + cfg.context.budget + 1 + (max_arity - 1) + 1


def check_context_fits(cfg: ModelConfig, max_arity: int, where: str = "model") -> None:
    """A :class:`ConfigError` naming ``model.context.budget`` when a query with its context does not
    fit in ``model.max_len`` positions."""
    need = query_length(cfg, max_arity)
    if need > cfg.max_len:
        raise ConfigError(
            f"{where}: model.context.budget={cfg.context.budget} makes queries of arity {max_arity} "
            f"{need} tokens long, more than model.max_len={cfg.max_len}; lower the budget to at most "
            f"{cfg.max_len - query_length(ModelConfig(context=ContextConfig(budget=0)), max_arity)}"
        )


def preset_names() -> list[str]:
    """Names of the presets in ``configs/model/`` (file stems)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_model_config(path_or_preset: str | Path | None = None, overrides: list[str] | None = None) -> ModelConfig:
    """Load a :class:`ModelConfig` from a preset name (``"hybrid-tiny"``) or a YAML path, then ``overrides``.

    ``None`` gives the dataclass defaults (plus overrides).
    """
    path: Path | None = None
    if path_or_preset is not None:
        cand = Path(path_or_preset)
        if cand.suffix in (".yaml", ".yml") or cand.exists():
            path = cand
        else:
            path = PRESET_DIR / f"{path_or_preset}.yaml"
            if not path.is_file():
                raise ConfigError(
                    f"unknown model preset {str(path_or_preset)!r}; presets: {', '.join(preset_names())} (or a .yaml path)"
                )
        if not path.is_file():
            raise ConfigError(f"{path}: model config file not found")
    return load_config(ModelConfig, path, overrides)
