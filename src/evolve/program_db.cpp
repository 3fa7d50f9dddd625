#include "evolve/program_db.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "evolve/selection.h"

namespace crucible::evolve {
namespace {

using nlohmann::json;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS programs(
  id INTEGER PRIMARY KEY,
  parent_id INTEGER NOT NULL, second_parent_id INTEGER NOT NULL,
  island INTEGER NOT NULL, generation INTEGER NOT NULL, iteration INTEGER NOT NULL UNIQUE,
  status TEXT NOT NULL, code TEXT NOT NULL, code_hash TEXT NOT NULL,
  diff TEXT NOT NULL, prompt TEXT NOT NULL, model TEXT NOT NULL, operator TEXT NOT NULL,
  prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL,
  score REAL, metrics TEXT NOT NULL, features TEXT NOT NULL, cell TEXT NOT NULL,
  artifacts TEXT NOT NULL, error TEXT NOT NULL, llm_s REAL NOT NULL, eval_s REAL NOT NULL,
  created_at REAL NOT NULL, children INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS programs_hash ON programs(code_hash);
CREATE INDEX IF NOT EXISTS programs_status ON programs(status);
CREATE TABLE IF NOT EXISTS members(
  island INTEGER NOT NULL, cell TEXT NOT NULL, program_id INTEGER NOT NULL,
  PRIMARY KEY(island, cell));
CREATE TABLE IF NOT EXISTS islands(island INTEGER PRIMARY KEY, generation INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS migrations(
  after_children INTEGER NOT NULL, from_island INTEGER NOT NULL, to_island INTEGER NOT NULL,
  program_id INTEGER NOT NULL, placed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
)sql";

constexpr const char* kColumns =
    "id, parent_id, second_parent_id, island, generation, iteration, status, code, code_hash, "
    "diff, prompt, model, operator, prompt_tokens, completion_tokens, cost_usd, score, metrics, "
    "features, cell, artifacts, error, llm_s, eval_s, created_at, children";

double now_s() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

ProgramDb::ProgramDb(const std::string& path, EvolveOptions options)
    : db_(path), options_(std::move(options)) {
    db_.exec(kSchema);
    for (int i = 0; i < options_.islands; i++) {
        db_.prepare("INSERT OR IGNORE INTO islands(island, generation) VALUES(?, 0)")
            .bind(1, i)
            .run();
    }
}

std::string ProgramDb::meta(const std::string& key, const std::string& fallback) {
    auto st = db_.prepare("SELECT value FROM meta WHERE key = ?");
    st.bind(1, key);
    return st.step() ? st.column_text(0) : fallback;
}

void ProgramDb::set_meta(const std::string& key, const std::string& value) {
    db_.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)")
        .bind(1, key)
        .bind(2, value)
        .run();
}

void ProgramDb::write_row(SqliteStatement& st, const Program& p) {
    int i = 0;
    const auto next = [&i]() { return ++i; };
    st.bind(next(), p.parent_id);
    st.bind(next(), p.second_parent_id);
    st.bind(next(), p.island);
    st.bind(next(), p.generation);
    st.bind(next(), p.iteration);
    st.bind(next(), p.status);
    st.bind(next(), p.code);
    st.bind(next(), p.code_hash);
    st.bind(next(), p.diff);
    st.bind(next(), p.prompt);
    st.bind(next(), p.model);
    st.bind(next(), p.operator_name);
    st.bind(next(), p.prompt_tokens);
    st.bind(next(), p.completion_tokens);
    st.bind(next(), p.cost_usd);
    if (std::isfinite(p.score)) {
        st.bind(next(), p.score);
    } else {
        st.bind_null(next());
    }
    st.bind(next(), p.metrics.dump());
    st.bind(next(), p.features.dump());
    st.bind(next(), p.cell);
    st.bind(next(), p.artifacts);
    st.bind(next(), p.error);
    st.bind(next(), p.llm_s);
    st.bind(next(), p.eval_s);
    st.bind(next(), p.created_at > 0 ? p.created_at : now_s());
}

Program ProgramDb::read_row(SqliteStatement& st) {
    Program p;
    int i = 0;
    p.id = st.column_int(i++);
    p.parent_id = st.column_int(i++);
    p.second_parent_id = st.column_int(i++);
    p.island = static_cast<int>(st.column_int(i++));
    p.generation = static_cast<int>(st.column_int(i++));
    p.iteration = st.column_int(i++);
    p.status = st.column_text(i++);
    p.code = st.column_text(i++);
    p.code_hash = st.column_text(i++);
    p.diff = st.column_text(i++);
    p.prompt = st.column_text(i++);
    p.model = st.column_text(i++);
    p.operator_name = st.column_text(i++);
    p.prompt_tokens = st.column_int(i++);
    p.completion_tokens = st.column_int(i++);
    p.cost_usd = st.column_double(i++);
    p.score = st.is_null(i) ? std::numeric_limits<double>::quiet_NaN() : st.column_double(i);
    i++;
    p.metrics = json::parse(st.column_text(i++));
    p.features = json::parse(st.column_text(i++));
    p.cell = st.column_text(i++);
    p.artifacts = st.column_text(i++);
    p.error = st.column_text(i++);
    p.llm_s = st.column_double(i++);
    p.eval_s = st.column_double(i++);
    p.created_at = st.column_double(i++);
    p.children = st.column_int(i++);
    return p;
}

int64_t ProgramDb::insert(Program& p) {
    if (p.code_hash.empty()) p.code_hash = code_hash(p.code);
    SqliteTransaction tx(db_);
    auto st = db_.prepare(
        "INSERT INTO programs(parent_id, second_parent_id, island, generation, iteration, status, "
        "code, code_hash, diff, prompt, model, operator, prompt_tokens, completion_tokens, "
        "cost_usd, score, metrics, features, cell, artifacts, error, llm_s, eval_s, created_at) "
        "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    write_row(st, p);
    st.run();
    p.id = db_.last_insert_rowid();
    if (p.parent_id > 0) {
        db_.prepare("UPDATE programs SET children = children + 1 WHERE id = ?")
            .bind(1, p.parent_id)
            .run();
    }
    tx.commit();
    return p.id;
}

bool ProgramDb::finish(const Program& p) {
    SqliteTransaction tx(db_);
    auto st = db_.prepare(
        "UPDATE programs SET status = ?, score = ?, metrics = ?, features = ?, cell = ?, "
        "artifacts = ?, error = ?, eval_s = ? WHERE id = ? AND status = 'pending'");
    st.bind(1, p.status);
    if (std::isfinite(p.score)) {
        st.bind(2, p.score);
    } else {
        st.bind_null(2);
    }
    st.bind(3, p.metrics.dump()).bind(4, p.features.dump()).bind(5, p.cell);
    st.bind(6, p.artifacts).bind(7, p.error).bind(8, p.eval_s).bind(9, p.id);
    st.run();
    if (db_.changes() != 1) {
        throw Error("program database " + db_.path() + ": program " + std::to_string(p.id) +
                    " is not pending (evaluated twice?)");
    }
    bool placed = false;
    if (p.status == "evaluated") {
        placed = place(p, p.island);
        db_.prepare("UPDATE islands SET generation = generation + 1 WHERE island = ?")
            .bind(1, p.island)
            .run();
        const int64_t done = count("status = 'evaluated' AND iteration > 0");
        if (options_.migration_interval > 0 && options_.islands > 1 &&
            done % options_.migration_interval == 0) {
            migrate(done);
        }
    }
    tx.commit();
    return placed;
}

void ProgramDb::seed_islands(const Program& initial) {
    SqliteTransaction tx(db_);
    for (int i = 0; i < options_.islands; i++) place(initial, i);
    tx.commit();
}

// MAP-Elites: the program takes its cell when the cell is empty or its score is strictly
// higher than the owner's; an owner it displaces leaves the island (its row stays).
bool ProgramDb::place(const Program& p, int island) {
    auto cur = db_.prepare(
        "SELECT m.program_id, p.score FROM members m JOIN programs p ON p.id = m.program_id "
        "WHERE m.island = ? AND m.cell = ?");
    cur.bind(1, island).bind(2, p.cell);
    if (cur.step()) {
        if (cur.column_int(0) == p.id) return false;
        if (!(p.score > cur.column_double(1))) return false;
    }
    db_.prepare("INSERT OR REPLACE INTO members(island, cell, program_id) VALUES(?, ?, ?)")
        .bind(1, island)
        .bind(2, p.cell)
        .bind(3, p.id)
        .run();
    return true;
}

// Ring migration: the top max(1, floor(rate * size)) members of every island (taken before
// any moves) are offered to islands (i+1) mod n and (i-1) mod n under the MAP-Elites rule.
void ProgramDb::migrate(int64_t after_children) {
    const int n = options_.islands;
    std::vector<std::vector<int64_t>> tops(n);
    for (int i = 0; i < n; i++) {
        const auto m = members(i);
        const size_t k =
            std::max<size_t>(1, static_cast<size_t>(std::floor(options_.migration_rate *
                                                               static_cast<double>(m.size()))));
        tops[i].assign(m.begin(), m.begin() + static_cast<long>(std::min(k, m.size())));
    }
    for (int i = 0; i < n; i++) {
        const int targets[2] = {(i + 1) % n, (i + n - 1) % n};
        for (int t = 0; t < (targets[0] == targets[1] ? 1 : 2); t++) {
            for (int64_t id : tops[i]) {
                const auto present = members(targets[t]);
                if (std::find(present.begin(), present.end(), id) != present.end()) continue;
                const Program p = get(id);
                const bool placed = place(p, targets[t]);
                db_.prepare("INSERT INTO migrations VALUES(?, ?, ?, ?, ?)")
                    .bind(1, after_children)
                    .bind(2, i)
                    .bind(3, targets[t])
                    .bind(4, id)
                    .bind(5, placed ? 1 : 0)
                    .run();
            }
        }
    }
}

Program ProgramDb::get(int64_t id) {
    auto st = db_.prepare(std::string("SELECT ") + kColumns + " FROM programs WHERE id = ?");
    st.bind(1, id);
    if (!st.step())
        throw Error("program database " + db_.path() + ": no program " + std::to_string(id));
    return read_row(st);
}

std::vector<Program> ProgramDb::all(const std::string& where) {
    auto st = db_.prepare(std::string("SELECT ") + kColumns + " FROM programs WHERE " + where +
                          " ORDER BY id");
    std::vector<Program> out;
    while (st.step()) out.push_back(read_row(st));
    return out;
}

std::vector<Program> ProgramDb::pending() {
    return all("status = 'pending'");
}

int64_t ProgramDb::count(const std::string& where) {
    auto st = db_.prepare("SELECT COUNT(*) FROM programs WHERE " + where);
    st.step();
    return st.column_int(0);
}

int64_t ProgramDb::max_iteration() {
    auto st = db_.prepare("SELECT COALESCE(MAX(iteration), -1) FROM programs");
    st.step();
    return st.column_int(0);
}

std::vector<int64_t> ProgramDb::members(int island) {
    auto st = db_.prepare(
        "SELECT m.program_id FROM members m JOIN programs p ON p.id = m.program_id "
        "WHERE m.island = ? ORDER BY p.score DESC, p.id ASC");
    st.bind(1, island);
    std::vector<int64_t> out;
    while (st.step()) out.push_back(st.column_int(0));
    return out;
}

std::vector<std::pair<std::string, int64_t>> ProgramDb::cells(int island) {
    auto st = db_.prepare("SELECT cell, program_id FROM members WHERE island = ? ORDER BY cell");
    st.bind(1, island);
    std::vector<std::pair<std::string, int64_t>> out;
    while (st.step()) out.emplace_back(st.column_text(0), st.column_int(1));
    return out;
}

std::vector<Migration> ProgramDb::migrations() {
    auto st = db_.prepare("SELECT * FROM migrations ORDER BY rowid");
    std::vector<Migration> out;
    while (st.step()) {
        out.push_back({st.column_int(0), static_cast<int>(st.column_int(1)),
                       static_cast<int>(st.column_int(2)), st.column_int(3),
                       st.column_int(4) != 0});
    }
    return out;
}

int ProgramDb::island_generation(int island) {
    auto st = db_.prepare("SELECT generation FROM islands WHERE island = ?");
    st.bind(1, island);
    return st.step() ? static_cast<int>(st.column_int(0)) : 0;
}

Program ProgramDb::best() {
    const auto v =
        all("id = (SELECT id FROM programs WHERE status = 'evaluated' ORDER BY score DESC, id ASC "
            "LIMIT 1)");
    return v.empty() ? Program{} : v[0];
}

int64_t ProgramDb::total_tokens() {
    auto st =
        db_.prepare("SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM programs");
    st.step();
    return st.column_int(0);
}

double ProgramDb::total_cost() {
    auto st = db_.prepare("SELECT COALESCE(SUM(cost_usd), 0) FROM programs");
    st.step();
    return st.column_double(0);
}

Program ProgramDb::select_parent(int island, Rng& rng) {
    const auto ids = members(island);
    if (options_.archive_ratio > 0 && rng.uniform() < options_.archive_ratio) {
        // The elite archive (best archive_size programs of the run), restricted to this
        // island's members so that a child always lands on its parent's island.
        auto st = db_.prepare(
            "SELECT id FROM programs WHERE status = 'evaluated' ORDER BY score DESC, id ASC "
            "LIMIT ?");
        st.bind(1, options_.archive_size);
        std::vector<int64_t> archive;
        while (st.step()) {
            const int64_t id = st.column_int(0);
            if (std::find(ids.begin(), ids.end(), id) != ids.end()) archive.push_back(id);
        }
        if (!archive.empty()) return get(archive[rng.below(archive.size())]);
    }
    if (ids.empty())
        throw Error("program database: island " + std::to_string(island) + " is empty");
    std::vector<Program> cands;
    std::vector<double> scores;
    std::vector<int64_t> kids;
    for (int64_t id : ids) {
        cands.push_back(get(id));
        scores.push_back(cands.back().score);
        kids.push_back(cands.back().children);
    }
    const auto probs = selection_probabilities(options_, scores, kids);
    return cands[sample_index(probs, rng)];
}

std::vector<Program> ProgramDb::inspirations(int island, const Program& parent, Rng& rng) {
    std::vector<Program> out;
    std::vector<int64_t> rest;
    for (int64_t id : members(island)) {
        if (id == parent.id) continue;
        if (static_cast<int>(out.size()) < options_.num_top_inspirations) {
            out.push_back(get(id));
        } else {
            rest.push_back(id);
        }
    }
    for (int k = 0; k < options_.num_diverse_inspirations && !rest.empty(); k++) {
        const size_t j = rng.below(rest.size());
        Program p = get(rest[j]);
        rest.erase(rest.begin() + static_cast<long>(j));
        if (p.cell == parent.cell) {
            k--;  // same niche as the parent: not diverse, try another
            continue;
        }
        out.push_back(std::move(p));
    }
    return out;
}

std::string ProgramDb::duplicate_reason(const std::string& code, int island) {
    auto st = db_.prepare(
        "SELECT id FROM programs WHERE code_hash = ? AND status IN ('pending', 'evaluated') "
        "ORDER BY id LIMIT 1");
    st.bind(1, code_hash(code));
    if (st.step()) {
        return "duplicate of program " + std::to_string(st.column_int(0)) +
               " (same code up to whitespace)";
    }
    if (options_.similarity_threshold < 1) {
        const std::string mine = evolve_text(code);
        for (int64_t id : members(island)) {
            const double s = code_similarity(mine, evolve_text(get(id).code));
            if (s >= options_.similarity_threshold) {
                return "near-duplicate of program " + std::to_string(id) + " (similarity " +
                       std::to_string(s) + ")";
            }
        }
    }
    return "";
}

void ProgramDb::compute_features(Program& p) {
    const std::string text = evolve_text(p.code);
    std::string cell;
    json f = json::object();
    for (const FeatureDim& d : options_.features) {
        double v = d.min;
        if (d.name == "code_length") {
            v = static_cast<double>(text.size());
        } else if (d.name == "score") {
            v = p.score;
        } else if (d.name == "diversity") {
            // Mean dissimilarity to a fixed reference set: the first 20 evaluated programs.
            const auto ref = all(
                "id IN (SELECT id FROM programs WHERE status = 'evaluated' ORDER BY id LIMIT 20)");
            double sum = 0;
            int n = 0;
            for (const auto& r : ref) {
                if (r.id == p.id) continue;
                sum += 1.0 - code_similarity(text, evolve_text(r.code));
                n++;
            }
            v = n ? sum / n : 0.0;
        } else if (p.metrics.contains(d.name) && p.metrics[d.name].is_number()) {
            v = p.metrics[d.name].get<double>();
        }
        if (!std::isfinite(v)) v = d.min;
        f[d.name] = v;
        const double t = (std::clamp(v, d.min, d.max) - d.min) / (d.max - d.min);
        const int bin = std::min(d.bins - 1, static_cast<int>(std::floor(t * d.bins)));
        if (!cell.empty()) cell.push_back(',');
        cell.append(std::to_string(bin));
    }
    p.features = f;
    p.cell = cell;
}

}  // namespace crucible::evolve
