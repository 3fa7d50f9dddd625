// GGUF export: a tiny model saved as an HF folder (save_model + ByteTokenizer::save_hf_files)
// is exported as F32, F16 and Q8_0 and read back with Crucible's reader. Expected values come
// from the config, from tokenizer files read here with nlohmann::json, and from arithmetic
// done by hand (fp16 rounding, one Q8_0 block, the llama q/k row order), not from the writer.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/file_io.h"
#include "model/checkpoint.h"
#include "model/float_formats.h"
#include "model/gguf_reader.h"
#include "model/gguf_writer.h"
#include "model/model.h"
#include "model_util.h"
#include "test_util.h"
#include "tokenizer/byte_tokenizer.h"

namespace crucible {
namespace {

using testutil::error_of;
using testutil::slurp;
using testutil::TempDir;

namespace fs = std::filesystem;
using nlohmann::json;

void spit(const fs::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

constexpr int kMaxPos = 64;

ModelConfig tiny_config(bool tied, const std::string& model_type = "qwen2") {
    ModelConfig c = testutil::tiny_model_config(264, kMaxPos);
    c.model_type = model_type;
    c.rms_norm_eps = 1e-6f;
    c.rope_theta = 1e6f;
    c.tie_word_embeddings = tied;
    if (model_type == "llama") c.qkv_bias = false;
    c.bos_token_id = -1;
    c.eos_token_id = 256;
    return c;
}

// A random model whose token 0 embedding row is 0, 1, ..., 31 (the hand-worked Q8_0 block)
// and whose norm weights are not all ones (so a mixed-up tensor would show).
void make_folder(const fs::path& dir, const ModelConfig& c, uint64_t seed) {
    Model m(c);
    m.init_random(seed);
    float* embd = m.param("model.embed_tokens.weight");
    for (int j = 0; j < 32; j++) embd[j] = static_cast<float>(j);
    for (const TensorInfo& t : m.tensors()) {
        if (t.name.find("norm") == std::string::npos) continue;
        for (size_t i = 0; i < t.numel; i++) m.params()[t.offset + i] = 1.0f + 0.01f * i;
    }
    save_model(m, dir);
    ByteTokenizer::save_hf_files(dir, kMaxPos);
}

fs::path export_folder(const fs::path& dir, GgufType type, const fs::path& out) {
    const auto model = load_model(dir);
    write_gguf(*model, load_gguf_tokenizer(dir, model->config()), "tiny", type, out);
    return out;
}

// fp16 rounding done independently of the code under test: keep 11 significant bits (or
// multiples of 2^-24 below 2^-14), ties to even, overflow to infinity.
float fp16_round(float x) {
    if (x == 0.0f || !std::isfinite(x)) return x;
    int e;
    std::frexp(std::fabs(x), &e);  // |x| = m * 2^e, m in [0.5, 1)
    const int q = std::max(e - 11, -24);
    const float r = std::ldexp(std::nearbyint(std::ldexp(std::fabs(x), -q)), q);
    return std::copysign(r >= 65520.0f ? INFINITY : r, x);
}

// The GGUF tensors (name -> ne) that llama.cpp expects for tiny_config, written out by hand,
// with the HF tensor each comes from.
struct Expected {
    std::string hf;
    std::vector<uint64_t> ne;
};
std::map<std::string, Expected> expected_tensors(bool tied, bool biases) {
    std::map<std::string, Expected> e = {
        {"token_embd.weight", {"model.embed_tokens.weight", {32, 264}}},
        {"output_norm.weight", {"model.norm.weight", {32}}},
    };
    if (!tied) e["output.weight"] = {"lm_head.weight", {32, 264}};
    for (int l = 0; l < 2; l++) {
        const std::string b = "blk." + std::to_string(l) + ".";
        const std::string h = "model.layers." + std::to_string(l) + ".";
        e[b + "attn_norm.weight"] = {h + "input_layernorm.weight", {32}};
        e[b + "attn_q.weight"] = {h + "self_attn.q_proj.weight", {32, 32}};
        e[b + "attn_k.weight"] = {h + "self_attn.k_proj.weight", {32, 16}};
        e[b + "attn_v.weight"] = {h + "self_attn.v_proj.weight", {32, 16}};
        if (biases) {
            e[b + "attn_q.bias"] = {h + "self_attn.q_proj.bias", {32}};
            e[b + "attn_k.bias"] = {h + "self_attn.k_proj.bias", {16}};
            e[b + "attn_v.bias"] = {h + "self_attn.v_proj.bias", {16}};
        }
        e[b + "attn_output.weight"] = {h + "self_attn.o_proj.weight", {32, 32}};
        e[b + "ffn_norm.weight"] = {h + "post_attention_layernorm.weight", {32}};
        e[b + "ffn_gate.weight"] = {h + "mlp.gate_proj.weight", {32, 48}};
        e[b + "ffn_up.weight"] = {h + "mlp.up_proj.weight", {32, 48}};
        e[b + "ffn_down.weight"] = {h + "mlp.down_proj.weight", {48, 32}};
    }
    return e;
}

void expect_u32(const GgufFile& g, const std::string& key, uint64_t v) {
    SCOPED_TRACE(key);
    ASSERT_TRUE(g.has(key));
    EXPECT_EQ(g.at(key).type, GgufValueType::u32);
    EXPECT_EQ(g.at(key).u, v);
}
void expect_f32(const GgufFile& g, const std::string& key, float v) {
    SCOPED_TRACE(key);
    ASSERT_TRUE(g.has(key));
    EXPECT_EQ(g.at(key).type, GgufValueType::f32);
    EXPECT_EQ(static_cast<float>(g.at(key).f), v);
}
void expect_str(const GgufFile& g, const std::string& key, const std::string& v) {
    SCOPED_TRACE(key);
    ASSERT_TRUE(g.has(key));
    EXPECT_EQ(g.at(key).type, GgufValueType::string);
    EXPECT_EQ(g.at(key).str, v);
}

uint64_t pad32(uint64_t x) {
    return (x + 31) / 32 * 32;
}

// Every key and value, every tensor's name/ne/type/offset/data, and the file's layout.
void check_file(const fs::path& folder, const fs::path& file, GgufType type, bool tied) {
    const GgufFile g = read_gguf(file);
    const auto model = load_model(folder);
    EXPECT_EQ(g.version, 3u);
    EXPECT_EQ(g.alignment, 32u);

    const json tc = json::parse(read_file(folder / "tokenizer_config.json"));
    const std::set<std::string> keys(g.keys.begin(), g.keys.end());
    EXPECT_EQ(keys.size(), g.keys.size());
    const std::set<std::string> want_keys = {"general.architecture",
                                             "general.name",
                                             "general.alignment",
                                             "general.file_type",
                                             "qwen2.context_length",
                                             "qwen2.embedding_length",
                                             "qwen2.block_count",
                                             "qwen2.feed_forward_length",
                                             "qwen2.attention.head_count",
                                             "qwen2.attention.head_count_kv",
                                             "qwen2.rope.freq_base",
                                             "qwen2.attention.layer_norm_rms_epsilon",
                                             "tokenizer.ggml.model",
                                             "tokenizer.ggml.pre",
                                             "tokenizer.ggml.tokens",
                                             "tokenizer.ggml.token_type",
                                             "tokenizer.ggml.merges",
                                             "tokenizer.ggml.eos_token_id",
                                             "tokenizer.ggml.padding_token_id",
                                             "tokenizer.ggml.add_bos_token",
                                             "tokenizer.chat_template"};
    EXPECT_EQ(keys, want_keys);
    expect_str(g, "general.architecture", "qwen2");
    expect_str(g, "general.name", "tiny");
    expect_u32(g, "general.alignment", 32);
    // llama.cpp's llama_ftype values (src/llama.h): ALL_F32 0, MOSTLY_F16 1, Q8_0 7, BF16 32.
    expect_u32(g, "general.file_type",
               type == GgufType::f32    ? 0
               : type == GgufType::f16  ? 1
               : type == GgufType::bf16 ? 32
                                        : 7);
    expect_u32(g, "qwen2.context_length", kMaxPos);
    expect_u32(g, "qwen2.embedding_length", 32);
    expect_u32(g, "qwen2.block_count", 2);
    expect_u32(g, "qwen2.feed_forward_length", 48);
    expect_u32(g, "qwen2.attention.head_count", 4);
    expect_u32(g, "qwen2.attention.head_count_kv", 2);
    expect_f32(g, "qwen2.rope.freq_base", 1e6f);
    expect_f32(g, "qwen2.attention.layer_norm_rms_epsilon", 1e-6f);
    expect_str(g, "tokenizer.ggml.model", "gpt2");
    expect_str(g, "tokenizer.ggml.pre", "qwen2");
    expect_u32(g, "tokenizer.ggml.eos_token_id", 256);
    expect_u32(g, "tokenizer.ggml.padding_token_id", 256);
    EXPECT_EQ(g.at("tokenizer.ggml.add_bos_token").type, GgufValueType::boolean);
    EXPECT_FALSE(g.at("tokenizer.ggml.add_bos_token").b);
    expect_str(g, "tokenizer.chat_template", tc["chat_template"].get<std::string>());

    const GgufValue& tokens = g.at("tokenizer.ggml.tokens");
    const GgufValue& types = g.at("tokenizer.ggml.token_type");
    const GgufValue& merges = g.at("tokenizer.ggml.merges");
    ASSERT_EQ(tokens.type, GgufValueType::array);
    ASSERT_EQ(tokens.elem_type, GgufValueType::string);
    ASSERT_EQ(tokens.array.size(), 264u);
    ASSERT_EQ(types.elem_type, GgufValueType::i32);
    ASSERT_EQ(types.array.size(), 264u);
    EXPECT_EQ(merges.type, GgufValueType::array);
    EXPECT_EQ(merges.elem_type, GgufValueType::string);
    EXPECT_TRUE(merges.array.empty());          // the byte tokenizer has no merges
    EXPECT_EQ(tokens.array[32].str, "\u0120");  // Ġ: the space byte
    EXPECT_EQ(tokens.array[10].str, "\u010A");  // Ċ: the newline byte
    EXPECT_EQ(tokens.array[0].str, "\u0100");   // Ā: byte 0
    EXPECT_EQ(tokens.array[65].str, "A");
    EXPECT_EQ(tokens.array[255].str, "\u00FF");  // ÿ: printable, kept as itself
    EXPECT_EQ(tokens.array[173].str, "\u0143");  // soft hyphen: the 68th remapped byte
    EXPECT_EQ(tokens.array[256].str, "<|endoftext|>");
    EXPECT_EQ(tokens.array[257].str, "<|im_start|>");
    EXPECT_EQ(tokens.array[258].str, "<|im_end|>");
    for (int i = 0; i < 264; i++) {
        SCOPED_TRACE(i);
        EXPECT_EQ(tokens.array[i].type, GgufValueType::string);
        EXPECT_EQ(types.array[i].type, GgufValueType::i32);
        if (i < 256) {
            EXPECT_EQ(tokens.array[i].str, byte_level_char(static_cast<uint8_t>(i)));
            EXPECT_EQ(types.array[i].i, 1);
        } else if (i < 259) {
            EXPECT_EQ(types.array[i].i, 3);
        } else {
            EXPECT_EQ(tokens.array[i].str, "[PAD" + std::to_string(i) + "]");
            EXPECT_EQ(types.array[i].i, 5);
        }
    }

    // Tensors: names, ne (reversed HF shapes), types, back-to-back aligned offsets.
    const auto want = expected_tensors(tied, true);
    ASSERT_EQ(g.tensors.size(), want.size());
    uint64_t expected_offset = 0;
    for (const GgufTensorInfo& t : g.tensors) {
        SCOPED_TRACE(t.name);
        ASSERT_TRUE(want.count(t.name));
        const Expected& e = want.at(t.name);
        EXPECT_EQ(t.ne, e.ne);
        GgmlType want_type = GgmlType::f32;
        if (type != GgufType::f32 && e.ne.size() == 2) {
            want_type = type == GgufType::q8_0 && e.ne[0] % 32 == 0 ? GgmlType::q8_0
                        : type == GgufType::bf16                    ? GgmlType::bf16
                                                                    : GgmlType::f16;
        }
        EXPECT_EQ(t.type, want_type);
        EXPECT_EQ(t.offset % 32, 0u);
        EXPECT_EQ((g.data_offset + t.offset) % 32, 0u);
        EXPECT_EQ(t.offset, expected_offset);
        const uint64_t n = e.ne.size() == 2 ? e.ne[0] * e.ne[1] : e.ne[0];
        const uint64_t nbytes = want_type == GgmlType::f32 ? n * 4
                                : want_type == GgmlType::f16 || want_type == GgmlType::bf16
                                    ? n * 2
                                    : n / 32 * 34;
        EXPECT_EQ(g.data(t).size(), nbytes);
        expected_offset = pad32(t.offset + nbytes);

        const float* x = model->params() + model->find(e.hf)->offset;
        const std::vector<float> got = g.tensor_f32(t.name);
        ASSERT_EQ(got.size(), n);
        if (want_type == GgmlType::f32) {
            EXPECT_EQ(std::memcmp(g.data(t).data(), x, n * 4), 0);  // bit-identical
        } else if (want_type == GgmlType::f16) {
            for (uint64_t i = 0; i < n; i++) ASSERT_EQ(got[i], fp16_round(x[i])) << i;
        } else if (want_type == GgmlType::bf16) {
            // The top 16 bits, rounded to nearest even: worked by hand from the fp32 bits.
            for (uint64_t i = 0; i < n; i++) {
                uint32_t bits;
                std::memcpy(&bits, &x[i], 4);
                bits = (bits + 0x7fff + ((bits >> 16) & 1)) & 0xffff0000u;
                float want;
                std::memcpy(&want, &bits, 4);
                ASSERT_EQ(got[i], want) << i;
            }
        } else {
            for (uint64_t b = 0; b < n / 32; b++) {
                float amax = 0;
                for (int j = 0; j < 32; j++) amax = std::max(amax, std::fabs(x[b * 32 + j]));
                const float d = amax / 127, d16 = fp16_round(d);
                // Half a step, plus what storing the scale in fp16 moves the largest q (127).
                const float tol = 0.5f * d + 127 * std::fabs(d16 - d) + 1e-7f;
                for (int j = 0; j < 32; j++) {
                    ASSERT_LE(std::fabs(got[b * 32 + j] - x[b * 32 + j]), tol) << b << " " << j;
                }
            }
        }
    }
    EXPECT_EQ(g.data_offset % 32, 0u);
    EXPECT_EQ(g.file_size(), g.data_offset + expected_offset);
    EXPECT_EQ(fs::file_size(file), g.file_size());
}

TEST(Gguf, ExportsEveryTypeTiedAndUntied) {
    for (bool tied : {true, false}) {
        SCOPED_TRACE(tied ? "tied" : "untied");
        TempDir dir;
        make_folder(dir.path(), tiny_config(tied), tied ? 1 : 2);
        const std::pair<GgufType, const char*> types[] = {{GgufType::f32, "f32"},
                                                          {GgufType::f16, "f16"},
                                                          {GgufType::bf16, "bf16"},
                                                          {GgufType::q8_0, "q8_0"}};
        for (const auto& [type, label] : types) {
            SCOPED_TRACE(label);
            const fs::path out = dir.path() / (std::string("model-") + label + ".gguf");
            export_folder(dir.path(), type, out);
            check_file(dir.path(), out, type, tied);
        }
        // Only the four files next to the folder's own: no temporaries left behind.
        int ggufs = 0;
        for (const auto& entry : fs::directory_iterator(dir.path())) {
            const std::string name = entry.path().filename().string();
            EXPECT_NE(name[0], '.') << name;
            ggufs += entry.path().extension() == ".gguf";
        }
        EXPECT_EQ(ggufs, 4);
    }
}

TEST(Gguf, Q8_0BlockLayoutByHand) {
    TempDir dir;
    make_folder(dir.path(), tiny_config(true), 3);
    const fs::path out = export_folder(dir.path(), GgufType::q8_0, dir.path() / "m.gguf");
    const GgufFile g = read_gguf(out);
    const GgufTensorInfo* t = g.find("token_embd.weight");
    ASSERT_NE(t, nullptr);
    ASSERT_EQ(t->type, GgmlType::q8_0);
    const uint8_t* block = g.data(*t).data();  // row 0 = 0, 1, ..., 31: exactly one block
    // d = 31/127 = 0.244094...; in fp16 (step 2^-13 in [0.125, 0.25)) 1999.63 steps -> 2000:
    // 2000 * 2^-13 = 1.953125 * 2^-3 -> exponent 12, mantissa 976 -> 0x33D0, little-endian.
    EXPECT_EQ(block[0], 0xD0);
    EXPECT_EQ(block[1], 0x33);
    // q_j = round(j * 127/31) (no ties: 31 divides j*254 only for j = 0 and 31).
    const int8_t q[32] = {0,  4,  8,  12, 16, 20, 25, 29, 33, 37,  41,  45,  49,  53,  57,  61,
                          66, 70, 74, 78, 82, 86, 90, 94, 98, 102, 107, 111, 115, 119, 123, 127};
    for (int j = 0; j < 32; j++) EXPECT_EQ(static_cast<int8_t>(block[2 + j]), q[j]) << j;
    // Dequantized: q * 0.244140625.
    const std::vector<float> row = g.tensor_f32("token_embd.weight");
    for (int j = 0; j < 32; j++) EXPECT_EQ(row[j], q[j] * 0.244140625f) << j;
    // An all-zero block has scale 0 and all q 0 (id = 0, no division by zero).
    const float zeros[32] = {};
    const std::vector<uint8_t> zb = encode_ggml(GgmlType::q8_0, zeros, 32);
    EXPECT_EQ(zb, std::vector<uint8_t>(34, 0));
}

TEST(Gguf, HalfPrecisionConversion) {
    const std::pair<float, uint16_t> cases[] = {
        {0.0f, 0x0000},
        {-0.0f, 0x8000},
        {1.0f, 0x3C00},
        {-2.0f, 0xC000},
        {65504.0f, 0x7BFF},
        {65520.0f, 0x7C00},
        {1e9f, 0x7C00},
        {0x1p-24f, 0x0001},
        {0x1p-25f, 0x0000},
        {0x1.8p-25f, 0x0001},
        {0x1p-14f, 0x0400},
        {1.0f + 0x1p-11f, 0x3C00},
        {1.0f + 0x3p-11f, 0x3C02},
        {INFINITY, 0x7C00},
    };
    for (const auto& [f, h] : cases) {
        EXPECT_EQ(fp32_to_fp16(f), h) << f;
        EXPECT_EQ(fp16_to_fp32(h), fp16_round(f)) << f;
    }
    EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(NAN))));
    // Every finite half converts back to itself.
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7C00) == 0x7C00) continue;
        ASSERT_EQ(fp32_to_fp16(fp16_to_fp32(static_cast<uint16_t>(h))), h) << h;
    }
}

