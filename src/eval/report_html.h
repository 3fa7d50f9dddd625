// `crucible report`: one self-contained HTML page for one or more eval runs (inline SVG and
// CSS, no scripts, no external resources, so it opens offline): avg@K per run with its
// interval as error bars, a per-item heatmap (items x runs, colour = per-item mean), and the
// pass@k curves.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace crucible::eval {

// `results`: compute_results() of each run, in the order to show them. Runs are named by their
// folders. `comparisons` (optional): compare_runs(run i + 1, run 0) for each later run, shown
// as a table. Proportions' normal intervals are clipped to [0, 1].
std::string report_html(const std::vector<nlohmann::json>& results,
                        const std::vector<nlohmann::json>& comparisons = {});

}  // namespace crucible::eval
