// GGUF (version 3) export for llama.cpp: HF tensor names to GGUF's, Llama's q/k row order, and
// the writer of a whole file (metadata, tokenizer, tensors in F32, F16, BF16 or Q8_0). See gguf.h
// for what the writer shares with the reader, docs/GGUF.md for the command.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "model/gguf.h"
#include "model/gguf_tokenizer.h"
#include "model/model.h"

namespace crucible {

// The requested file type: F16, BF16 and Q8_0 keep norm weights and biases in F32; a Q8_0 file
// keeps a matrix whose rows are not a multiple of 32 long in F16.
enum class GgufType { f32, f16, bf16, q8_0 };

// The GGUF name of an HF tensor name ("model.layers.3.mlp.up_proj.weight" ->
// "blk.3.ffn_up.weight"). Throws Error for a name with no GGUF counterpart.
std::string gguf_tensor_name(const std::string& hf_name);

// Llama's q/k rows reordered from HF's rotate-half layout to the interleaved pairs that
// llama.cpp's "llama" RoPE uses (what convert_hf_to_gguf.py's LlamaModel.permute does):
// dst row h*hd + 2i + s = src row h*hd + s*hd/2 + i, for `n_head` heads of hd = rows/n_head.
std::vector<float> permute_llama_qk(const float* w, int64_t rows, int64_t cols, int n_head);

// Writes `model` with `tok` as a GGUF v3 file named `name` (general.name) at `out`: written
// to a temporary file in the same folder, fsynced, then renamed over `out`, so a failed write
// never leaves a partial file there. Architecture "qwen2" or "llama" from model_type (llama:
// q/k weights and biases permuted, see permute_llama_qk). Throws Error naming `out` on I/O
// failure, and for a tokenizer whose token count is not the model's vocab_size.
void write_gguf(const Model& model, const GgufTokenizer& tok, const std::string& name,
                GgufType type, const std::filesystem::path& out);

}  // namespace crucible