TEST(Gguf, LlamaPermutesQueryAndKeyRows) {
    // One head of 4 rows: [r0, r1 | r2, r3] (rotate-half halves) -> [r0, r2, r1, r3].
    const float w[8] = {0, 1, 10, 11, 20, 21, 30, 31};
    EXPECT_EQ(permute_llama_qk(w, 4, 2, 1), (std::vector<float>{0, 1, 20, 21, 10, 11, 30, 31}));

    TempDir dir;
    ModelConfig c = tiny_config(false, "llama");
    {
        Model m(c);
        m.init_random(4);
        // Row r of q (32 x 32) and k (16 x 32) holds r*100 + column.
        for (const char* n :
             {"model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight"}) {
            const TensorInfo* t = m.find(n);
            for (int64_t r = 0; r < t->shape[0]; r++) {
                for (int64_t col = 0; col < 32; col++) {
                    m.param(n)[r * 32 + col] = static_cast<float>(r * 100 + col);
                }
            }
        }
        save_model(m, dir.path());
        ByteTokenizer::save_hf_files(dir.path(), kMaxPos);
    }
    const fs::path out = export_folder(dir.path(), GgufType::f32, dir.path() / "llama.gguf");
    const GgufFile g = read_gguf(out);
    expect_str(g, "general.architecture", "llama");
    expect_u32(g, "llama.context_length", kMaxPos);
    expect_u32(g, "llama.embedding_length", 32);
    expect_u32(g, "llama.block_count", 2);
    expect_u32(g, "llama.feed_forward_length", 48);
    expect_u32(g, "llama.attention.head_count", 4);
    expect_u32(g, "llama.attention.head_count_kv", 2);
    expect_u32(g, "llama.rope.dimension_count", 8);
    expect_f32(g, "llama.rope.freq_base", 1e6f);
    expect_f32(g, "llama.attention.layer_norm_rms_epsilon", 1e-6f);
    EXPECT_FALSE(g.has("qwen2.context_length"));
    // Head dim 8: within each head, GGUF row 2i+s is HF row s*4+i.
    const int order[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    for (const auto& [name, heads] :
         {std::pair<std::string, int>{"blk.1.attn_q.weight", 4}, {"blk.1.attn_k.weight", 2}}) {
        SCOPED_TRACE(name);
        const std::vector<float> q = g.tensor_f32(name);
        ASSERT_EQ(q.size(), static_cast<size_t>(heads * 8 * 32));
        for (int h = 0; h < heads; h++) {
            for (int r = 0; r < 8; r++) {
                for (int col = 0; col < 32; col++) {
                    ASSERT_EQ(q[(h * 8 + r) * 32 + col], (h * 8 + order[r]) * 100 + col);
                }
            }
        }
    }
    // No biases in this llama; v, o and the MLP are not permuted.
    const auto want = expected_tensors(false, false);
    ASSERT_EQ(g.tensors.size(), want.size());
    const auto model = load_model(dir.path());
    for (const GgufTensorInfo& t : g.tensors) {
        ASSERT_TRUE(want.count(t.name)) << t.name;
        EXPECT_EQ(t.ne, want.at(t.name).ne) << t.name;
        if (t.name.find("attn_q") != std::string::npos) continue;
        if (t.name.find("attn_k") != std::string::npos) continue;
        const float* x = model->params() + model->find(want.at(t.name).hf)->offset;
        EXPECT_EQ(std::memcmp(g.data(t).data(), x, t.numel() * 4), 0) << t.name;
    }
}

TEST(Gguf, TokenizerMergesInBothFormsAndSpecialIds) {
    TempDir dir;
    const ModelConfig c = tiny_config(true);
    // A hand-made BPE: two merges in each form, a non-special added token, a bos token.
    const json tj = {{"added_tokens",
                      {{{"id", 5}, {"content", "<s>"}, {"special", true}},
                       {{"id", 6}, {"content", "hello"}, {"special", false}}}},
                     {"pre_tokenizer", {{"type", "ByteLevel"}}},
                     {"model",
                      {{"type", "BPE"},
                       {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}, {"\u0120", 3}, {"\u0120ab", 4}}},
                       {"merges", json::array({"a b", json::array({"\u0120", "ab"})})}}}};
    spit(dir.path() / "tokenizer.json", tj.dump());
    spit(dir.path() / "tokenizer_config.json", json({{"bos_token", {{"content", "<s>"}}}}).dump());
    spit(dir.path() / "generation_config.json", json({{"eos_token_id", {4, 2}}}).dump());
    const GgufTokenizer tok = load_gguf_tokenizer(dir.path(), c);
    EXPECT_EQ(tok.merges, (std::vector<std::string>{"a b", "\u0120 ab"}));
    EXPECT_EQ(tok.bos_id, 5);
    EXPECT_EQ(tok.eos_id, 4);
    EXPECT_EQ(tok.pad_id, -1);
    EXPECT_EQ(tok.pre, "qwen2");
    EXPECT_TRUE(tok.chat_template.empty());
    ASSERT_EQ(tok.tokens.size(), 264u);
    EXPECT_EQ(tok.tokens[5], "<s>");
    EXPECT_EQ(tok.token_types[5], 3);
    EXPECT_EQ(tok.tokens[6], "hello");
    EXPECT_EQ(tok.token_types[6], 4);
    EXPECT_EQ(tok.tokens[7], "[PAD7]");
    EXPECT_EQ(tok.token_types[7], 5);
    EXPECT_EQ(tok.token_types[2], 1);

    // Written out: bos present, merges as strings.
    Model m(c);
    m.init_random(5);
    const fs::path out = dir.path() / "t.gguf";
    write_gguf(m, tok, "t", GgufType::f32, out);
    const GgufFile g = read_gguf(out);
    expect_u32(g, "tokenizer.ggml.bos_token_id", 5);
    expect_u32(g, "tokenizer.ggml.eos_token_id", 4);
    EXPECT_FALSE(g.has("tokenizer.ggml.padding_token_id"));
    EXPECT_FALSE(g.has("tokenizer.chat_template"));
    ASSERT_EQ(g.at("tokenizer.ggml.merges").array.size(), 2u);
    EXPECT_EQ(g.at("tokenizer.ggml.merges").array[1].str, "\u0120 ab");

    // A bad merge entry is named.
    json bad = tj;
    bad["model"]["merges"] = json::array({json::array({"a"})});
    spit(dir.path() / "tokenizer.json", bad.dump());
    EXPECT_NE(error_of([&] { load_gguf_tokenizer(dir.path(), c); }).find("merges"),
              std::string::npos);
}

