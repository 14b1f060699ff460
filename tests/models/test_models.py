"""Both encoders: contract shapes, causality, prefix-LM, shared block, padding invariance, config."""

from __future__ import annotations

import pytest
import torch

from kgc import KGCError
from kgc.config import ConfigError
from kgc.models import MODELS, ModelConfig, build_model, load_model_config, preset_names
from kgc.models.base import attention_mask, last_positions
from kgc.models.hybrid import HybridModel
from kgc.models.mamba2 import Mamba2
from kgc.models.transformer import Block

V, E, OFF = 60, 30, 25
NAMES = ["transformer-tiny", "hybrid-tiny"]


def make(preset, seed=0, **over):
    torch.manual_seed(seed)
    cfg = load_model_config(preset, [f"{k}={v}" for k, v in over.items()])
    return build_model(cfg, V, E, OFF).double().eval()


def rand_tokens(b, l, seed=0):
    return torch.randint(1, V, (b, l), generator=torch.Generator().manual_seed(seed))


# ---- contract ------------------------------------------------------------------
@pytest.mark.parametrize("preset", NAMES)
def test_contract_shapes_and_tied_heads(preset):
    m = make(preset)
    tokens = rand_tokens(3, 9)
    roles = torch.zeros_like(tokens)
    roles[:, 3] = 1
    h = m.encode(tokens, torch.tensor([4, 4, 4]), roles)
    assert h.shape == (3, 9, m.cfg.dim) and h.dtype == torch.float64
    q = h[:, -1]
    assert m.query_vectors(q).shape == (3, m.cfg.dim)
    assert m.entity_weight().shape == (E, m.cfg.dim)
    assert m.entity_bias().shape == (E,)
    scores = m.entity_scores(q)
    assert scores.shape == (3, E)
    logits = m.token_logits(h)
    assert logits.shape == (3, 9, V)
    # tied: entity weight is the entity rows of the token embedding, and the heads agree
    assert m.entity_weight().data_ptr() == m.tok_emb.weight[OFF].data_ptr()
    torch.testing.assert_close(logits[:, -1, OFF : OFF + E], scores)
    expected = m.query_vectors(q) @ m.entity_weight().T + m.entity_bias()
    torch.testing.assert_close(scores, expected)
    (scores.sum() + logits.sum()).backward()
    assert m.tok_emb.weight.grad is not None and m.ent_bias.grad is not None


def test_untied_entity_matrix_and_no_bias():
    m = make("transformer-tiny", tie_entity_embeddings="false", entity_bias="false")
    w = m.entity_weight()
    assert isinstance(w, torch.nn.Parameter) and w.shape == (E, 32)
    assert m.entity_bias() is None
    h = m.encode(rand_tokens(2, 5))
    torch.testing.assert_close(m.entity_scores(h[:, -1]), m.query_vectors(h[:, -1]) @ w.T)


def test_roles_change_outputs_and_default_is_role_zero():
    m = make("transformer-tiny")
    t = rand_tokens(1, 4)
    r = torch.tensor([[0, 0, 0, 1]])
    torch.testing.assert_close(m.encode(t), m.encode(t, roles=torch.zeros_like(t)))
    assert not torch.allclose(m.encode(t), m.encode(t, roles=r))


def test_too_long_and_bad_entity_range():
    m = make("transformer-tiny")
    with pytest.raises(KGCError, match="max_len"):
        m.encode(rand_tokens(1, 65))
    with pytest.raises(KGCError):
        build_model(load_model_config("transformer-tiny"), 10, 20, 5)


# ---- causality / prefix-LM ---------------------------------------------------------
@pytest.mark.parametrize("preset", NAMES)
def test_future_token_never_changes_earlier_outputs(preset):
    m = make(preset)
    L = 12
    base = rand_tokens(2, L, seed=1)
    prefix = torch.tensor([3, 5]) if preset.startswith("transformer") else None
    h0 = m.encode(base, prefix)
    start = 5  # >= every prefix_len: the causal part
    for t in range(start, L):
        mod = base.clone()
        mod[:, t] = (mod[:, t] % (V - 1)) + 1  # a different non-pad token
        h1 = m.encode(mod, prefix)
        torch.testing.assert_close(h1[:, :t], h0[:, :t], rtol=0, atol=1e-12)
        assert not torch.allclose(h1[:, t], h0[:, t])


