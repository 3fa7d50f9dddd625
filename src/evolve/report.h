// Outputs of an evolve run read back from its database: a self-contained offline HTML page
// (score over time, the lineage tree, island/grid occupancy, the best programs) and CSV/JSON
// exports of every program.
#pragma once

#include <filesystem>
#include <string>

namespace crucible::evolve {

// The HTML page for the run in `run_dir` (no scripts, no network: inline SVG and tables).
std::string render_report(const std::filesystem::path& run_dir);

// One row per program; CSV leaves out code, prompt and reply (the JSON export has them).
std::string export_csv(const std::filesystem::path& run_dir);
std::string export_json(const std::filesystem::path& run_dir);

}  // namespace crucible::evolve
