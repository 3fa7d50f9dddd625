#!/usr/bin/env python3
"""Generate the committed model test fixtures in tests/fixtures/ (safetensors, fp32).

Usage:  /usr/bin/python3 scripts/gen_model_fixtures.py [--out tests/fixtures]

Each fixture file contains, for one tiny random model:
  <HF param name>                F32   initial weights (every parameter; no lm_head.weight when tied)
  batch.tokens                   I32 [N]      packed input ids of S=2 sequences
  batch.targets                  I32 [N]      target ids
  batch.mask                     F32 [N]      loss mask (first 3 tokens of each sequence are 0)
  batch.positions                I32 [N]      0..len-1 per sequence
  batch.seq_lens                 I32 [S]
  ref.logits                     F32 [N, vocab]
  ref.loss                       F32 [1]      sum(mask * CE) / sum(mask)
  grad.<HF param name>           F32          d ref.loss / d param
  ref.adamw_losses               F32 [10]     loss at each AdamW step, before that step's update
  __metadata__: {"config": HF config.json (JSON string), "adamw": hyperparameters (JSON string)}

The reference implementation is scripts/torch_qwen2.py. The script is deterministic (byte-identical
output on re-runs) and self-checks the oracle (packed vs left-padded batch, float64 central
finite differences vs autograd).
"""

import argparse
import hashlib
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_qwen2 as tq  # noqa: E402

torch.set_num_threads(1)
torch.set_default_dtype(torch.float32)

ADAMW = {
    "lr": 1e-2,
    "beta1": 0.9,
    "beta2": 0.95,
    "eps": 1e-8,
    "weight_decay": 0.1,  # only params with ndim >= 2 (incl. embeddings/lm_head); 0 for norms, biases
    "grad_clip": 1.0,
    "steps": 10,
}

SEQ_LENS = [9, 14]
MASKED_PREFIX = 3

FIXTURES = [
    {
        "file": "model_qwen2_tied.safetensors",
        "seed": 1001,
        "config": {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "vocab_size": 67,
            "hidden_size": 32,
            "intermediate_size": 48,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            "tie_word_embeddings": True,
            "max_position_embeddings": 128,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        },
    },
    {
        "file": "model_qwen2_untied.safetensors",
        "seed": 2002,
        "config": {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "vocab_size": 67,
            "hidden_size": 48,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 6,
            "num_key_value_heads": 2,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": False,
            "max_position_embeddings": 128,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        },
    },
    {
        "file": "model_llama_headdim.safetensors",
        "seed": 3003,
        "config": {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": 67,
            "hidden_size": 32,
            "intermediate_size": 40,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "attention_bias": True,
            "mlp_bias": True,
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "tie_word_embeddings": False,
            "max_position_embeddings": 128,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        },
    },
]


