// Checkpoint I/O: the safetensors writer and reader (round trip, hand-made malformed files,
// F16/BF16 decoding), save_model/load_model of a tiny model, HF config.json parsing and
// publish_directory. Malformed files and half-precision bit patterns are written byte by
// byte here, independently of the writer under test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "core/file_io.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "test_util.h"

namespace crucible {
namespace {

using testutil::error_of;
using testutil::slurp;
using testutil::TempDir;

namespace fs = std::filesystem;
using nlohmann::json;

std::string le64(uint64_t v) {
    std::string s;
    for (int i = 0; i < 8; i++) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    return s;
}

// A safetensors file from a header text and raw data bytes (header length = header.size()).
std::string st_file(const std::string& header, const std::string& data) {
    return le64(header.size()) + header + data;
}

std::string f32_bytes(const std::vector<float>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

std::vector<float> to_f32(const SafeTensor& t) {
    std::vector<float> out(t.numel());
    t.to_f32(out.data());
    return out;
}

// ---- safetensors round trip -----------------------------------------------------------------

TEST(CheckpointIoSafetensors, SerializeThenReadRoundTrips) {
    const std::vector<float> a = {1.0f,
                                  -0.0f,
                                  std::numeric_limits<float>::denorm_min(),
                                  std::numeric_limits<float>::infinity(),
                                  -3.25f,
                                  std::numeric_limits<float>::quiet_NaN()};
    const std::vector<float> b = {0.1f, 0.2f, 0.3f, 1e30f};
    const std::vector<float> c = {42.0f};
    const std::map<std::string, std::string> meta = {{"format", "pt"},
                                                     {"note", "a \"quoted\" value"}};
    const std::string bytes = serialize_safetensors(
        {{"w.a", {2, 3}, a.data()}, {"w.b", {4}, b.data()}, {"scalar", {}, c.data()}}, meta);

    // Layout: 8-byte little-endian length, a header padded to a multiple of 8, 44 data bytes.
    ASSERT_GE(bytes.size(), 8u);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[i]);
    EXPECT_EQ(header_len % 8, 0u);
    ASSERT_EQ(bytes.size(), 8 + header_len + (6 + 4 + 1) * 4);
    const json h = json::parse(bytes.substr(8, header_len));
    ASSERT_TRUE(h.is_object());
    EXPECT_EQ(h.size(), 4u);  // three tensors and __metadata__
    EXPECT_EQ(h["w.a"]["dtype"], "F32");
    EXPECT_EQ(h["w.a"]["shape"], json({2, 3}));
    EXPECT_EQ(h["w.a"]["data_offsets"], json({0, 24}));
    EXPECT_EQ(h["w.b"]["shape"], json({4}));
    EXPECT_EQ(h["w.b"]["data_offsets"], json({24, 40}));
    EXPECT_EQ(h["scalar"]["shape"], json::array());
    EXPECT_EQ(h["scalar"]["data_offsets"], json({40, 44}));
    EXPECT_EQ(h["__metadata__"], json({{"format", "pt"}, {"note", "a \"quoted\" value"}}));
    // The data section is the tensors' bytes in order.
    EXPECT_EQ(bytes.substr(8 + header_len), f32_bytes(a) + f32_bytes(b) + f32_bytes(c));

    TempDir dir;
    const fs::path p = dir.write("rt.safetensors", bytes);
    const SafetensorsFile f(p);
    EXPECT_EQ(f.path(), p.string());
    EXPECT_EQ(f.metadata(), meta);
    ASSERT_EQ(f.tensors().size(), 3u);
    const SafeTensor& ta = f.at("w.a");
    EXPECT_EQ(ta.dtype, DType::f32);
    EXPECT_EQ(ta.shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(ta.numel(), 6u);
    EXPECT_EQ(ta.nbytes, 24u);
    const std::vector<float> ra = to_f32(ta);
    for (size_t i = 0; i < a.size(); i++) EXPECT_EQ(bits(ra[i]), bits(a[i])) << i;
    const std::vector<float> rb = to_f32(f.at("w.b"));
    for (size_t i = 0; i < b.size(); i++) EXPECT_EQ(bits(rb[i]), bits(b[i])) << i;
    EXPECT_EQ(f.at("scalar").shape, std::vector<int64_t>{});
    EXPECT_EQ(f.at("scalar").numel(), 1u);
    EXPECT_EQ(to_f32(f.at("scalar")), c);
    EXPECT_TRUE(f.has("w.b"));
    EXPECT_FALSE(f.has("w.c"));
    const std::string msg = error_of([&] { f.at("w.c"); });
    EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("w.c"), std::string::npos) << msg;
}

TEST(CheckpointIoSafetensors, EmptyFileWithoutTensorsOrMetadata) {
    const std::string bytes = serialize_safetensors({}, {});
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[i]);
    EXPECT_EQ(header_len % 8, 0u);
    EXPECT_EQ(bytes.size(), 8 + header_len);
    EXPECT_EQ(json::parse(bytes.substr(8)), json::object());
    TempDir dir;
    const SafetensorsFile f(dir.write("empty.safetensors", bytes));
    EXPECT_TRUE(f.tensors().empty());
    EXPECT_TRUE(f.metadata().empty());
}

TEST(CheckpointIoSafetensors, ReadsAHandWrittenFileWithUnpaddedHeader) {
    // 7-byte-aligned header (not a multiple of 8): allowed when reading.
    const std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("i":{"dtype":"I32","shape":[1,2],"data_offsets":[8,16]},)"
                               R"("__metadata__":{"k":"v"}})";
    const int32_t ints[2] = {-7, 123456};
    std::string data = f32_bytes({2.5f, -1.0f});
    data.append(reinterpret_cast<const char*>(ints), 8);
    TempDir dir;
    const SafetensorsFile f(dir.write("hand.safetensors", st_file(header, data)));
    EXPECT_EQ(to_f32(f.at("x")), (std::vector<float>{2.5f, -1.0f}));
    EXPECT_EQ(f.at("i").dtype, DType::i32);
    int32_t got[2] = {0, 0};
    f.at("i").to_i32(got);
    EXPECT_EQ(got[0], -7);
    EXPECT_EQ(got[1], 123456);
    EXPECT_EQ(f.metadata().at("k"), "v");
    // I32 is not a float tensor, F32 not an I32 one.
    EXPECT_THROW(
        {
            float out[2];
            f.at("i").to_f32(out);
        },
        Error);
    EXPECT_THROW(f.at("x").to_i32(got), Error);
}

TEST(CheckpointIoSafetensors, HalfPrecisionDecodesToFloat) {
    // Little-endian 16-bit patterns written by hand.
    // F16: 1.0 = 0x3C00, -2.5 = 0xC100, 0.5 = 0x3800, 65504 = 0x7BFF, 2^-24 = 0x0001 (smallest
    // subnormal), 2^-14 = 0x0400 (smallest normal), -inf = 0xFC00, -0 = 0x8000.
    // BF16: 1.0 = 0x3F80, -2.5 = 0xC020, 0.5 = 0x3F00, 3.0 = 0x4040.
    const std::string f16 =
        std::string("\x00\x3C\x00\xC1\x00\x38\xFF\x7B\x01\x00\x00\x04\x00\xFC\x00\x80", 16);
    const std::string bf16 = std::string("\x80\x3F\x20\xC0\x00\x3F\x40\x40", 8);
    const std::string header = R"({"h":{"dtype":"F16","shape":[8],"data_offsets":[0,16]},)"
                               R"("b":{"dtype":"BF16","shape":[2,2],"data_offsets":[16,24]}})";
    TempDir dir;
    const SafetensorsFile f(dir.write("half.safetensors", st_file(header, f16 + bf16)));
    ASSERT_EQ(f.at("h").dtype, DType::f16);
    ASSERT_EQ(f.at("b").dtype, DType::bf16);
    const std::vector<float> h = to_f32(f.at("h"));
    EXPECT_EQ(h[0], 1.0f);
    EXPECT_EQ(h[1], -2.5f);
    EXPECT_EQ(h[2], 0.5f);
    EXPECT_EQ(h[3], 65504.0f);
    EXPECT_EQ(h[4], std::ldexp(1.0f, -24));
    EXPECT_EQ(h[5], std::ldexp(1.0f, -14));
    EXPECT_EQ(h[6], -std::numeric_limits<float>::infinity());
    EXPECT_EQ(bits(h[7]), 0x80000000u);
    EXPECT_EQ(to_f32(f.at("b")), (std::vector<float>{1.0f, -2.5f, 0.5f, 3.0f}));
}

TEST(CheckpointIoSafetensors, F16SubnormalsAndNaN) {
    // 0x0200 = 2^-15 (subnormal, top mantissa bit), 0x03FF = 1023 * 2^-24, 0x7E00 = NaN.
    const std::string f16 = std::string("\x00\x02\xFF\x03\x00\x7E", 6);
    const std::string header = R"({"h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]}})";
    TempDir dir;
    const SafetensorsFile f(dir.write("sub.safetensors", st_file(header, f16)));
    const std::vector<float> h = to_f32(f.at("h"));
    EXPECT_EQ(h[0], std::ldexp(1.0f, -15));
    EXPECT_EQ(h[1], std::ldexp(1023.0f, -24));
    EXPECT_TRUE(std::isnan(h[2]));
}

