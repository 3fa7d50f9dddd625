#include "env/search_env.h"

#include "core/error.h"

namespace crucible::env {

SearchEnvironment::SearchEnvironment(SearchEnvOptions options,
                                     std::shared_ptr<const SearchIndex> index, VerdictFn verdict,
                                     std::vector<std::string> task_stop_strings)
    : ToolEnvironment(
          ToolEnvOptions{options.max_turns, options.syntax, ToolEnvOptions::ScoreOn::answer},
          {"search"}, std::move(verdict), std::move(task_stop_strings)),
      options_(options),
      index_(std::move(index)) {
    if (!index_) throw Error("search environment: no index");
    if (options_.top_k < 1 || options_.top_k > kSearchMaxK)
        throw Error("search environment: top_k must be in [1, " + std::to_string(kSearchMaxK) +
                    "]");
}

void SearchEnvironment::on_reset(const Item&) {
    retrieved_.clear();
    queries_.clear();
}

ToolOutput SearchEnvironment::run_tool(const ToolCall& call, nlohmann::json& info) {
    const auto it = call.arguments.find("query");
    if (it == call.arguments.end()) return {"", "missing \"query\""};
    if (!it->is_string()) return {"", "\"query\" must be a string"};
    const std::string query = it->get<std::string>();
    if (query.find_first_not_of(" \t\r\n") == std::string::npos) return {"", "empty query"};
    const std::vector<SearchHit> hits = index_->search(query, options_.top_k, options_.max_chars);
    queries_.push_back(query);
    nlohmann::json ids = nlohmann::json::array();
    for (const SearchHit& h : hits) {
        retrieved_.push_back(h.id);
        ids.push_back(h.id);
    }
    info["query"] = query;
    info["hits"] = std::move(ids);
    if (hits.empty()) return {"no results", std::nullopt};
    std::string content = format_search_hits(hits);
    if (!content.empty() && content.back() == '\n') content.pop_back();
    return {std::move(content), std::nullopt};
}

}  // namespace crucible::env
