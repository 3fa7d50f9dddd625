// A scripted eval Generator for the harness tests: completions from a table, no model.
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "eval/harness.h"

namespace crucible::testutil {

// Completions from a table: sample j of item `id` is table[id][j % size]. Records what it was
// asked for; with `kill_after` >= 0 it throws after that many samples, as a killed process
// would stop.
class TableGenerator : public eval::Generator {
  public:
    std::map<std::string, std::vector<std::string>> table;
    int kill_after = -1;
    std::vector<std::pair<std::string, int>> asked;

    std::string name() const override { return "table"; }
    void generate(
        const std::vector<eval::EvalItem>& items, const std::vector<eval::SampleJob>& jobs,
        const eval::SamplingOptions&,
        const std::function<bool(const eval::SampleJob&, eval::GeneratedSample)>& done) override {
        for (const eval::SampleJob& j : jobs) {
            if (kill_after >= 0 && static_cast<int>(asked.size()) >= kill_after)
                throw std::runtime_error("killed");
            const std::string& id = items[j.item].id;
            asked.emplace_back(id, j.sample);
            eval::GeneratedSample g;
            g.prompt = items[j.item].prompt;
            const auto& row = table.at(id);
            g.completion = row[static_cast<size_t>(j.sample) % row.size()];
            g.completion_tokens = 3;
            g.finish_reason = "stop";
            if (!done(j, std::move(g))) return;
        }
    }
};

}  // namespace crucible::testutil