// Tensors point into the file's own buffer, so a copy would alias it: the type is move-only.
TEST(CheckpointIoSafetensors, FileIsMoveOnlySoTensorsCannotDangle) {
    static_assert(!std::is_copy_constructible_v<SafetensorsFile>);
    static_assert(!std::is_copy_assignable_v<SafetensorsFile>);
    const std::vector<float> x = {1.5f, -2.0f, 3.25f};
    TempDir dir;
    const fs::path p =
        dir.write("move.safetensors", serialize_safetensors({{"x", {3}, x.data()}}, {}));
    auto original = std::make_unique<SafetensorsFile>(p);
    const SafetensorsFile moved = std::move(*original);
    original.reset();
    EXPECT_EQ(to_f32(moved.at("x")), x);
}

// ---- malformed safetensors ------------------------------------------------------------------

struct Malformed {
    const char* name;
    std::string bytes;
    const char* fragment;  // part of the expected message besides the path
};

TEST(CheckpointIoSafetensors, MalformedFilesAreRejectedNamingTheFile) {
    const std::string t4 = R"({"dtype":"F32","shape":[1],"data_offsets":)";
    const std::string four = f32_bytes({1.0f});
    const std::string eight = f32_bytes({1.0f, 2.0f});
    const Malformed cases[] = {
        {"empty", "", "8 bytes"},
        {"short", std::string("\x02\x00\x00\x00\x00", 5), "8 bytes"},
        {"header_longer_than_file", le64(1000) + "{}", "header length"},
        {"header_length_huge", le64(~0ULL) + "{}      ", "header length"},
        {"header_not_json", st_file("not json", ""), "JSON"},
        {"header_truncated_json", st_file(R"({"a":{"dtype":)", ""), "JSON"},
        {"header_empty", st_file("", ""), "JSON"},
        {"header_array", st_file("[1,2]", ""), "object"},
        {"header_string", st_file(R"("abc")", ""), "object"},
        {"unknown_dtype", st_file(R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}})", four),
         "Q4"},
        {"dtype_not_string", st_file(R"({"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", four),
         "dtype"},
        {"missing_data_offsets", st_file(R"({"a":{"dtype":"F32","shape":[1]}})", four),
         "data_offsets"},
        {"tensor_not_object", st_file(R"({"a":[1,2,3]})", ""), "'a'"},
        {"negative_shape",
         st_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", four), "shape"},
        {"shape_not_array",
         st_file(R"({"a":{"dtype":"F32","shape":1,"data_offsets":[0,4]}})", four), "shape"},
        {"offsets_past_end", st_file(R"({"a":)" + t4 + "[0,8]}}", four), "out of range"},
        {"offsets_reversed",
         st_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", four),
         "out of range"},
        {"offsets_one_number", st_file(R"({"a":)" + t4 + "[0]}}", four), "data_offsets"},
        {"offsets_negative", st_file(R"({"a":)" + t4 + "[-4,0]}}", four), "data_offsets"},
        {"size_mismatch",
         st_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight),
         "does not match"},
        {"size_mismatch_dtype",
         st_file(R"({"a":{"dtype":"F16","shape":[1],"data_offsets":[0,4]}})", four),
         "does not match"},
        {"overlap",
         st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                 R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                 f32_bytes({1, 2, 3})),
         "overlap"},
        {"same_range_twice", st_file(R"({"a":)" + t4 + R"([0,4]},"b":)" + t4 + "[0,4]}}", four),
         "overlap"},
        {"hole",
         st_file(R"({"a":)" + t4 + R"([0,4]},"b":)" + t4 + "[8,12]}}", f32_bytes({1, 2, 3})),
         "hole"},
        {"hole_at_start", st_file(R"({"a":)" + t4 + "[4,8]}}", eight), "hole"},
        {"trailing_bytes", st_file(R"({"a":)" + t4 + "[0,4]}}", eight), "trailing"},
        {"data_without_tensors", st_file("{}", four), "trailing"},
        {"duplicate_tensor", st_file(R"({"a":)" + t4 + R"([0,4]},"a":)" + t4 + "[4,8]}}", eight),
         "duplicate"},
        {"duplicate_metadata_key", st_file(R"({"__metadata__":{"k":"x","k":"y"}})", ""),
         "duplicate"},
        {"metadata_not_string", st_file(R"({"__metadata__":{"format":1}})", ""), "__metadata__"},
        {"metadata_null_value", st_file(R"({"__metadata__":{"format":null}})", ""), "__metadata__"},
        {"metadata_not_object", st_file(R"({"__metadata__":"pt"})", ""), "__metadata__"},
    };
    TempDir dir;
    for (const Malformed& m : cases) {
        SCOPED_TRACE(m.name);
        const fs::path p = dir.write(std::string(m.name) + ".safetensors", m.bytes);
        const std::string msg = error_of([&] { SafetensorsFile f(p); });
        EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
        EXPECT_NE(msg.find(m.fragment), std::string::npos) << msg;
    }
}

