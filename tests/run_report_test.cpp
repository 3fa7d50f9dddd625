// `crucible report` on training runs (run/run_report.h) and their TensorBoard event files
// (run/tfevents.h). The event format is checked three ways: CRC-32C against its published
// check value, one event against bytes worked out by hand from the documented protocol
// buffer and TFRecord layouts, and whole files against a reader written separately in Python
// from the same documents.
#include "run/run_report.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/file_io.h"
#include "core/svg_chart.h"
#include "run/tfevents.h"
#include "test_util.h"

namespace crucible {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testutil::TempDir;

std::string hex(const std::string& bytes) {
    std::string out;
    char buf[4];
    for (unsigned char c : bytes) {
        std::snprintf(buf, sizeof buf, "%02x", c);
        out += buf;
    }
    return out;
}

TEST(TfEvents, Crc32cIsTheCastagnoliCheckValue) {
    // The CRC-32C check value: "123456789" -> 0xE3069283 (RFC 3720, B.4; the CRC catalogue).
    EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
    EXPECT_EQ(crc32c(""), 0u);
}

TEST(TfEvents, AScalarEventIsItsDocumentedBytes) {
    // Event{wall_time: 1.5 (field 1, fixed64), step: 3 (field 2, varint), summary (field 5):
    // Summary{value (1): Value{tag (1): "loss", simple_value (2, fixed32): 0.25}}}.
    // Value:   0a 04 6c 6f 73 73 | 15 00 00 80 3e                (11 bytes; 0.25f = 0x3e800000)
    // Summary: 0a 0b <Value>                                     (13 bytes)
    // Event:   09 00 00 00 00 00 00 f8 3f | 10 03 | 2a 0d <Summary> (1.5 = 0x3ff8000000000000)
    const std::string event = scalar_event(1.5, 3, "loss", 0.25f);
    EXPECT_EQ(hex(event),
              "09000000000000f83f"
              "1003"
              "2a0d"
              "0a0b"
              "0a046c6f7373"
              "150000803e");
    // The file's first event: wall_time, then file_version (field 3) "brain.Event:2".
    EXPECT_EQ(hex(file_version_event(1.5)),
              "09000000000000f83f"
              "1a0d" +
                  hex("brain.Event:2"));
    // The record: the length (26, uint64 LE), the masked CRC-32C of those 8 bytes, the data,
    // the masked CRC-32C of the data; masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8.
    const auto masked = [](uint32_t c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; };
    const std::string record = tfrecord(event);
    ASSERT_EQ(record.size(), 8 + 4 + event.size() + 4);
    EXPECT_EQ(hex(record.substr(0, 8)), "1a00000000000000");
    const auto u32 = [](const std::string& s, size_t at) {
        uint32_t v = 0;
        for (int i = 3; i >= 0; i--) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
        return v;
    };
    EXPECT_EQ(u32(record, 8), masked(crc32c(record.substr(0, 8))));
    EXPECT_EQ(record.substr(12, event.size()), event);
    EXPECT_EQ(u32(record, 12 + event.size()), masked(crc32c(event)));
}

// A reader of TensorBoard event files written from the format's documents, not from the
// writer: it checks every CRC and decodes the protocol buffers field by field.
constexpr const char* kPythonReader = R"PY(
import json, struct, sys
def crc32c(data):
    c = 0xffffffff
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x82f63b78 if c & 1 else c >> 1
    return c ^ 0xffffffff
def masked(c):
    return (((c >> 15) | (c << 17)) + 0xa282ead8) & 0xffffffff
def varint(b, i):
    v = s = 0
    while True:
        x = b[i]; i += 1
        v |= (x & 0x7f) << s; s += 7
        if not x & 0x80:
            return v, i
def fields(b):
    i, out = 0, []
    while i < len(b):
        key, i = varint(b, i)
        f, t = key >> 3, key & 7
        if t == 0:
            v, i = varint(b, i)
        elif t == 1:
            v = struct.unpack('<d', b[i:i + 8])[0]; i += 8
        elif t == 5:
            v = struct.unpack('<f', b[i:i + 4])[0]; i += 4
        elif t == 2:
            n, i = varint(b, i); v = b[i:i + n]; i += n
        else:
            raise ValueError('wire type %d' % t)
        out.append((f, v))
    return out
data = open(sys.argv[1], 'rb').read()
i, version, scalars = 0, None, []
while i < len(data):
    head = data[i:i + 8]
    n = struct.unpack('<Q', head)[0]
    assert struct.unpack('<I', data[i + 8:i + 12])[0] == masked(crc32c(head)), 'length crc'
    body = data[i + 12:i + 12 + n]
    assert struct.unpack('<I', data[i + 12 + n:i + 16 + n])[0] == masked(crc32c(body)), 'data crc'
    i += 16 + n
    step, summary = 0, None
    for f, v in fields(body):
        if f == 2: step = v
        if f == 3: version = v.decode()
        if f == 5: summary = v
    if summary is None:
        continue
    for f, v in fields(summary):
        if f != 1: continue
        tag = val = None
        for g, w in fields(v):
            if g == 1: tag = w.decode()
            if g == 2: val = w
        scalars.append([tag, step, val])
print(json.dumps({"version": version, "scalars": scalars}))
)PY";