# ----------------------------------------------------------------------------- safetensors writer
def write_safetensors(path, tensors, metadata):
    """tensors: dict name -> torch.Tensor (float32 or int32). Data laid out in sorted-name order."""
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        if t.dtype == torch.float32:
            dt, npdt = "F32", "<f4"
        elif t.dtype == torch.int32:
            dt, npdt = "I32", "<i4"
        else:
            raise TypeError("%s: unsupported dtype %s" % (name, t.dtype))
        raw = t.numpy().astype(npdt, copy=False).tobytes(order="C")
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((-len(hbytes)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """Minimal reader used to verify what we wrote."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    body = data[8 + n :]
    meta = header.pop("__metadata__", {})
    out = {}
    end_max = 0
    for name, info in header.items():
        b, e = info["data_offsets"]
        npdt = {"F32": "<f4", "I32": "<i4"}[info["dtype"]]
        arr = np.frombuffer(body[b:e], dtype=npdt).reshape(info["shape"])
        out[name] = arr
        end_max = max(end_max, e)
    assert end_max == len(body), "data section has trailing bytes / holes"
    return out, meta


# ----------------------------------------------------------------------------- batch
def make_batch(vocab, seed):
    g = torch.Generator()
    g.manual_seed(seed + 7)
    n = sum(SEQ_LENS)
    tokens = torch.randint(0, vocab, (n,), generator=g, dtype=torch.int64).to(torch.int32)
    targets = torch.randint(0, vocab, (n,), generator=g, dtype=torch.int64).to(torch.int32)
    mask = torch.ones(n, dtype=torch.float32)
    positions = torch.zeros(n, dtype=torch.int32)
    off = 0
    for L in SEQ_LENS:
        mask[off : off + MASKED_PREFIX] = 0.0
        positions[off : off + L] = torch.arange(L, dtype=torch.int32)
        off += L
    seq_lens = torch.tensor(SEQ_LENS, dtype=torch.int32)
    return tokens, targets, mask, positions, seq_lens


# ----------------------------------------------------------------------------- self-checks
def check_padded(model, seqs, loss, logits):
    with torch.no_grad():
        loss2, logits2 = tq.padded_loss(model, seqs)
    dl = abs(loss2.item() - loss.item())
    dlog = (logits2 - logits).abs().max().item()
    assert dl <= 1e-5 * max(1.0, abs(loss.item())), "packed vs padded loss mismatch: %g" % dl
    assert dlog <= 1e-4, "packed vs padded logits mismatch: %g" % dlog
    return dl, dlog


def check_finite_difference(model, seqs, grads):
    """Central FD in float64 on a float64 copy of the model, for the largest-|grad| element of a
    few parameters; compared with float64 autograd (tight) and the float32 autograd (loose)."""
    m64 = type(model)(model.config)
    m64.load_state_dict(model.state_dict())
    m64 = m64.double()
    seqs64 = [dict(s, mask=s["mask"].double()) for s in seqs]
    m64.zero_grad()
    loss64, _ = tq.packed_loss(m64, seqs64)
    loss64.backward()
    p64 = dict(m64.named_parameters())
    names = [n for n in sorted(p64) if any(k in n for k in ("layers.0.self_attn.q_proj.weight",
                                                           "layers.1.self_attn.k_proj",
                                                           "layers.0.input_layernorm.weight",
                                                           "layers.1.mlp.down_proj.weight",
                                                           "embed_tokens.weight",
                                                           "model.norm.weight",
                                                           "layers.0.self_attn.o_proj"))]
    h = 1e-5
    worst = worst64 = 0.0
    for name in names:
        p = p64[name]
        g64 = p.grad.reshape(-1)
        idx = int(g64.abs().argmax())
        with torch.no_grad():
            flat = p.view(-1)
            orig = flat[idx].item()
            flat[idx] = orig + h
            lp, _ = tq.packed_loss(m64, seqs64)
            flat[idx] = orig - h
            lm, _ = tq.packed_loss(m64, seqs64)
            flat[idx] = orig
        fd = (lp.item() - lm.item()) / (2 * h)
        ad64 = g64[idx].item()
        ad32 = grads[name].reshape(-1)[idx].item()
        # Relative error, with an absolute floor for tiny gradients (FD round-off ~ 1e-16/h).
        rel64 = abs(fd - ad64) / max(abs(fd), 1e-3)
        rel32 = abs(fd - ad32) / max(abs(fd), 1e-3)
        assert rel64 < 1e-6, "%s: fp64 FD %r vs autograd %r (rel %g)" % (name, fd, ad64, rel64)
        assert rel32 < 1e-4, "%s: fp64 FD %r vs fp32 autograd %r (rel %g)" % (name, fd, ad32, rel32)
        worst = max(worst, rel32)
        worst64 = max(worst64, rel64)
    return len(names), worst64, worst


# ----------------------------------------------------------------------------- main
def build_fixture(fx, out_dir):
    cfg = fx["config"]
    seed = fx["seed"]
    model = tq.init_weights(tq.Qwen2ForCausalLM(cfg), seed)
    init_state = {k: v.detach().clone() for k, v in model.named_parameters()}

    tokens, targets, mask, positions, seq_lens = make_batch(cfg["vocab_size"], seed)
    seqs = tq.split_packed(tokens, targets, mask, positions, seq_lens)

    model.zero_grad()
    loss, logits = tq.packed_loss(model, seqs)
    loss.backward()
    grads = {k: v.grad.detach().clone() for k, v in model.named_parameters()}
    assert all(torch.isfinite(g).all() for g in grads.values())

    dl, dlog = check_padded(model, seqs, loss.detach(), logits.detach())
    n_fd, worst_fd64, worst_fd = check_finite_difference(model, seqs, grads)

    # AdamW run, from a freshly re-created model with the same initial weights.
    m2 = tq.Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        for k, p in m2.named_parameters():
            p.copy_(init_state[k])
    named = sorted(m2.named_parameters())
    decay = [p for _, p in named if p.ndim >= 2]
    no_decay = [p for _, p in named if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": ADAMW["weight_decay"]},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=ADAMW["lr"],
        betas=(ADAMW["beta1"], ADAMW["beta2"]),
        eps=ADAMW["eps"],
    )
    losses = []
    for step in range(ADAMW["steps"]):
        opt.zero_grad(set_to_none=True)
        l, _ = tq.packed_loss(m2, seqs)
        l.backward()
        if step == 0:
            assert l.item() == loss.item(), "re-created model differs from the reference model"
        torch.nn.utils.clip_grad_norm_([p for _, p in named], ADAMW["grad_clip"])
        opt.step()
        losses.append(l.item())

    tensors = {}
    for k, v in init_state.items():
        tensors[k] = v
    for k, g in grads.items():
        tensors["grad." + k] = g
    tensors["batch.tokens"] = tokens
    tensors["batch.targets"] = targets
    tensors["batch.mask"] = mask
    tensors["batch.positions"] = positions
    tensors["batch.seq_lens"] = seq_lens
    tensors["ref.logits"] = logits.detach()
    tensors["ref.loss"] = loss.detach().reshape(1)
    tensors["ref.adamw_losses"] = torch.tensor(losses, dtype=torch.float32)

    meta = {
        "config": json.dumps(cfg, sort_keys=True),
        "adamw": json.dumps(ADAMW, sort_keys=True),
    }
    path = os.path.join(out_dir, fx["file"])
    write_safetensors(path, tensors, meta)

    # Verify the file reads back identically.
    back, meta_back = read_safetensors(path)
    assert set(back) == set(tensors) and meta_back == meta
    for k, v in tensors.items():
        assert np.array_equal(back[k], v.numpy()), k

    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    n_params = sum(v.numel() for v in init_state.values())
    print(
        "%-34s %7d bytes  sha256:%s  params=%d tensors=%d  loss=%.6f  "
        "packed-vs-padded dloss=%.2e dlogits=%.2e  FD(%d elems) worst rel fp64=%.1e fp32=%.1e"
        % (fx["file"], os.path.getsize(path), digest, n_params, len(tensors), loss.item(),
           dl, dlog, n_fd, worst_fd64, worst_fd)
    )
    print("    adamw losses: " + " ".join("%.5f" % x for x in losses))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print("torch %s, threads=%d, output dir %s" % (torch.__version__, torch.get_num_threads(), args.out))
    for fx in FIXTURES:
        build_fixture(fx, args.out)


if __name__ == "__main__":
    main()