TEST(CheckpointIoSafetensors, MissingFileNamesThePath) {
    TempDir dir;
    const fs::path p = dir.path() / "absent.safetensors";
    EXPECT_NE(error_of([&] { SafetensorsFile f(p); }).find(p.string()), std::string::npos);
}

TEST(CheckpointIoSafetensors, ZeroSizedTensorsAreAllowed) {
    const std::string header = R"({"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},)"
                               R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
    TempDir dir;
    const SafetensorsFile f(dir.write("zero.safetensors", st_file(header, f32_bytes({5.0f}))));
    EXPECT_EQ(f.at("e").numel(), 0u);
    EXPECT_EQ(f.at("e").nbytes, 0u);
    EXPECT_EQ(to_f32(f.at("a")), std::vector<float>{5.0f});
}

// ---- save_model / load_model ----------------------------------------------------------------

ModelConfig tiny_config(bool tied) {
    ModelConfig c;
    c.model_type = "qwen2";
    c.vocab_size = 16;
    c.hidden_size = 8;
    c.intermediate_size = 12;
    c.num_hidden_layers = 1;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.head_dim = 4;
    c.max_position_embeddings = 16;
    c.rms_norm_eps = 1e-5f;
    c.rope_theta = 5000.0f;
    c.tie_word_embeddings = tied;
    c.eos_token_id = 3;
    return c;
}

