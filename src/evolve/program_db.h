// The program database: every candidate of a run in SQLite (WAL), with its lineage, island,
// LLM exchange, metrics, features and timings; islands, each a MAP-Elites grid whose cell
// owners are the island's members; the elite archive; ring migration; parent and inspiration
// sampling; near-duplicate rejection. One thread (the controller) uses it; every change that
// must be atomic (a child evaluated and placed, a migration) is one transaction.
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/rng.h"
#include "core/sqlite.h"
#include "evolve/problem.h"

namespace crucible::evolve {

struct Program {
    int64_t id = 0;
    int64_t parent_id = 0;         // 0: none (the initial program)
    int64_t second_parent_id = 0;  // crossover's other parent, else 0
    int island = 0;
    int generation = 0;
    int64_t iteration = 0;  // 0 for the initial program, then 1, 2, ... one per candidate
    std::string status;     // pending | evaluated | failed | rejected
    std::string code;
    std::string code_hash;
    std::string diff;           // the LLM reply or the operator's description of the change
    std::string prompt;         // the prompt sent (empty for the offline operator)
    std::string model;          // endpoint model, or "offline"
    std::string operator_name;  // diff | full | mutate | crossover | initial
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
    double cost_usd = 0;
    double score = std::numeric_limits<double>::quiet_NaN();  // combined_score when evaluated
    nlohmann::json metrics = nlohmann::json::object();
    nlohmann::json features = nlohmann::json::object();
    std::string cell;  // "b0,b1,..." in the MAP-Elites grid
    std::string artifacts;
    std::string error;
    double llm_s = 0;
    double eval_s = 0;
    double created_at = 0;  // unix seconds
    int64_t children = 0;
};

struct Migration {
    int64_t after_children = 0;  // evaluated children when it happened
    int from_island = 0;
    int to_island = 0;
    int64_t program_id = 0;
    bool placed = false;  // won (or found empty) its cell on the target island
};

class ProgramDb {
  public:
    // Opens or creates RUN/programs.sqlite's schema at `path`.
    ProgramDb(const std::string& path, EvolveOptions options);

    const EvolveOptions& options() const { return options_; }
    SqliteDb& db() { return db_; }

    // Key/value state (options, stop reason).
    std::string meta(const std::string& key, const std::string& fallback = "");
    void set_meta(const std::string& key, const std::string& value);

    // Inserts a row (any status) and returns its id. Increments the parent's child count.
    int64_t insert(Program& p);
    // Records an evaluated (or failed) pending program and, if evaluated, places it on its
    // island's grid, then migrates when due: one transaction. Returns true if it was placed.
    bool finish(const Program& p);
    // The initial program, evaluated, placed on every island.
    void seed_islands(const Program& initial);

    Program get(int64_t id);
    std::vector<Program> all(const std::string& where = "1");  // ORDER BY id
    std::vector<Program> pending();
    int64_t count(const std::string& where);
    int64_t max_iteration();
    std::vector<int64_t> members(int island);                        // ids, best first
    std::vector<std::pair<std::string, int64_t>> cells(int island);  // cell -> id
    std::vector<Migration> migrations();
    int island_generation(int island);
    // Best evaluated program; id 0 when none.
    Program best();
    int64_t total_tokens();
    double total_cost();

    // Parent for a child on `island` (options.selection, or the archive with archive_ratio).
    Program select_parent(int island, Rng& rng);
    // Top and diverse (different-cell, random) members of `island` other than the parent.
    std::vector<Program> inspirations(int island, const Program& parent, Rng& rng);
    // Empty when `code` may be evaluated; else why it is a (near-)duplicate.
    std::string duplicate_reason(const std::string& code, int island);

    // Features of `p` (code_length, diversity, score, metrics) and its grid cell.
    void compute_features(Program& p);

  private:
    bool place(const Program& p, int island);
    void migrate(int64_t after_children);
    void write_row(SqliteStatement& st, const Program& p);
    Program read_row(SqliteStatement& st);

    SqliteDb db_;
    EvolveOptions options_;
};

}  // namespace crucible::evolve