// A training run folder with the given metrics lines (and RL samples).
fs::path write_run(const fs::path& dir, const std::vector<json>& metrics,
                   const std::vector<json>& samples = {}) {
    fs::create_directories(dir);
    std::string m, s;
    for (const json& j : metrics) m += j.dump() + "\n";
    for (const json& j : samples) s += j.dump() + "\n";
    write_file_durable(dir / "metrics.jsonl", m);
    if (!samples.empty()) write_file_durable(dir / "samples.jsonl", s);
    return dir;
}

std::vector<json> sft_metrics() {
    std::vector<json> out;
    for (int step = 1; step <= 5; step++)
        out.push_back({{"step", step}, {"loss", 5.0 / step}, {"lr", 1e-3}, {"step_s", 0.5}});
    return out;
}

std::vector<json> rl_metrics() {
    std::vector<json> out;
    for (int step = 1; step <= 4; step++)
        out.push_back({{"step", step},
                       {"loss", -0.01 * step},
                       {"reward_mean", 0.1 * step},
                       {"accuracy", 0.05 * step},
                       {"reward/correct", 0.1 * step},
                       {"kl", 0.001},
                       {"step_s", 2.0}});
    return out;
}

TEST(TfEvents, APythonReaderOfTheFormatReadsBackEveryScalar) {
    TempDir tmp;
    std::vector<TrainingRun> runs = {
        load_training_run(write_run(tmp.path() / "sft", sft_metrics())),
        load_training_run(write_run(tmp.path() / "rl", rl_metrics()))};
    const auto files = write_tensorboard(runs, tmp.path() / "tb");
    ASSERT_EQ(files.size(), 2u);
    EXPECT_EQ(files[1].parent_path(), tmp.path() / "tb" / "rl");
    EXPECT_EQ(files[1].filename().string().rfind("events.out.tfevents.", 0), 0u);
    const fs::path reader = tmp.write("read_tfevents.py", kPythonReader);
    for (size_t r = 0; r < runs.size(); r++) {
        const std::string out = testutil::command_output("python3 " + reader.string() + " " +
                                                         files[r].string() + " 2>&1");
        const json got = json::parse(out, nullptr, false);
        ASSERT_FALSE(got.is_discarded()) << out;
        EXPECT_EQ(got["version"], "brain.Event:2");
        // Every number of every line, in order, as a float.
        json want = json::array();
        for (const json& m : runs[r].metrics)
            for (const auto& [k, v] : m.items())
                if (k != "step")
                    want.push_back(
                        {k, m["step"], static_cast<double>(static_cast<float>(v.get<double>()))});
        EXPECT_EQ(got["scalars"], want) << runs[r].name;
    }
}

TEST(TrainingReport, SmoothingIsTensorBoards) {
    // w = 0.5 on 1, 2, 3: EMA 0.5, 1.25, 2.125, debiased by 1 - 0.5^n: 1, 5/3, 17/7.
    const std::vector<double> s = smooth_series({1.0, 2.0, NAN, 3.0}, 0.5);
    ASSERT_EQ(s.size(), 4u);
    EXPECT_DOUBLE_EQ(s[0], 1.0);
    EXPECT_DOUBLE_EQ(s[1], 5.0 / 3.0);
    EXPECT_TRUE(std::isnan(s[2]));  // passes through, not counted
    EXPECT_DOUBLE_EQ(s[3], 17.0 / 7.0);
    EXPECT_EQ(smooth_series({4.0, 8.0}, 0.0), (std::vector<double>{4.0, 8.0}));
}