// Distinct, exactly representable values in every parameter.
void fill_params(Model& m) {
    for (size_t i = 0; i < m.num_params(); i++) {
        m.params()[i] = static_cast<float>(static_cast<int>(i % 97) - 48) / 64.0f;
    }
}

void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
    EXPECT_EQ(a.model_type, b.model_type);
    EXPECT_EQ(a.vocab_size, b.vocab_size);
    EXPECT_EQ(a.hidden_size, b.hidden_size);
    EXPECT_EQ(a.intermediate_size, b.intermediate_size);
    EXPECT_EQ(a.num_hidden_layers, b.num_hidden_layers);
    EXPECT_EQ(a.num_attention_heads, b.num_attention_heads);
    EXPECT_EQ(a.num_key_value_heads, b.num_key_value_heads);
    EXPECT_EQ(a.head_dim, b.head_dim);
    EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
    EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
    EXPECT_EQ(a.rope_theta, b.rope_theta);
    EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
    EXPECT_EQ(a.qkv_bias, b.qkv_bias);
    EXPECT_EQ(a.o_bias, b.o_bias);
    EXPECT_EQ(a.mlp_bias, b.mlp_bias);
    EXPECT_EQ(a.bos_token_id, b.bos_token_id);
    EXPECT_EQ(a.eos_token_id, b.eos_token_id);
}

void round_trip(bool tied) {
    Model m(tiny_config(tied));
    // By hand: embed 16*8 = 128; per layer: norms 8+8, q 8*8+8, k 4*8+4, v 4*8+4, o 8*8,
    // gate/up/down 3*12*8 = 288; final norm 8; untied lm_head another 128.
    ASSERT_EQ(m.num_params(), tied ? 648u : 776u);
    fill_params(m);
    TempDir dir;
    save_model(m, dir.path());
    const std::unique_ptr<Model> back = load_model(dir.path());
    expect_same_config(back->config(), m.config());
    ASSERT_EQ(back->num_params(), m.num_params());
    EXPECT_EQ(std::memcmp(back->params(), m.params(), m.num_params() * sizeof(float)), 0);

    // config.json is an HF Qwen2 config.
    const json cj = json::parse(slurp(dir.path() / "config.json"));
    EXPECT_EQ(cj["architectures"], json::array({"Qwen2ForCausalLM"}));
    EXPECT_EQ(cj["model_type"], "qwen2");
    EXPECT_EQ(cj["vocab_size"], 16);
    EXPECT_EQ(cj["hidden_size"], 8);
    EXPECT_EQ(cj["intermediate_size"], 12);
    EXPECT_EQ(cj["num_hidden_layers"], 1);
    EXPECT_EQ(cj["num_attention_heads"], 2);
    EXPECT_EQ(cj["num_key_value_heads"], 1);
    EXPECT_EQ(cj["max_position_embeddings"], 16);
    EXPECT_EQ(cj["tie_word_embeddings"], tied);
    EXPECT_EQ(cj["hidden_act"], "silu");
    EXPECT_EQ(cj["eos_token_id"], 3);
    EXPECT_FALSE(cj.contains("bos_token_id"));  // -1: not set
    EXPECT_FLOAT_EQ(cj["rope_theta"].get<float>(), 5000.0f);
    EXPECT_FLOAT_EQ(cj["rms_norm_eps"].get<float>(), 1e-5f);

    // model.safetensors: HF names and shapes, F32, lm_head only when untied.
    const SafetensorsFile f(dir.path() / "model.safetensors");
    EXPECT_EQ(f.tensors().size(), tied ? 14u : 15u);
    EXPECT_EQ(f.has("lm_head.weight"), !tied);
    EXPECT_EQ(f.at("model.embed_tokens.weight").shape, (std::vector<int64_t>{16, 8}));
    EXPECT_EQ(f.at("model.layers.0.self_attn.q_proj.weight").shape, (std::vector<int64_t>{8, 8}));
    EXPECT_EQ(f.at("model.layers.0.self_attn.k_proj.weight").shape, (std::vector<int64_t>{4, 8}));
    EXPECT_EQ(f.at("model.layers.0.self_attn.k_proj.bias").shape, (std::vector<int64_t>{4}));
    EXPECT_FALSE(f.has("model.layers.0.self_attn.o_proj.bias"));
    EXPECT_EQ(f.at("model.layers.0.mlp.down_proj.weight").shape, (std::vector<int64_t>{8, 12}));
    EXPECT_EQ(f.at("model.norm.weight").shape, (std::vector<int64_t>{8}));
    for (const auto& [name, t] : f.tensors()) EXPECT_EQ(t.dtype, DType::f32) << name;
    EXPECT_EQ(f.metadata().at("format"), "pt");
}

