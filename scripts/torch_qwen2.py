"""Small, obviously-correct PyTorch reimplementation of the HF Qwen2 / Llama decoder.

This is the *oracle* for Crucible's C++ forward/backward/optimizer tests. It mirrors
transformers' modeling_qwen2.py / modeling_llama.py (eager attention) in fp32:

  * embed_tokens -> N x [RMSNorm -> attention -> residual, RMSNorm -> SwiGLU MLP -> residual]
    -> final RMSNorm -> lm_head (tied to embed_tokens when tie_word_embeddings).
  * RMSNorm: x * rsqrt(mean(x^2, -1) + eps) * weight.
  * RoPE, rotate_half (NeoX) convention, explicit position ids.
  * GQA: query head h reads kv head h // (n_heads // n_kv_heads).
  * qwen2: q/k/v have bias, o_proj and MLP have none.
    llama: q/k/v/o use config["attention_bias"], gate/up/down use config["mlp_bias"].

Parameter names are exactly HF's (model.embed_tokens.weight, model.layers.N.self_attn.q_proj.weight,
..., model.norm.weight, lm_head.weight -- the last absent when tied).

Only depends on torch. Importable as a module:  sys.path.insert(0, "scripts"); import torch_qwen2
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "normalize_config",
    "RMSNorm",
    "Attention",
    "MLP",
    "DecoderLayer",
    "Qwen2Model",
    "Qwen2ForCausalLM",
    "init_weights",
    "rope_cos_sin",
    "apply_rope",
    "rotate_half",
    "split_packed",
    "packed_loss",
    "padded_loss",
]


def normalize_config(config):
    """Return a copy of an HF-style config dict with defaults filled in."""
    c = dict(config)
    c.setdefault("model_type", "qwen2")
    c.setdefault("num_key_value_heads", c["num_attention_heads"])
    if c.get("head_dim") is None:
        c["head_dim"] = c["hidden_size"] // c["num_attention_heads"]
    c.setdefault("rms_norm_eps", 1e-6)
    c.setdefault("rope_theta", 10000.0)
    c.setdefault("tie_word_embeddings", False)
    c.setdefault("max_position_embeddings", 32768)
    if c["model_type"] == "llama":
        c.setdefault("attention_bias", False)
        c.setdefault("mlp_bias", False)
    elif c["model_type"] != "qwen2":
        raise ValueError("unsupported model_type %r" % c["model_type"])
    if c["num_attention_heads"] % c["num_key_value_heads"] != 0:
        raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
    return c


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        # HF computes in fp32 and casts back; we are fp32 (or fp64 for the FD check) anyway.
        var = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(var + self.eps) * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_cos_sin(position_ids, head_dim, theta, dtype):
    """position_ids [B, T] (int) -> cos, sin [B, T, head_dim].

    inv_freq is computed in fp32 exactly as HF does (arange(0, hd, 2).float() / hd), the angles
    in fp32 as well, then cast to `dtype`.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = position_ids.float()[..., None] * inv_freq  # [B, T, hd/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [B, T, hd]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x, cos, sin):
    """x [B, H, T, hd], cos/sin [B, T, hd]."""
    cos = cos[:, None]
    sin = sin[:, None]
    return x * cos + rotate_half(x) * sin


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n_heads = c["num_attention_heads"]
        self.n_kv = c["num_key_value_heads"]
        self.head_dim = c["head_dim"]
        self.groups = self.n_heads // self.n_kv
        self.scale = self.head_dim ** -0.5
        hid = c["hidden_size"]
        if c["model_type"] == "qwen2":
            qkv_bias, o_bias = True, False
        else:
            qkv_bias = o_bias = bool(c["attention_bias"])
        self.q_proj = nn.Linear(hid, self.n_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(hid, self.n_kv * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(hid, self.n_kv * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, hid, bias=o_bias)

    def forward(self, x, cos, sin, mask):
        """x [B, T, hid]; mask [B or 1, 1, T, T] bool, True = may attend."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        if self.groups > 1:
            # HF repeat_kv: kv head j is used by query heads j*groups .. j*groups+groups-1,
            # i.e. query head h uses kv head h // groups.
            k = k.repeat_interleave(self.groups, dim=1)
            v = v.repeat_interleave(self.groups, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale  # [B, H, T, T]
        # Finite "minus infinity" so fully-masked (padding) rows stay finite.
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        # Softmax in (at least) fp32, as HF does; fp64 stays fp64 for the finite-difference check.
        sm_dtype = torch.promote_types(scores.dtype, torch.float32)
        probs = torch.softmax(scores, dim=-1, dtype=sm_dtype).to(q.dtype)
        out = torch.matmul(probs, v)  # [B, H, T, hd]
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        bias = bool(c.get("mlp_bias", False)) if c["model_type"] == "llama" else False
        hid, inter = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(hid, inter, bias=bias)
        self.up_proj = nn.Linear(hid, inter, bias=bias)
        self.down_proj = nn.Linear(inter, hid, bias=bias)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class Qwen2Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([DecoderLayer(c) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class Qwen2ForCausalLM(nn.Module):
    """HF-compatible causal LM (works for model_type qwen2 and llama)."""

    def __init__(self, config):
        super().__init__()
        c = normalize_config(config)
        self.config = c
        self.model = Qwen2Model(c)
        self.tied = bool(c["tie_word_embeddings"])
        if not self.tied:
            self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)

    def lm_head_weight(self):
        return self.model.embed_tokens.weight if self.tied else self.lm_head.weight

    def forward(self, input_ids, position_ids=None, attention_mask=None):
        """input_ids [B, T] int; position_ids [B, T] (default arange); attention_mask [B, T]
        (1 = real token, 0 = padding; default all ones). Returns logits [B, T, vocab]."""
        B, T = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(T).unsqueeze(0).expand(B, T)
        x = self.model.embed_tokens(input_ids)
        cos, sin = rope_cos_sin(position_ids, self.config["head_dim"], self.config["rope_theta"], x.dtype)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        mask = causal[None, None]  # [1, 1, T, T]
        if attention_mask is not None:
            keep = attention_mask.bool()[:, None, None, :]  # keys
            mask = mask & keep
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        x = self.model.norm(x)
        return F.linear(x, self.lm_head_weight())


def init_weights(model, seed):
    """Deterministic random init from a torch.Generator seeded with `seed`.

    Parameters are visited in sorted-name order. Linear weights, biases and the embedding get
    N(0, 0.02); RMSNorm weights get 1 + N(0, 0.1).
    """
    g = torch.Generator()
    g.manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.02 * noise)
    return model


def split_packed(tokens, targets, mask, positions, seq_lens):
    """Split flat packed tensors into a list of per-sequence dicts."""
    seqs = []
    off = 0
    for n in [int(v) for v in seq_lens]:
        seqs.append(
            {
                "tokens": tokens[off : off + n],
                "targets": targets[off : off + n],
                "mask": mask[off : off + n],
                "positions": positions[off : off + n],
            }
        )
        off += n
    assert off == tokens.shape[0], "seq_lens do not sum to the packed length"
    return seqs


def packed_loss(model, seqs):
    """Loss of a packed batch, computed independently per sequence.

    Each sequence runs through the model on its own as a batch of 1 (no cross-sequence
    attention possible). Logits are concatenated in order -> [N, vocab].
    loss = sum_i mask_i * CE(logits_i, target_i) / sum_i mask_i over the whole batch.
    Returns (loss, logits).
    """
    logits = []
    for s in seqs:
        lg = model(s["tokens"].long()[None], s["positions"].long()[None])[0]
        logits.append(lg)
    logits = torch.cat(logits, dim=0)
    targets = torch.cat([s["targets"].long() for s in seqs])
    mask = torch.cat([s["mask"] for s in seqs]).to(logits.dtype)
    ce = F.cross_entropy(logits, targets, reduction="none")
    loss = (ce * mask).sum() / mask.sum()
    return loss, logits


def padded_loss(model, seqs, pad_id=0):
    """Same loss as packed_loss via a different code path: one LEFT-padded [S, Tmax] batch with
    an attention (key padding) mask. Returns (loss, logits [N, vocab] in packed order)."""
    S = len(seqs)
    Tm = max(int(s["tokens"].shape[0]) for s in seqs)
    ids = torch.full((S, Tm), pad_id, dtype=torch.long)
    pos = torch.zeros((S, Tm), dtype=torch.long)
    am = torch.zeros((S, Tm), dtype=torch.long)
    for i, s in enumerate(seqs):
        n = s["tokens"].shape[0]
        ids[i, Tm - n :] = s["tokens"].long()
        pos[i, Tm - n :] = s["positions"].long()
        am[i, Tm - n :] = 1
    lg = model(ids, pos, am)
    logits = torch.cat([lg[i, Tm - s["tokens"].shape[0] :] for i, s in enumerate(seqs)], dim=0)
    targets = torch.cat([s["targets"].long() for s in seqs])
    mask = torch.cat([s["mask"] for s in seqs]).to(logits.dtype)
    # Explicit log-softmax / gather instead of F.cross_entropy: another independent path.
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    nll = -logp.gather(1, targets[:, None])[:, 0]
    loss = (nll * mask).sum() / mask.sum()
    return loss, logits


def num_params(model):
    return sum(p.numel() for p in model.parameters())
