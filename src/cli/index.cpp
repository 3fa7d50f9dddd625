// `crucible index build --docs docs.jsonl --out DIR [--force]`: a BM25 search index (the
// search tool's backend, src/env/search_index); `crucible index search DIR "query" [-k 3]
// [--max-chars N]`: its top-k passages, one JSON line each.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "env/search_index.h"

namespace crucible::cli {

using nlohmann::json;

std::function<int()> add_index(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("index", "Build and query local BM25 search indexes");
    cmd->require_subcommand(1);
    struct Options {
        std::string docs;
        std::string out;
        bool force = false;
        std::string dir;
        std::string query;
        int k = 3;
        long max_chars = -1;
    };
    auto opt = std::make_shared<Options>();
    CLI::App* build = cmd->add_subcommand(
        "build", "Index a JSONL file of {\"id\", \"title\", \"text\"} documents into a folder");
    build->add_option("--docs", opt->docs, "the documents, one JSON object per line")->required();
    build->add_option("--out", opt->out, "the index folder to create")->required();
    build->add_flag("--force", opt->force, "replace an existing index at --out");
    CLI::App* search = cmd->add_subcommand(
        "search", "Print the top-k passages for a query, one JSON line each, best first");
    search->add_option("dir", opt->dir, "the index folder")->required();
    search
        ->add_option("query", opt->query,
                     "the query, plain words (never search syntax: quotes, AND, * are text)")
        ->required();
    search->add_option("-k", opt->k, "passages to return")
        ->check(CLI::Range(1, kSearchMaxK))
        ->capture_default_str();
    search
        ->add_option("--max-chars", opt->max_chars,
                     "cut each passage's text to this many characters (default: whole)")
        ->check(CLI::NonNegativeNumber);
    return [opt, build]() {
        if (build->parsed()) {
            const auto start = std::chrono::steady_clock::now();
            const SearchBuildStats stats = build_search_index(opt->docs, opt->out, opt->force);
            const double seconds =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            std::cout << json{{"index", opt->out},
                              {"documents", stats.documents},
                              {"seconds", seconds}}
                             .dump(-1, ' ', false, json::error_handler_t::replace)
                      << std::endl;
            return 0;
        }
        const SearchIndex index = SearchIndex::open(opt->dir);
        const size_t cap = opt->max_chars < 0 ? kSearchNoCap : static_cast<size_t>(opt->max_chars);
        int rank = 0;
        for (const SearchHit& hit : index.search(opt->query, opt->k, cap)) {
            std::cout << json{{"rank", ++rank},
                              {"id", hit.id},
                              {"title", hit.title},
                              {"text", hit.text},
                              {"truncated", hit.truncated},
                              {"score", hit.score}}
                             .dump(-1, ' ', false, json::error_handler_t::replace)
                      << '\n';
        }
        std::cout.flush();
        return 0;
    };
}

}  // namespace crucible::cli