TEST(CheckpointIoModel, RoundTripTied) {
    round_trip(true);
}
TEST(CheckpointIoModel, RoundTripUntied) {
    round_trip(false);
}

TEST(CheckpointIoModel, LlamaRoundTripWithBiases) {
    ModelConfig c = tiny_config(false);
    c.model_type = "llama";
    c.qkv_bias = true;
    c.o_bias = true;
    c.mlp_bias = true;
    c.bos_token_id = 1;
    Model m(c);
    fill_params(m);
    TempDir dir;
    save_model(m, dir.path());
    const json cj = json::parse(slurp(dir.path() / "config.json"));
    EXPECT_EQ(cj["architectures"], json::array({"LlamaForCausalLM"}));
    EXPECT_EQ(cj["model_type"], "llama");
    EXPECT_EQ(cj["attention_bias"], true);
    EXPECT_EQ(cj["mlp_bias"], true);
    EXPECT_EQ(cj["bos_token_id"], 1);
    const std::unique_ptr<Model> back = load_model(dir.path());
    expect_same_config(back->config(), c);
    ASSERT_EQ(back->num_params(), m.num_params());
    EXPECT_EQ(std::memcmp(back->params(), m.params(), m.num_params() * sizeof(float)), 0);
    EXPECT_NE(back->find("model.layers.0.self_attn.o_proj.bias"), nullptr);
    EXPECT_NE(back->find("model.layers.0.mlp.down_proj.bias"), nullptr);
}

TEST(CheckpointIoModel, UntiedCheckpointLoadsIntoTiedConfig) {
    // A redundant lm_head.weight is ignored when the config ties embeddings.
    Model m(tiny_config(false));
    fill_params(m);
    TempDir dir;
    save_model(m, dir.path());
    json cj = json::parse(slurp(dir.path() / "config.json"));
    cj["tie_word_embeddings"] = true;
    dir.write("config.json", cj.dump());
    const std::unique_ptr<Model> back = load_model(dir.path());
    EXPECT_TRUE(back->config().tie_word_embeddings);
    EXPECT_EQ(back->num_params(), 648u);
    const TensorInfo* e = back->find("model.embed_tokens.weight");
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(std::memcmp(back->params() + e->offset,
                          m.params() + m.find("model.embed_tokens.weight")->offset,
                          e->numel * sizeof(float)),
              0);
}

TEST(CheckpointIoModel, LoadsHalfPrecisionWeights) {
    // A hand-written BF16 checkpoint of the tiny tied model: every weight 1.0 (0x3F80) except
    // model.norm.weight, whose 8 entries are -2.5 (0xC020).
    Model shape_src(tiny_config(true));
    json header = json::object();
    std::string data;
    for (const TensorInfo& t : shape_src.tensors()) {
        const bool norm = t.name == "model.norm.weight";
        header[t.name] = {{"dtype", "BF16"},
                          {"shape", t.shape},
                          {"data_offsets", {data.size(), data.size() + 2 * t.numel}}};
        for (size_t i = 0; i < t.numel; i++) data += norm ? std::string("\x20\xC0", 2) : "\x80\x3F";
    }
    TempDir dir;
    dir.write("model.safetensors", st_file(header.dump(), data));
    dir.write("config.json", to_json(tiny_config(true)).dump());
    const std::unique_ptr<Model> m = load_model(dir.path());
    for (const TensorInfo& t : m->tensors()) {
        const float want = t.name == "model.norm.weight" ? -2.5f : 1.0f;
        for (size_t i = 0; i < t.numel; i++) {
            ASSERT_EQ(m->params()[t.offset + i], want) << t.name << "[" << i << "]";
        }
    }
}