TEST(Gguf, TokenizerErrors) {
    TempDir dir;
    const ModelConfig c = tiny_config(true);
    Model m(c);
    m.init_random(6);
    save_model(m, dir.path());
    std::string err = error_of([&] { load_gguf_tokenizer(dir.path(), c); });
    EXPECT_NE(err.find((dir.path() / "tokenizer.json").string()), std::string::npos) << err;
    EXPECT_NE(err.find("missing"), std::string::npos) << err;

    ByteTokenizer::save_hf_files(dir.path(), kMaxPos);
    ModelConfig small = c;
    small.vocab_size = 200;
    err = error_of([&] { load_gguf_tokenizer(dir.path(), small); });
    EXPECT_NE(err.find("258"), std::string::npos) << err;
    EXPECT_NE(err.find("200"), std::string::npos) << err;
    EXPECT_NE(err.find("tokenizer.json"), std::string::npos) << err;

    // The writer refuses a tokenizer of another size.
    GgufTokenizer tok = load_gguf_tokenizer(dir.path(), c);
    tok.tokens.pop_back();
    tok.token_types.pop_back();
    err = error_of([&] { write_gguf(m, tok, "x", GgufType::f32, dir.path() / "x.gguf"); });
    EXPECT_NE(err.find("263"), std::string::npos) << err;
    EXPECT_NE(err.find("264"), std::string::npos) << err;
    EXPECT_FALSE(fs::exists(dir.path() / "x.gguf"));
}

