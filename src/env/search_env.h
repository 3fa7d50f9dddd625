// The `search` environment: a task's items answered over several turns with a search tool on
// a local BM25 index (env/search_index.h), in Search-R1's syntax or the Qwen/Hermes one:
//
//   search_r1:  model  ...<search>Raquoka</search>
//               env    \n\n<information>Doc 1(Title: Raquoka) Raquoka: city Thafe ...
//                      </information>\n\n
//               model  <answer>Thafe</answer>
//   hermes:     <tool_call>{"name": "search", "arguments": {"query": "Raquoka"}}</tool_call>
//               -> \n<tool_response>\nDoc 1(Title: ...) ...\n</tool_response>\n
//
// The tool returns the top-k passages (format_search_hits), each cut to max_chars characters,
// or "no results". A hermes call without a non-empty string "query" is malformed. score() is
// the task's verdict on the content of the last turn's <answer> (Search-R1's exact match).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "env/search_index.h"
#include "env/tool_env.h"

namespace crucible::env {

struct SearchEnvOptions {
    int max_turns = 4;
    ToolSyntax syntax = ToolSyntax::search_r1;
    int top_k = 3;           // passages per search, [1, kSearchMaxK]
    size_t max_chars = 500;  // characters per passage at most
};

class SearchEnvironment : public ToolEnvironment {
  public:
    SearchEnvironment(SearchEnvOptions options, std::shared_ptr<const SearchIndex> index,
                      VerdictFn verdict, std::vector<std::string> task_stop_strings);

    // The ids of the passages every search of this episode returned, in order.
    const std::vector<std::string>& retrieved() const { return retrieved_; }
    const std::vector<std::string>& queries() const { return queries_; }
    // {"queries": [...], "retrieved": [document ids]}.
    nlohmann::json summary() const override {
        return {{"queries", queries_}, {"retrieved", retrieved_}};
    }

  protected:
    ToolOutput run_tool(const ToolCall& call, nlohmann::json& info) override;
    void on_reset(const Item&) override;

  private:
    SearchEnvOptions options_;
    std::shared_ptr<const SearchIndex> index_;
    std::vector<std::string> retrieved_, queries_;
};

}  // namespace crucible::env