TEST(CheckpointIoModel, MissingConfigJsonNamesIt) {
    TempDir dir;
    const std::string msg = error_of([&] { load_model(dir.path()); });
    EXPECT_NE(msg.find((dir.path() / "config.json").string()), std::string::npos) << msg;
}

TEST(CheckpointIoModel, InvalidConfigJsonNamesIt) {
    TempDir dir;
    dir.write("config.json", "{\"vocab_size\": 16,");
    const std::string msg = error_of([&] { load_model(dir.path()); });
    EXPECT_NE(msg.find((dir.path() / "config.json").string()), std::string::npos) << msg;
}

TEST(CheckpointIoModel, ConfigMissingHiddenSizeNamesFieldAndFile) {
    Model m(tiny_config(true));
    TempDir dir;
    save_model(m, dir.path());
    json cj = json::parse(slurp(dir.path() / "config.json"));
    cj.erase("hidden_size");
    dir.write("config.json", cj.dump());
    const std::string msg = error_of([&] { load_model(dir.path()); });
    EXPECT_NE(msg.find((dir.path() / "config.json").string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("'hidden_size'"), std::string::npos) << msg;
}

TEST(CheckpointIoModel, MissingWeightsFileNamesIt) {
    Model m(tiny_config(true));
    TempDir dir;
    save_model(m, dir.path());
    fs::remove(dir.path() / "model.safetensors");
    const std::string msg = error_of([&] { load_model(dir.path()); });
    EXPECT_NE(msg.find((dir.path() / "model.safetensors").string()), std::string::npos) << msg;
}

TEST(CheckpointIoModel, WrongShapeNamesTheTensor) {
    Model m(tiny_config(true));
    TempDir dir;
    save_model(m, dir.path());
    // The config now asks for intermediate_size 10; the first tensor with that dimension is
    // the gate projection, saved as [12, 8].
    json cj = json::parse(slurp(dir.path() / "config.json"));
    cj["intermediate_size"] = 10;
    dir.write("config.json", cj.dump());
    const std::string msg = error_of([&] { load_model(dir.path()); });
    EXPECT_NE(msg.find("'model.layers.0.mlp.gate_proj.weight'"), std::string::npos) << msg;
    EXPECT_NE(msg.find((dir.path() / "model.safetensors").string()), std::string::npos) << msg;
}

TEST(CheckpointIoModel, MissingTensorNamesIt) {
    // A tied checkpoint has no lm_head.weight; a config that unties needs one.
    Model m(tiny_config(true));
    TempDir dir;
    save_model(m, dir.path());
    json cj = json::parse(slurp(dir.path() / "config.json"));
    cj["tie_word_embeddings"] = false;
    dir.write("config.json", cj.dump());
    const std::string msg = error_of([&] { load_model(dir.path()); });
    EXPECT_NE(msg.find("'lm_head.weight'"), std::string::npos) << msg;
    EXPECT_NE(msg.find((dir.path() / "model.safetensors").string()), std::string::npos) << msg;
}

TEST(CheckpointIoModel, TensorTheConfigDoesNotDescribeIsAnError) {
    // A checkpoint with two layers under a config.json that says one.
    ModelConfig two = tiny_config(true);
    two.num_hidden_layers = 2;
    Model m(two);
    TempDir dir;
    save_model(m, dir.path());
    json cj = json::parse(slurp(dir.path() / "config.json"));
    cj["num_hidden_layers"] = 1;
    dir.write("config.json", cj.dump());
    const std::string msg = error_of([&] { load_model(dir.path()); });
    EXPECT_NE(msg.find("'model.layers.1."), std::string::npos) << msg;
}

TEST(CheckpointIoModel, RedundantLmHeadInATiedCheckpointIsIgnored) {
    Model untied(tiny_config(false));
    untied.init_random(5);
    TempDir dir;
    save_model(untied, dir.path());
    json cj = json::parse(slurp(dir.path() / "config.json"));
    cj["tie_word_embeddings"] = true;
    dir.write("config.json", cj.dump());
    auto tied = load_model(dir.path());
    EXPECT_EQ(tied->find("lm_head.weight"), nullptr);
    EXPECT_EQ(tied->param("model.embed_tokens.weight")[3],
              untied.param("model.embed_tokens.weight")[3]);
}

TEST(CheckpointIoModel, IntegerTensorIsRejected) {
    // model.norm.weight stored as I32 with the right shape.
    Model src(tiny_config(true));
    json header = json::object();
    std::string data;
    for (const TensorInfo& t : src.tensors()) {
        const bool as_int = t.name == "model.norm.weight";
        header[t.name] = {{"dtype", as_int ? "I32" : "F32"},
                          {"shape", t.shape},
                          {"data_offsets", {data.size(), data.size() + 4 * t.numel}}};
        data.append(4 * t.numel, '\0');
    }
    TempDir dir;
    dir.write("model.safetensors", st_file(header.dump(), data));
    dir.write("config.json", to_json(tiny_config(true)).dump());
    const std::string msg = error_of([&] { load_model(dir.path()); });
    EXPECT_NE(msg.find("'model.norm.weight'"), std::string::npos) << msg;
}

// ---- publish_directory ----------------------------------------------------------------------

TEST(CheckpointIoPublish, PublishesUnderTheNewName) {
    TempDir dir;
    const fs::path tmp = dir.path() / "step-1.tmp";
    const fs::path final_dir = dir.path() / "step-1";
    fs::create_directories(tmp);
    write_file_durable(tmp / "a.bin", std::string("hello\0world", 11));
    EXPECT_TRUE(publish_directory(tmp, final_dir));
    EXPECT_FALSE(fs::exists(tmp));
    ASSERT_TRUE(fs::is_directory(final_dir));
    EXPECT_EQ(slurp(final_dir / "a.bin"), std::string("hello\0world", 11));
}

TEST(CheckpointIoPublish, ExistingDirectoryIsNeverReplaced) {
    TempDir dir;
    const fs::path final_dir = dir.path() / "step-2";
    fs::create_directories(final_dir);
    write_file_durable(final_dir / "model.safetensors", "original weights");
    write_file_durable(final_dir / "config.json", "{\"original\": true}");
    const fs::path tmp = dir.path() / "step-2.tmp";
    fs::create_directories(tmp);
    write_file_durable(tmp / "model.safetensors", "NEW WEIGHTS");
    write_file_durable(tmp / "extra.txt", "new");
    EXPECT_FALSE(publish_directory(tmp, final_dir));
    EXPECT_FALSE(fs::exists(tmp));
    EXPECT_EQ(slurp(final_dir / "model.safetensors"), "original weights");
    EXPECT_EQ(slurp(final_dir / "config.json"), "{\"original\": true}");
    EXPECT_FALSE(fs::exists(final_dir / "extra.txt"));
    size_t entries = 0;
    for (const auto& e : fs::directory_iterator(final_dir)) {
        (void)e;
        entries++;
    }
    EXPECT_EQ(entries, 2u);
}

TEST(CheckpointIoPublish, ExistingEmptyDirectoryIsNotReplacedEither) {
    TempDir dir;
    const fs::path final_dir = dir.path() / "step-3";
    fs::create_directories(final_dir);
    const fs::path tmp = dir.path() / "step-3.tmp";
    fs::create_directories(tmp);
    write_file_durable(tmp / "x", "x");
    EXPECT_FALSE(publish_directory(tmp, final_dir));
    EXPECT_FALSE(fs::exists(tmp));
    EXPECT_TRUE(fs::is_empty(final_dir));
}

// ---- parse_model_config -----------------------------------------------------------------

json base_json() {
    return {{"vocab_size", 16},       {"hidden_size", 8},         {"intermediate_size", 12},
            {"num_hidden_layers", 1}, {"num_attention_heads", 2}, {"num_key_value_heads", 1}};
}

TEST(CheckpointIoModelConfig, DefaultsForAMinimalQwen2Config) {
    const ModelConfig c = parse_model_config(base_json(), "cfg");
    EXPECT_EQ(c.model_type, "qwen2");
    EXPECT_EQ(c.head_dim, 4);  // 8 / 2
    EXPECT_EQ(c.q_dim(), 8);
    EXPECT_EQ(c.kv_dim(), 4);
    EXPECT_EQ(c.max_position_embeddings, 32768);
    EXPECT_EQ(c.rope_theta, 10000.0f);
    EXPECT_EQ(c.rms_norm_eps, 1e-6f);
    EXPECT_FALSE(c.tie_word_embeddings);
    EXPECT_TRUE(c.qkv_bias);
    EXPECT_FALSE(c.o_bias);
    EXPECT_FALSE(c.mlp_bias);
    EXPECT_EQ(c.bos_token_id, -1);
    EXPECT_EQ(c.eos_token_id, -1);
}

TEST(CheckpointIoModelConfig, KeyValueHeadsDefaultToAttentionHeads) {
    json j = base_json();
    j.erase("num_key_value_heads");
    EXPECT_EQ(parse_model_config(j, "cfg").num_key_value_heads, 2);
}

TEST(CheckpointIoModelConfig, RopeThetaFromRopeParameters) {
    json j = base_json();
    j["rope_parameters"] = {{"rope_theta", 1000000.0}, {"rope_type", "default"}};
    EXPECT_EQ(parse_model_config(j, "cfg").rope_theta, 1e6f);
    j["rope_theta"] = 500.0;  // rope_parameters wins over the top-level field
    EXPECT_EQ(parse_model_config(j, "cfg").rope_theta, 1e6f);
    json k = base_json();
    k["rope_theta"] = 500.0;
    EXPECT_EQ(parse_model_config(k, "cfg").rope_theta, 500.0f);
}

TEST(CheckpointIoModelConfig, ExplicitHeadDim) {
    json j = base_json();
    j["head_dim"] = 16;
    const ModelConfig c = parse_model_config(j, "cfg");
    EXPECT_EQ(c.head_dim, 16);
    EXPECT_EQ(c.q_dim(), 32);
    EXPECT_EQ(c.kv_dim(), 16);
}

TEST(CheckpointIoModelConfig, LlamaAttentionBias) {
    json j = base_json();
    j["model_type"] = "llama";
    const ModelConfig plain = parse_model_config(j, "cfg");
    EXPECT_FALSE(plain.qkv_bias);
    EXPECT_FALSE(plain.o_bias);
    EXPECT_FALSE(plain.mlp_bias);
    j["attention_bias"] = true;
    j["mlp_bias"] = true;
    const ModelConfig biased = parse_model_config(j, "cfg");
    EXPECT_TRUE(biased.qkv_bias);
    EXPECT_TRUE(biased.o_bias);
    EXPECT_TRUE(biased.mlp_bias);
}

TEST(CheckpointIoModelConfig, EosTokenIdListTakesTheFirst) {
    json j = base_json();
    j["eos_token_id"] = {7, 9};
    j["bos_token_id"] = 5;
    const ModelConfig c = parse_model_config(j, "cfg");
    EXPECT_EQ(c.eos_token_id, 7);
    EXPECT_EQ(c.bos_token_id, 5);
}

TEST(CheckpointIoModelConfig, HeadsNotAMultipleOfKvHeadsErrors) {
    json j = base_json();
    j["hidden_size"] = 12;
    j["num_attention_heads"] = 3;
    j["num_key_value_heads"] = 2;
    const std::string msg = error_of([&] { parse_model_config(j, "my/config.json"); });
    EXPECT_NE(msg.find("my/config.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("num_attention_heads"), std::string::npos) << msg;
    EXPECT_NE(msg.find("num_key_value_heads"), std::string::npos) << msg;
}

TEST(CheckpointIoModelConfig, BadFieldsNameTheField) {
    const struct {
        const char* name;
        const char* field;
        json value;  // null: erase the field
    } cases[] = {
        {"missing vocab", "vocab_size", nullptr},  {"missing layers", "num_hidden_layers", nullptr},
        {"string hidden", "hidden_size", "8"},     {"float hidden", "hidden_size", 8.5},
        {"zero layers", "num_hidden_layers", 0},   {"negative vocab", "vocab_size", -1},
        {"huge vocab", "vocab_size", 1LL << 40},   {"bad model_type", "model_type", "gpt2"},
        {"bool as int", "tie_word_embeddings", 1}, {"rms eps", "rms_norm_eps", 0.0},
        {"odd head_dim", "head_dim", 3},
    };
    for (const auto& tc : cases) {
        SCOPED_TRACE(tc.name);
        json j = base_json();
        if (tc.value.is_null()) {
            j.erase(tc.field);
        } else {
            j[tc.field] = tc.value;
        }
        const std::string msg = error_of([&] { parse_model_config(j, "where.json"); });
        EXPECT_NE(msg.find("where.json"), std::string::npos) << msg;
        EXPECT_NE(msg.find(tc.field), std::string::npos) << msg;
    }
    EXPECT_NE(error_of([&] { parse_model_config(json::array(), "arr.json"); }).find("arr.json"),
              std::string::npos);
}

}  // namespace
}  // namespace crucible

namespace crucible {
namespace {

// BF16 writing rounds to nearest even, as torch's .to(torch.bfloat16) does; values worked by
// hand: 1.0 = 0x3F80, -2.5 = 0xC020, 0.5 = 0x3F00, 1 + 2^-8 is a tie and rounds to even
// (0x3F80), 1 + 3*2^-9 is above the tie (0x3F81).
TEST(CheckpointIoSafetensors, Bf16WritingRoundsToNearestEven) {
    const std::vector<float> x = {1.0f, -2.5f, 0.5f, 1.00390625f, 1.005859375f};
    const std::string bytes = serialize_safetensors({{"x", {5}, x.data(), DType::bf16}}, {});
    const uint16_t want[] = {0x3F80, 0xC020, 0x3F00, 0x3F80, 0x3F81};
    const size_t data = bytes.size() - 10;
    for (int i = 0; i < 5; i++) {
        const uint16_t got =
            static_cast<uint8_t>(bytes[data + 2 * i]) |
            static_cast<uint16_t>(static_cast<uint8_t>(bytes[data + 2 * i + 1]) << 8);
        EXPECT_EQ(got, want[i]) << i;
    }
    const auto parsed =
        parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mem");
    EXPECT_EQ(parsed.tensors.at("x").dtype, DType::bf16);
}

}  // namespace
}  // namespace crucible