def test_hybrid_is_causal_everywhere_even_with_prefix_len():
    m = make("hybrid-tiny")
    base = rand_tokens(1, 8, seed=2)
    mod = base.clone()
    mod[0, 1] = (mod[0, 1] % (V - 1)) + 1
    p = torch.tensor([6])
    torch.testing.assert_close(m.encode(mod, p)[:, :1], m.encode(base, p)[:, :1], rtol=0, atol=1e-12)
    torch.testing.assert_close(m.encode(base, p), m.encode(base, None))


def test_transformer_prefix_is_bidirectional():
    m = make("transformer-tiny")
    base = rand_tokens(1, 8, seed=3)
    P = torch.tensor([4])
    mod = base.clone()
    mod[0, 3] = (mod[0, 3] % (V - 1)) + 1  # last prefix token
    h0, h1 = m.encode(base, P), m.encode(mod, P)
    assert not torch.allclose(h0[:, 0], h1[:, 0])  # earlier prefix positions see it
    # without prefix_len the whole sequence is bidirectional: the last token reaches position 0
    mod2 = base.clone()
    mod2[0, 7] = (mod2[0, 7] % (V - 1)) + 1
    assert not torch.allclose(m.encode(base)[:, 0], m.encode(mod2)[:, 0])
    torch.testing.assert_close(m.encode(mod2, P)[:, :7], m.encode(base, P)[:, :7], rtol=0, atol=1e-12)


def test_attention_mask_layout():
    keep = torch.tensor([[True, True, True, True, False]])
    pos = (keep.long().cumsum(1) - 1).clamp_min(0)
    mask = attention_mask(keep, pos, torch.tensor([2]), causal=False)[0, 0]
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0],
            [0, 0, 0, 0, 1],  # a pad query sees only itself (finite softmax)
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)


# ---- shared attention block ----------------------------------------------------------
def test_shared_block_is_one_set_of_weights_applied_n_times():
    m = make("hybrid-tiny")  # layers 4, attn_every 2
    assert isinstance(m, HybridModel)
    blocks = [mod for mod in m.modules() if isinstance(mod, Block)]
    assert len(blocks) == 1 and blocks[0] is m.shared.block
    calls = []
    m.shared.register_forward_hook(lambda mod, inp, out: calls.append(mod))
    m.encode(rand_tokens(2, 6))
    assert len(calls) == m.cfg.layers // m.cfg.attn_every == 2
    assert all(c is m.shared for c in calls)
    # more applications add only the per-application D x D output linears, never a second block
    m1 = make("hybrid-tiny", attn_every=1)
    D = m.cfg.dim
    assert m1.num_parameters() - m.num_parameters() == 2 * D * D
    shared_params = sum(p.numel() for p in m.shared.parameters())
    assert shared_params == sum(p.numel() for p in m1.shared.parameters())
    # gradients from every application accumulate into the one block
    calls.clear()
    m.encode(rand_tokens(2, 6)).sum().backward()
    assert all(p.grad is not None for p in m.shared.parameters())


# ---- the single-position fast path -----------------------------------------------------
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("preset", NAMES)
def test_encode_at_positions_equals_full_encode(preset, layers):
    """``encode(..., at=)`` (the Transformer computes only those positions in its last block) equals
    the full encoding at those positions: padded rows, context items (``extra``), roles, any ``at``."""
    m = make(preset, layers=layers, **({"attn_every": 1} if preset.startswith("hybrid") else {}))
    tokens = rand_tokens(5, 8, seed=1)
    tokens[0, 6:] = 0  # right padding
    tokens[1, :3] = 0  # left padding
    roles = torch.randint(0, 2, tokens.shape, generator=torch.Generator().manual_seed(2))
    extra = torch.zeros_like(tokens)
    extra[2:, 1:4] = rand_tokens(3, 3, seed=3)  # three context items in rows 2-4
    rows = torch.arange(5)
    for at in (last_positions(tokens), torch.tensor([0, 3, 2, 5, 7])):
        for ex in (None, extra):
            full = m.encode(tokens, None, roles, ex)[rows, at]  # (5, D)
            fast = m.encode(tokens, None, roles, ex, at=at)
            assert fast.shape == (5, m.cfg.dim)
            torch.testing.assert_close(fast, full, rtol=1e-12, atol=1e-12)
    # gradients agree as well (training takes this path without a pointer)
    at = last_positions(tokens)
    g_full = torch.autograd.grad(m.encode(tokens, None, roles)[rows, at].square().sum(), list(m.parameters()),
                                 allow_unused=True)
    g_fast = torch.autograd.grad(m.encode(tokens, None, roles, at=at).square().sum(), list(m.parameters()),
                                 allow_unused=True)
    for a, b in zip(g_full, g_fast):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