TEST(TrainingReport, ThePageDrawsEveryMetricOfEveryRunAndTheLastRollouts) {
    TempDir tmp;
    std::vector<json> samples;
    for (int step = 3; step <= 4; step++)
        for (int i = 0; i < 2; i++)
            samples.push_back({{"step", step},
                               {"item", "q" + std::to_string(i)},
                               {"prompt", "What is <b>2+2</b>?"},
                               {"group", 0},
                               {"completion", "step " + std::to_string(step) + " says 4 & more"},
                               {"reward", 1.0},
                               {"advantage", i ? -0.5 : 0.5}});
    std::vector<TrainingRun> runs = {
        load_training_run(write_run(tmp.path() / "a" / "rl", rl_metrics(), samples)),
        load_training_run(write_run(tmp.path() / "b" / "rl", rl_metrics())),
        load_training_run(write_run(tmp.path() / "sft", sft_metrics()))};
    EXPECT_EQ(runs[0].kind, "rl");
    EXPECT_EQ(runs[2].kind, "sft");
    name_runs(runs);
    EXPECT_EQ(runs[0].name, "a/rl");  // two folders named rl
    EXPECT_EQ(runs[1].name, "b/rl");
    EXPECT_EQ(runs[2].name, "sft");
    const std::string html = training_report_html(runs, 0.6);
    // A chart per metric, the preferred ones first.
    size_t last = 0;
    for (const char* k :
         {"loss", "reward_mean", "accuracy", "kl", "lr", "step_s", "reward/correct"}) {
        const size_t at = html.find(std::string("data-metric=\"") + k + "\"");
        ASSERT_NE(at, std::string::npos) << k;
        EXPECT_GT(at, last) << k;
        last = at;
    }
    EXPECT_EQ(html.find("data-metric=\"step\""), std::string::npos);
    // Every run in the legends, the smoothing said, the last step's rollouts escaped.
    for (const char* part : {">a/rl<", ">b/rl<", ">sft<", "weight 0.6", "Rollouts of a/rl, step 4",
                             "What is &lt;b&gt;2+2&lt;/b&gt;?", "step 4 says 4 &amp; more"})
        EXPECT_NE(html.find(part), std::string::npos) << part;
    EXPECT_EQ(html.find("step 3 says"), std::string::npos);  // not the last step's
    EXPECT_THROW(training_report_html(runs, 1.0), Error);
    // Not a run, or a run with nothing logged, is named.
    EXPECT_THROW(load_training_run(tmp.path()), Error);
    fs::create_directories(tmp.path() / "empty");
    write_file_durable(tmp.path() / "empty" / "metrics.jsonl", "");
    EXPECT_NE(
        testutil::error_of([&] { load_training_run(tmp.path() / "empty"); }).find("metrics.jsonl"),
        std::string::npos);
    // A step that is not an integer is named with its line (a hand-edited or foreign log).
    fs::create_directories(tmp.path() / "odd");
    write_file_durable(tmp.path() / "odd" / "metrics.jsonl",
                       "{\"step\": 1, \"loss\": 1}\n{\"step\": \"two\", \"loss\": 1}\n");
    EXPECT_NE(testutil::error_of([&] {
                  load_training_run(tmp.path() / "odd");
              }).find("metrics.jsonl:2: \"step\" must be an integer"),
              std::string::npos);
}

TEST(TrainingReport, ARunKeepsItsColourInEveryChart) {
    // The stroke of a chart's first line.
    const auto stroke = [](const std::string& svg) {
        const size_t at = svg.find("stroke=\"#", svg.find("<path"));
        return svg.substr(at + 8, 7);
    };
    const ChartSeries a{"a", {1, 2}, {1, 2}}, b{"b", {1, 2}, {2, 1}};
    ChartSeries third{"c", {1, 2}, {1, 1}};
    const std::string by_position = svg_line_chart("t", {third, a, b}, "x", "y");
    third.colour = 2;  // as if the third of three runs, alone in its chart
    const std::string alone = svg_line_chart("t", {third}, "x", "y");
    const std::string third_of_three =
        svg_line_chart("t", {a, b, ChartSeries{"c", {1, 2}, {1, 1}}}, "x", "y");
    EXPECT_NE(stroke(by_position), stroke(alone));  // the first series' colour by default
    // The colour a run's line has when it is the third line drawn.
    const size_t third_path = third_of_three.find(
        "<path", third_of_three.find("<path", third_of_three.find("<path") + 1) + 1);
    EXPECT_EQ(stroke(third_of_three.substr(third_path)), stroke(alone));
}

TEST(TrainingReport, TheCliReportsTrainingRunsAndRefusesAMix) {
    TempDir tmp;
    write_run(tmp.path() / "rl", rl_metrics());
    fs::create_directories(tmp.path() / "evalrun");
    write_file_durable(tmp.path() / "evalrun" / "samples.sqlite", "");
    const std::string bin = CRUCIBLE_BINARY;
    const std::string out = (tmp.path() / "r.html").string();
    EXPECT_EQ(std::system((bin + " report " + (tmp.path() / "rl").string() + " --out " + out +
                           " --tensorboard " + (tmp.path() / "tb").string() + " 2>/dev/null")
                              .c_str()),
              0);
    EXPECT_NE(testutil::slurp(out).find("Training report"), std::string::npos);
    EXPECT_TRUE(fs::exists(tmp.path() / "tb" / "rl"));
    const std::string mixed =
        testutil::command_output(bin + " report " + (tmp.path() / "rl").string() + " " +
                                 (tmp.path() / "evalrun").string() + " 2>&1");
    EXPECT_NE(mixed.find("report them separately"), std::string::npos) << mixed;
    const std::string neither =
        testutil::command_output(bin + " report " + tmp.path().string() + " 2>&1");
    EXPECT_NE(neither.find("neither an eval run"), std::string::npos) << neither;
}

}  // namespace
}  // namespace crucible
