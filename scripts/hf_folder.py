#!/usr/bin/env python3
"""Hugging Face model folders as an independent party sees them (PyTorch, our own reader).

  make DIR --arch qwen2|llama --seed S [--tied] [--dtype f32|bf16] [--shards N]
      Writes a tiny random checkpoint in HF's layout (config.json, generation_config.json,
      model.safetensors or model-0000k-of-0000N.safetensors + model.safetensors.index.json,
      written by this script) and DIR/reference.safetensors holding "tokens" (I32 [T]) and
      "logits" (F32 [T, V]) from scripts/torch_qwen2.py on the weights as stored.
  check DIR --reference FILE
      Reads DIR (config.json, safetensors with its own reader; F32 or BF16; sharded or not),
      requires exactly the parameter names the architecture has (lm_head.weight absent when
      tied), runs the PyTorch model on FILE's tokens and compares with FILE's logits.
      Exit status 0 when they match to 1e-4 relative.

Used by tests/hf_folder_test.cpp; runs with Debian's python3-torch (/usr/bin/python3).
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_qwen2 as tq  # noqa: E402

ARCHS = {
    "qwen2": dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], vocab_size=71,
                  hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                  rope_theta=1000000.0, max_position_embeddings=64),
    "llama": dict(model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=71,
                  hidden_size=32, intermediate_size=44, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                  attention_bias=True, mlp_bias=True, rms_norm_eps=1e-5,
                  rope_theta=500000.0, max_position_embeddings=64),
}


def serialize(tensors):
    """tensors: list of (name, tensor) in file order; float32, bfloat16 or int32."""
    header, blobs, off = {}, [], 0
    for name, t in tensors:
        t = t.detach().contiguous()
        if t.dtype == torch.float32:
            dt, raw = "F32", t.numpy().astype("<f4").tobytes()
        elif t.dtype == torch.bfloat16:
            dt, raw = "BF16", t.view(torch.int16).numpy().astype("<i2").tobytes()
        elif t.dtype == torch.int32:
            dt, raw = "I32", t.numpy().astype("<i4").tobytes()
        else:
            raise TypeError(name)
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        raw = body[b:e]
        if info["dtype"] == "F32":
            t = torch.from_numpy(np.frombuffer(raw, dtype="<f4").copy())
        elif info["dtype"] == "BF16":
            t = torch.from_numpy(np.frombuffer(raw, dtype="<i2").copy()).view(torch.bfloat16).float()
        elif info["dtype"] == "I32":
            t = torch.from_numpy(np.frombuffer(raw, dtype="<i4").copy())
        else:
            raise ValueError("%s: dtype %s" % (name, info["dtype"]))
        out[name] = t.reshape(info["shape"])
    return out


def read_folder(d):
    index = os.path.join(d, "model.safetensors.index.json")
    if not os.path.exists(index):
        return read_safetensors(os.path.join(d, "model.safetensors"))
    weight_map = json.load(open(index))["weight_map"]
    out = {}
    for shard in sorted(set(weight_map.values())):
        out.update(read_safetensors(os.path.join(d, shard)))
    assert set(out) == set(weight_map), "index and shards disagree"
    return out


def fixed_tokens(vocab, n=19):
    g = torch.Generator()
    g.manual_seed(1234)
    return torch.randint(0, vocab, (n,), generator=g, dtype=torch.int64)


def make(args):
    config = dict(ARCHS[args.arch])
    config["tie_word_embeddings"] = bool(args.tied)
    config["torch_dtype"] = "bfloat16" if args.dtype == "bf16" else "float32"
    model = tq.Qwen2ForCausalLM(config)
    tq.init_weights(model, args.seed)
    state = dict(model.named_parameters())
    if args.dtype == "bf16":  # the stored weights are what both sides compute with
        with torch.no_grad():
            for p in state.values():
                p.copy_(p.to(torch.bfloat16).float())
    store = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    names = sorted(state)
    os.makedirs(args.dir, exist_ok=True)
    json.dump(config, open(os.path.join(args.dir, "config.json"), "w"), indent=2)
    json.dump({"eos_token_id": 0}, open(os.path.join(args.dir, "generation_config.json"), "w"))
    if args.shards <= 1:
        blob = serialize([(n, state[n].to(store)) for n in names])
        open(os.path.join(args.dir, "model.safetensors"), "wb").write(blob)
    else:
        weight_map, total = {}, 0
        for k in range(args.shards):
            part = names[k::args.shards]
            fname = "model-%05d-of-%05d.safetensors" % (k + 1, args.shards)
            open(os.path.join(args.dir, fname), "wb").write(
                serialize([(n, state[n].to(store)) for n in part]))
            for n in part:
                weight_map[n] = fname
                total += state[n].numel() * (2 if args.dtype == "bf16" else 4)
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
                  open(os.path.join(args.dir, "model.safetensors.index.json"), "w"), indent=2)
    tokens = fixed_tokens(config["vocab_size"])
    with torch.no_grad():
        logits = model(tokens[None])[0]
    open(os.path.join(args.dir, "reference.safetensors"), "wb").write(
        serialize([("tokens", tokens.to(torch.int32)), ("logits", logits.float())]))
    print("wrote %s (%d tensors)" % (args.dir, len(names)))


def check(args):
    config = json.load(open(os.path.join(args.dir, "config.json")))
    model = tq.Qwen2ForCausalLM(config)
    want = set(n for n, _ in model.named_parameters())
    weights = read_folder(args.dir)
    if set(weights) != want:
        print("tensor names differ: missing %s, unexpected %s"
              % (sorted(want - set(weights)), sorted(set(weights) - want)))
        return 1
    with torch.no_grad():
        for n, p in model.named_parameters():
            if tuple(weights[n].shape) != tuple(p.shape):
                print("%s: shape %s, expected %s" % (n, tuple(weights[n].shape), tuple(p.shape)))
                return 1
            p.copy_(weights[n].float())
    ref = read_safetensors(args.reference)
    with torch.no_grad():
        logits = model(ref["tokens"].long()[None])[0]
    err = ((logits - ref["logits"]).abs().max() / ref["logits"].abs().max()).item()
    print("max relative logit difference %.3g" % err)
    return 0 if err < 1e-4 else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("--arch", choices=sorted(ARCHS), default="qwen2")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--tied", action="store_true")
    m.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    m.add_argument("--shards", type=int, default=1)
    c = sub.add_parser("check")
    c.add_argument("dir")
    c.add_argument("--reference", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    return make(args) or 0 if args.cmd == "make" else check(args)


if __name__ == "__main__":
    sys.exit(main())