# ---- padding -------------------------------------------------------------------------
@pytest.mark.parametrize("preset", NAMES)
def test_padding_invariance(preset):
    m = make(preset)
    fact = rand_tokens(1, 5, seed=4)
    roles = torch.tensor([[0, 0, 0, 1, 0]])
    prefix = torch.tensor([3])
    ref = m.encode(fact, prefix, roles)[0]  # (5, D)
    for left, right in [(0, 4), (3, 0), (2, 7), (9, 0)]:
        padded = torch.nn.functional.pad(fact, (left, right))  # PAD = 0
        proles = torch.nn.functional.pad(roles, (left, right))
        h = m.encode(padded, prefix, proles)[0]
        torch.testing.assert_close(h[left : left + 5], ref, rtol=1e-10, atol=1e-10)
        assert torch.all(h[:left] == 0) and torch.all(h[left + 5 :] == 0)
    # in a batch with a longer sequence (right padding, as the collators do)
    other = rand_tokens(1, 11, seed=5)
    batch = torch.cat([torch.nn.functional.pad(fact, (0, 6)), other])
    broles = torch.cat([torch.nn.functional.pad(roles, (0, 6)), torch.zeros_like(other)])
    h = m.encode(batch, torch.tensor([3, 4]), broles)
    torch.testing.assert_close(h[0, :5], ref, rtol=1e-10, atol=1e-10)
    assert torch.isfinite(h).all()


def test_mamba2_chunk_size_does_not_change_outputs_and_always_needs_cuda():
    torch.manual_seed(0)
    a = Mamba2(16, d_state=4, headdim=8, chunk_size=3, use_mamba_ssm="never").double()
    b = Mamba2(16, d_state=4, headdim=8, chunk_size=64, use_mamba_ssm="never").double()
    b.load_state_dict(a.state_dict())
    u = torch.randn(2, 10, 16, dtype=torch.float64)
    torch.testing.assert_close(a(u), b(u))
    names = {k: tuple(v.shape) for k, v in a.state_dict().items()}
    assert names == {  # mamba_ssm.Mamba2 layout (ngroups 1, no bias, conv bias, rmsnorm)
        "in_proj.weight": (2 * 32 + 2 * 4 + 4, 16),
        "conv1d.weight": (32 + 8, 1, 4),
        "conv1d.bias": (40,),
        "dt_bias": (4,),
        "A_log": (4,),
        "D": (4,),
        "norm.weight": (32,),
        "out_proj.weight": (16, 32),
    }
    c = Mamba2(16, d_state=4, headdim=8, use_mamba_ssm="always")
    if not torch.cuda.is_available():
        with pytest.raises(KGCError, match="always"):
            c(torch.randn(1, 3, 16))


# ---- config / registry ---------------------------------------------------------------
def test_presets_load_and_build():
    assert {"transformer", "hybrid", "transformer-tiny", "hybrid-tiny"} <= set(preset_names())
    t, h = load_model_config("transformer"), load_model_config("hybrid")
    assert (t.name, t.layers, t.dim) == ("transformer", 6, 256) and 4 <= t.heads <= 8
    assert (h.name, h.attn_every) == ("hybrid", 3)
    assert load_model_config("hybrid-tiny", ["dim=64"]).dim == 64


@pytest.mark.parametrize(
    "override,match",
    [
        ("dimm=3", "unknown key 'dimm'"),
        ("dim=abc", "integer"),
        ("dim=1.5", "integer"),
        ("tie_entity_embeddings=3", "true/false"),
        ("use_mamba_ssm=sometimes", "must be one of"),
        ("name=rnn", "must be one of"),
        ("heads=5", "divisible"),
        ("dropout=1.5", "dropout"),
        ("headdim=7", "headdim"),
        ("attn_every=9", "attn_every"),
    ],
)
def test_strict_config_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        load_model_config("hybrid-tiny", [override])


def test_unknown_preset_and_model_name(tmp_path):
    with pytest.raises(KGCError, match="presets"):
        load_model_config("nope")
    bad = tmp_path / "m.yaml"
    bad.write_text("name: transformer\nlayerz: 2\n")
    with pytest.raises(ConfigError, match=r"m\.yaml.*layerz"):
        load_model_config(bad)
    cfg = ModelConfig()
    cfg.name = "rnn"
    with pytest.raises(KGCError, match="hybrid, transformer"):
        build_model(cfg, V, E, OFF)
    assert set(MODELS) == {"transformer", "hybrid"}
