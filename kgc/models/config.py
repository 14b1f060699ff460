"""Model configuration: one strict dataclass for both encoders.

Presets are the YAML files in ``configs/model/`` (``transformer``, ``hybrid``,
``transformer-tiny``, ``hybrid-tiny``); :func:`load_model_config` takes a preset
name or a path plus ``key=value`` overrides. An unknown key or a value of the
wrong type is a :class:`kgc.config.ConfigError` (a :class:`kgc.KGCError`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kgc.config import ConfigError, load_config

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "model"


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
        for key in ("dropout", "attn_dropout"):
            need(0.0 <= getattr(self, key) < 1.0, f"{key} must be in [0, 1), got {getattr(self, key)}")
        need(1 <= self.d_conv <= 4, f"d_conv must be in [1, 4] (mamba-ssm's causal conv), got {self.d_conv}")
        need(
            (self.expand * self.dim) % self.headdim == 0,
            f"expand * dim ({self.expand * self.dim}) must be divisible by headdim ({self.headdim})",
        )
        if self.name == "hybrid":
            need(
                self.attn_every <= self.layers,
                f"attn_every ({self.attn_every}) must be <= layers ({self.layers}) or the shared block never runs",
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
