#include "eval/sample_store.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "reward/rubric_format.h"

namespace crucible::eval {

std::string record_to_message(const SampleRecord& r, const std::string* to_judge) {
    nlohmann::json j = {{"item_id", r.item_id},
                        {"sample", r.sample},
                        {"seed", r.seed},
                        {"prompt", r.prompt},
                        {"completion", r.completion},
                        {"prompt_tokens", r.prompt_tokens},
                        {"completion_tokens", r.completion_tokens},
                        {"finish_reason", r.finish_reason},
                        {"answer", r.answer},
                        {"latency_s", r.latency_s},
                        {"error", r.error},
                        {"info", r.info}};
    if (r.score) j["score"] = *r.score;
    if (to_judge) j["to_judge"] = *to_judge;
    const std::vector<uint8_t> bytes = nlohmann::json::to_cbor(j);
    return std::string(bytes.begin(), bytes.end());
}

SampleRecord record_from_message(const std::string& message, std::optional<std::string>* to_judge) {
    try {
        const nlohmann::json j = nlohmann::json::from_cbor(message);
        SampleRecord r;
        r.item_id = j.at("item_id").get<std::string>();
        r.sample = j.at("sample").get<int>();
        r.seed = j.at("seed").get<uint64_t>();
        r.prompt = j.at("prompt").get<std::string>();
        r.completion = j.at("completion").get<std::string>();
        r.prompt_tokens = j.at("prompt_tokens").get<int64_t>();
        r.completion_tokens = j.at("completion_tokens").get<int64_t>();
        r.finish_reason = j.at("finish_reason").get<std::string>();
        r.answer = j.at("answer").get<std::string>();
        r.latency_s = j.at("latency_s").get<double>();
        r.error = j.at("error").get<std::string>();
        r.info = j.at("info").get<std::string>();
        if (j.contains("score")) r.score = j.at("score").get<double>();
        if (to_judge) {
            to_judge->reset();
            if (j.contains("to_judge")) *to_judge = j.at("to_judge").get<std::string>();
        }
        return r;
    } catch (const nlohmann::json::exception& e) {
        throw Error(std::string("eval: a sample message from another rank is malformed: ") +
                    e.what());
    }
}

using nlohmann::json;

namespace {

// Adds `column` to `table` unless it is there (stores written by older versions).
void add_column_if_missing(SqliteDb& db, const std::string& table, const std::string& column,
                           const std::string& declaration) {
    auto st = db.prepare("SELECT 1 FROM pragma_table_info(?) WHERE name = ?");
    st.bind(1, table).bind(2, column);
    if (st.step()) return;
    db.exec("ALTER TABLE " + table + " ADD COLUMN " + column + " " + declaration);
}

// A rubric item's rubric as stored in the items table.
std::string rubric_text(const EvalItem& item) {
    if (!item.rubric) return "";
    json j{{"rubric", reward::to_json(item.rubric->rubric)}, {"tags", item.rubric->tags}};
    if (item.rubric->rubric.aggregation)
        j["aggregation"] = reward::to_string(*item.rubric->rubric.aggregation);
    return j.dump();
}

std::shared_ptr<const reward::RubricItem> rubric_from_text(const std::string& text,
                                                           const std::string& id,
                                                           const std::string& where) {
    if (text.empty()) return nullptr;
    const json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("rubric"))
        throw Error(where + ": item '" + id + "': the stored rubric is not valid JSON");
    auto item = std::make_shared<reward::RubricItem>();
    item->id = id;
    const reward::SourceRef ref{where, 0, id};
    item->rubric = reward::parse_rubric(j["rubric"], ref);
    if (j.contains("tags")) item->tags = j["tags"].get<std::vector<std::string>>();
    if (j.contains("aggregation"))
        item->rubric.aggregation = reward::parse_aggregation(j["aggregation"].get<std::string>());
    return item;
}

std::string store_path(const std::string& run_dir) {
    std::error_code ec;
    std::filesystem::create_directories(run_dir, ec);
    if (ec) throw Error(run_dir + ": cannot create the run directory: " + ec.message());
    return (std::filesystem::path(run_dir) / "samples.sqlite").string();
}

}  // namespace

SampleStore::SampleStore(const std::string& run_dir) : db_(store_path(run_dir)) {
    db_.exec(
        "CREATE TABLE IF NOT EXISTS settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS items(ord INTEGER NOT NULL, id TEXT PRIMARY KEY,"
        " answer TEXT NOT NULL, verifier TEXT NOT NULL, cluster TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS samples(item_id TEXT NOT NULL, sample INTEGER NOT NULL,"
        " seed INTEGER NOT NULL, prompt TEXT NOT NULL, completion TEXT NOT NULL,"
        " prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,"
        " finish_reason TEXT NOT NULL, score REAL, answer TEXT NOT NULL,"
        " latency_s REAL NOT NULL, error TEXT NOT NULL, PRIMARY KEY(item_id, sample));");
    add_column_if_missing(db_, "items", "rubric", "TEXT NOT NULL DEFAULT ''");
    add_column_if_missing(db_, "samples", "rubric", "TEXT NOT NULL DEFAULT ''");
    add_column_if_missing(db_, "samples", "rubric_b", "TEXT NOT NULL DEFAULT ''");
    add_column_if_missing(db_, "samples", "info", "TEXT NOT NULL DEFAULT ''");
}

