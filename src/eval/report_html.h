// `crucible report`: one self-contained HTML page for one or more eval runs (inline SVG and
// CSS, no scripts, no external resources, so it opens offline): avg@K per run with its
// interval as error bars, a per-item heatmap (items x runs, colour = per-item mean), and the
// pass@k curves.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace crucible::eval {

// `results`: compute_results() of each run, in the order to show them.
std::string report_html(const std::vector<nlohmann::json>& results);

}  // namespace crucible::eval