// Offset of the u32 type field of tensor `name` (found by its name bytes in the infos).
size_t type_field_offset(const std::string& bytes, const std::string& name, uint32_t n_dims) {
    std::string needle(8, '\0');
    const uint64_t len = name.size();
    std::memcpy(needle.data(), &len, 8);
    needle += name;
    const size_t at = bytes.find(needle);
    EXPECT_NE(at, std::string::npos);
    return at + needle.size() + 4 + 8 * n_dims;
}

TEST(Gguf, ReaderRejectsBadFiles) {
    TempDir dir;
    make_folder(dir.path(), tiny_config(true), 7);
    const fs::path good = export_folder(dir.path(), GgufType::q8_0, dir.path() / "good.gguf");
    const std::string bytes = slurp(good);
    const fs::path bad = dir.path() / "bad.gguf";
    auto expect_error = [&](const std::string& content, const std::string& what) {
        spit(bad, content);
        const std::string err = error_of([&] { read_gguf(bad); });
        EXPECT_NE(err.find(bad.string()), std::string::npos) << err;
        EXPECT_NE(err.find(what), std::string::npos) << err;
    };

    std::string b = bytes;
    b[0] = 'X';
    expect_error(b, "magic");
    b = bytes;
    b[4] = 2;
    expect_error(b, "version 2");

    // Truncated anywhere: in the header, the metadata, the tensor infos and the data.
    const GgufFile g = read_gguf(good);
    const std::vector<size_t> cuts = {0,
                                      3,
                                      7,
                                      15,
                                      23,
                                      30,
                                      100,
                                      1000,
                                      5000,
                                      static_cast<size_t>(g.data_offset) - 1,
                                      static_cast<size_t>(g.data_offset) + 5,
                                      bytes.size() / 2};
    for (size_t cut : cuts) {
        SCOPED_TRACE(cut);
        expect_error(bytes.substr(0, cut), cut < 4 ? "magic" : "truncated");
    }
    // The last tensor's trailing padding is not needed to read its data; its data is.
    const GgufTensorInfo& last = g.tensors.back();
    const size_t end = g.data_offset + last.offset + last.nbytes();
    expect_error(bytes.substr(0, end - 1), "truncated");
    spit(bad, bytes.substr(0, end));
    EXPECT_NO_THROW(read_gguf(bad));

    // An unknown tensor type, and an offset out of place.
    b = bytes;
    const size_t tf = type_field_offset(b, "output_norm.weight", 1);
    b[tf] = 2;
    expect_error(b, "unknown or unsupported ggml type 2");
    b = bytes;
    const uint64_t far = uint64_t{1} << 40;
    std::memcpy(b.data() + tf + 4, &far, 8);
    expect_error(b, "offset");

    // An unknown metadata value type: the first key's type field follows its name.
    b = bytes;
    const size_t first_type = 24 + 8 + std::string("general.architecture").size();
    ASSERT_EQ(b.compare(32, 20, "general.architecture"), 0);
    b[first_type] = 13;
    expect_error(b, "unknown value type 13");

    // Not a GGUF at all, and a missing file.
    expect_error("hello, world", "magic");
    EXPECT_NE(error_of([&] { read_gguf(dir.path() / "none.gguf"); }).find("none.gguf"),
              std::string::npos);
}

TEST(Gguf, ReplacesAnExistingFileAndTheCliConverts) {
    TempDir dir;
    make_folder(dir.path(), tiny_config(false), 8);
    const fs::path out = dir.path() / "out" / "model.gguf";
    fs::create_directories(out.parent_path());
    spit(out, "old contents");
    const std::string cmd = std::string(CRUCIBLE_BINARY) + " convert --to gguf " +
                            dir.path().string() + " " + out.string() +
                            " --type q8_0 --name cli-model > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    const GgufFile g = read_gguf(out);
    expect_str(g, "general.name", "cli-model");
    expect_u32(g, "general.file_type", 7);
    EXPECT_EQ(g.tensors.size(), expected_tensors(false, true).size());
    EXPECT_EQ(std::distance(fs::directory_iterator(out.parent_path()), fs::directory_iterator()),
              1);
    // A failing conversion (no tokenizer.json) leaves the good file as it was.
    fs::remove(dir.path() / "tokenizer.json");
    const std::string before = slurp(out);
    ASSERT_NE(std::system((cmd + " 2>/dev/null").c_str()), 0);
    EXPECT_EQ(slurp(out), before);
}

}  // namespace
}  // namespace crucible