std::map<std::string, std::string> SampleStore::settings() {
    std::map<std::string, std::string> out;
    auto st = db_.prepare("SELECT key, value FROM settings");
    while (st.step()) out[st.column_text(0)] = st.column_text(1);
    return out;
}

void SampleStore::set_setting(const std::string& key, const std::string& value) {
    db_.prepare("INSERT OR REPLACE INTO settings(key, value) VALUES(?, ?)")
        .bind(1, key)
        .bind(2, value)
        .run();
}

void SampleStore::check_settings(const std::map<std::string, std::string>& settings) {
    const auto stored = this->settings();
    for (const auto& [key, value] : settings) {
        const auto it = stored.find(key);
        if (it != stored.end() && it->second != value)
            throw Error(path() + ": this run was made with " + key + " = '" + it->second +
                        "', now '" + value +
                        "'; use a new --out directory (or the same settings) to add samples");
    }
    SqliteTransaction tx(db_);
    for (const auto& [key, value] : settings)
        if (!stored.count(key)) set_setting(key, value);
    tx.commit();
}

void SampleStore::put_items(const std::vector<EvalItem>& items) {
    SqliteTransaction tx(db_);
    db_.exec("DELETE FROM items");
    auto st = db_.prepare(
        "INSERT INTO items(ord, id, answer, verifier, cluster, rubric) VALUES(?, ?, ?, ?, ?, ?)");
    for (size_t i = 0; i < items.size(); ++i) {
        st.reset();
        st.bind(1, static_cast<int64_t>(i))
            .bind(2, items[i].id)
            .bind(3, items[i].answer)
            .bind(4, items[i].verifier)
            .bind(5, items[i].cluster)
            .bind(6, rubric_text(items[i]))
            .run();
    }
    tx.commit();
}

std::vector<EvalItem> SampleStore::items() {
    std::vector<EvalItem> out;
    auto st = db_.prepare("SELECT id, answer, verifier, cluster, rubric FROM items ORDER BY ord");
    while (st.step()) {
        EvalItem it;
        it.id = st.column_text(0);
        it.answer = st.column_text(1);
        it.verifier = st.column_text(2);
        it.cluster = st.column_text(3);
        it.rubric = rubric_from_text(st.column_text(4), it.id, path());
        out.push_back(std::move(it));
    }
    return out;
}

void SampleStore::put(const SampleRecord& s) {
    auto st = db_.prepare(
        "INSERT OR REPLACE INTO samples(item_id, sample, seed, prompt, completion, prompt_tokens,"
        " completion_tokens, finish_reason, score, answer, latency_s, error, rubric, rubric_b,"
        " info) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    st.bind(1, s.item_id)
        .bind(2, s.sample)
        .bind(3, static_cast<int64_t>(s.seed))
        .bind(4, s.prompt)
        .bind(5, s.completion)
        .bind(6, s.prompt_tokens)
        .bind(7, s.completion_tokens)
        .bind(8, s.finish_reason);
    if (s.score) {
        st.bind(9, *s.score);
    } else {
        st.bind_null(9);
    }
    st.bind(10, s.answer)
        .bind(11, s.latency_s)
        .bind(12, s.error)
        .bind(13, s.rubric)
        .bind(14, s.rubric_b)
        .bind(15, s.info)
        .run();
}

void SampleStore::put_rubric_b(const std::string& item_id, int sample, const std::string& result) {
    db_.prepare("UPDATE samples SET rubric_b = ? WHERE item_id = ? AND sample = ?")
        .bind(1, result)
        .bind(2, item_id)
        .bind(3, sample)
        .run();
}

void SampleStore::clear_rubric_b() {
    db_.exec("UPDATE samples SET rubric_b = ''");
}

std::vector<SampleRecord> SampleStore::samples() {
    std::vector<SampleRecord> out;
    auto st = db_.prepare(
        "SELECT s.item_id, s.sample, s.seed, s.prompt, s.completion, s.prompt_tokens,"
        " s.completion_tokens, s.finish_reason, s.score, s.answer, s.latency_s, s.error,"
        " s.rubric, s.rubric_b, s.info FROM samples s LEFT JOIN items i ON i.id = s.item_id"
        " ORDER BY i.ord, s.item_id, s.sample");
    while (st.step()) {
        SampleRecord r;
        r.item_id = st.column_text(0);
        r.sample = static_cast<int>(st.column_int(1));
        r.seed = static_cast<uint64_t>(st.column_int(2));
        r.prompt = st.column_text(3);
        r.completion = st.column_text(4);
        r.prompt_tokens = st.column_int(5);
        r.completion_tokens = st.column_int(6);
        r.finish_reason = st.column_text(7);
        if (!st.is_null(8)) r.score = st.column_double(8);
        r.answer = st.column_text(9);
        r.latency_s = st.column_double(10);
        r.error = st.column_text(11);
        r.rubric = st.column_text(12);
        r.rubric_b = st.column_text(13);
        r.info = st.column_text(14);
        out.push_back(std::move(r));
    }
    return out;
}

std::map<std::string, std::vector<int>> SampleStore::done() {
    std::map<std::string, std::vector<int>> out;
    auto st = db_.prepare("SELECT item_id, sample FROM samples WHERE error = '' ORDER BY sample");
    while (st.step()) out[st.column_text(0)].push_back(static_cast<int>(st.column_int(1)));
    return out;
}

}  // namespace crucible::eval
