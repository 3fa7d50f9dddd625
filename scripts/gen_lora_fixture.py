#!/usr/bin/env python3
"""Generate tests/fixtures/lora_qwen2.safetensors: a hand-written LoRA in PyTorch (no PEFT).

Usage:  /usr/bin/python3 scripts/gen_lora_fixture.py [--out tests/fixtures]

The base is scripts/torch_qwen2.py's Qwen2 (the untied fixture's shape, qkv biases), frozen.
Every targeted nn.Linear becomes  y = W x + b + (alpha / r) * B (A x)  with A (r, in) and
B (out, r) trainable, as PEFT's LoRA layer computes it (dropout 0, fan_in_fan_out false). A and
B are random (B is not zero, so the gradients of both are), and the fixture holds:
  <HF param name>               F32   base weights
  <PEFT adapter name>           F32   base_model.model.<module>.lora_A.weight / lora_B.weight
  batch.*                             as in gen_model_fixtures.py (two packed sequences)
  ref.logits, ref.loss                the LoRA model's
  grad.<PEFT adapter name>            d ref.loss / d adapter
  __metadata__: {"config": config.json, "lora": {"r", "lora_alpha", "target_modules"}}
The base gets no gradient (requires_grad False). Deterministic: byte-identical on re-runs.
"""

import argparse
import json
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_model_fixtures as gm  # noqa: E402
import torch_qwen2 as tq  # noqa: E402

torch.set_num_threads(1)

CONFIG = dict(gm.FIXTURES[1]["config"], attention_bias=True)  # untied, qkv biases
SEED = 4004
LORA = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "o_proj", "gate_proj",
                                                     "down_proj"]}


class LoraLinear(nn.Module):
    def __init__(self, base, r, alpha, g):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.scale = alpha / r
        self.lora_A = nn.Parameter(0.3 * torch.randn(r, base.in_features, generator=g))
        self.lora_B = nn.Parameter(0.3 * torch.randn(base.out_features, r, generator=g))

    def forward(self, x):
        return self.base(x) + self.scale * ((x @ self.lora_A.t()) @ self.lora_B.t())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures"))
    args = ap.parse_args()

    model = tq.init_weights(tq.Qwen2ForCausalLM(CONFIG), SEED)
    base = {k: v.detach().clone() for k, v in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator()
    g.manual_seed(SEED + 1)
    adapters = {}  # PEFT name -> parameter
    for l, layer in enumerate(model.model.layers):
        for parent, names in ((layer.self_attn, ("q_proj", "k_proj", "v_proj", "o_proj")),
                              (layer.mlp, ("gate_proj", "up_proj", "down_proj"))):
            for name in names:
                if name not in LORA["target_modules"]:
                    continue
                lin = LoraLinear(getattr(parent, name), LORA["r"], LORA["lora_alpha"], g)
                setattr(parent, name, lin)
                group = "self_attn" if parent is layer.self_attn else "mlp"
                stem = "base_model.model.model.layers.%d.%s.%s" % (l, group, name)
                adapters[stem + ".lora_A.weight"] = lin.lora_A
                adapters[stem + ".lora_B.weight"] = lin.lora_B

    tokens, targets, mask, positions, seq_lens = gm.make_batch(CONFIG["vocab_size"], SEED)
    seqs = tq.split_packed(tokens, targets, mask, positions, seq_lens)
    loss, logits = tq.packed_loss(model, seqs)
    loss.backward()
    assert all(p.grad is None for p in base_params(model)), "the base must stay frozen"

    tensors = dict(base)
    for k, p in adapters.items():
        tensors[k] = p.detach().clone()
        tensors["grad." + k] = p.grad.detach().clone()
    tensors["batch.tokens"] = tokens
    tensors["batch.targets"] = targets
    tensors["batch.mask"] = mask
    tensors["batch.positions"] = positions
    tensors["batch.seq_lens"] = seq_lens
    tensors["ref.logits"] = logits.detach()
    tensors["ref.loss"] = loss.detach().reshape(1)
    meta = {"config": json.dumps(CONFIG, sort_keys=True), "lora": json.dumps(LORA, sort_keys=True)}
    path = os.path.join(args.out, "lora_qwen2.safetensors")
    gm.write_safetensors(path, tensors, meta)
    print("%s: %d bytes, %d adapter tensors, loss %.6f" % (path, os.path.getsize(path),
                                                         len(adapters), loss.item()))


def base_params(model):
    return [p for n, p in model.named_parameters() if "lora_" not in n]


if __name__ == "__main__":
    main()
