// `crucible rubric score`: score responses against their rubrics (programmatic criteria and an
// LLM judge over any OpenAI-compatible endpoint), write one result per item and a summary with
// intervals, per-tag scores, judge cost and (with --judge-b) the agreement of two judges.
// `crucible rubric generate`: write RaR-style rubrics for prompts with reference answers.
#include "reward/rubric.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/worker_pool.h"
#include "eval/rubric_metrics.h"
#include "reward/judge.h"
#include "reward/rubric_format.h"
#include "reward/rubric_generate.h"
#include "reward/rubric_scorer.h"

namespace crucible::cli {

using nlohmann::json;
using namespace crucible::reward;

namespace {

struct ScoreOptions {
    RubricScorerConfig scorer;
    std::string data, judge_b, out;
    double level = 0.95;
};

void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(path + ": cannot open for writing");
    out << text;
    out.flush();
    if (!out) throw Error(path + ": write failed");
}

int run_score(const ScoreOptions& o) {
    const std::vector<RubricItem> items = load_rubric_items(o.data);
    const auto scorer = make_rubric_scorer(o.scorer);
    std::fprintf(stderr, "rubric score: %zu items from %s\n", items.size(), o.data.c_str());
    const std::vector<RubricResult> results = scorer->score_batch(items);

    std::string lines;
    for (size_t i = 0; i < items.size(); ++i) {
        json j = results[i].to_json();
        j["id"] = items[i].id;
        lines += j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    }
    write_text(o.out, lines);

    const uint64_t seed = o.scorer.seed;
    const RubricReport report = summarize_rubric_scores(items, results, o.level, 1000, seed);
    json summary = report.to_json();
    summary["judge"] = scorer->judge_stats().to_json();
    if (!o.scorer.judge.empty()) summary["judge"]["endpoint"] = o.scorer.judge;
    if (!o.judge_b.empty()) {
        RubricScorerConfig config_b = o.scorer;
        config_b.judge = o.judge_b;
        const auto scorer_b = make_rubric_scorer(config_b);
        const std::vector<RubricResult> results_b = scorer_b->score_batch(items);
        summary["agreement"] = judge_agreement(items, results, results_b).to_json();
        summary["judge_b"] = scorer_b->judge_stats().to_json();
        summary["judge_b"]["endpoint"] = o.judge_b;
        summary["judge_b_overall"] =
            summarize_rubric_scores(items, results_b, o.level, 1000, seed).overall.to_json();
    }
    write_text(o.out + ".summary.json", summary.dump(2) + "\n");
    std::cout << summary.dump(2) << std::endl;
    return 0;
}

struct GenerateCliOptions {
    std::string data, judge, out;
    int min_criteria = 7, max_criteria = 20, max_attempts = 3, concurrency = 8, retries = 4;
    double temperature = 0, timeout_s = 300;
};

int run_generate(const GenerateCliOptions& o) {
    const std::vector<RubricItem> items = load_rubric_items(o.data, /*require_rubric=*/false);
    const JudgeEndpoint endpoint = parse_judge_endpoint(o.judge);
    ClientOptions client_options;
    client_options.base_url = endpoint.base_url;
    client_options.timeout_s = o.timeout_s;
    client_options.max_retries = o.retries;
    client_options.max_concurrency = o.concurrency;
    OpenAIClient client(client_options);
    GenerateOptions g;
    g.model = endpoint.model;
    g.min_criteria = o.min_criteria;
    g.max_criteria = o.max_criteria;
    g.max_attempts = o.max_attempts;
    g.temperature = o.temperature;
    if (g.min_criteria < 1 || g.max_criteria < g.min_criteria)
        throw Error("--min/--max: need 1 <= min <= max");
    for (const RubricItem& it : items)
        if (it.reference_answer.empty())
            std::fprintf(
                stderr, "warning: item '%s' has no reference answer (RaR grounds rubrics in one)\n",
                it.id.c_str());

    std::vector<GeneratedRubric> out(items.size());
    run_parallel(items.size(), static_cast<size_t>(std::max(1, o.concurrency)),
                 [&](size_t i) { out[i] = generate_rubric(client, items[i], g); });

    std::string lines;
    int ok = 0;
    for (size_t i = 0; i < items.size(); ++i) {
        json messages = json::array();
        for (const ChatMessage& m : items[i].messages)
            messages.push_back({{"role", m.role}, {"content", m.content}});
        json j{{"id", items[i].id},
               {"messages", messages},
               {"reference_answer", items[i].reference_answer}};
        if (out[i].ok) {
            j["rubric"] = rubric_to_rar_json(out[i].rubric);
            ++ok;
        } else {
            j["rubric_error"] = out[i].error;
            std::fprintf(stderr, "item '%s': %s\n", items[i].id.c_str(), out[i].error.c_str());
        }
        lines += j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    }
    write_text(o.out, lines);
    const ClientUsage u = client.usage();
    std::cout << json{{"items", items.size()},
                      {"generated", ok},
                      {"failed", static_cast<int>(items.size()) - ok},
                      {"requests", u.requests},
                      {"prompt_tokens", u.prompt_tokens},
                      {"completion_tokens", u.completion_tokens},
                      {"out", o.out}}
                     .dump(2)
              << std::endl;
    return ok == static_cast<int>(items.size()) ? 0 : 1;
}

}  // namespace

std::function<int()> add_rubric(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("rubric", "Score responses with rubrics; generate rubrics");
    cmd->require_subcommand(1);

    auto so = std::make_shared<ScoreOptions>();
    so->scorer.seed = 1;  // the CLI's one default seed (docs/CLI.md)
    CLI::App* score = cmd->add_subcommand(
        "score", "Score each item's response against its rubric (docs/RUBRICS.md)");
    score->add_option("--data", so->data, "JSONL items: prompt/messages, response, rubric")
        ->required();
    score->add_option("--judge", so->scorer.judge,
                      "openai:BASE_URL#MODEL (needed when a rubric has judge criteria)");
    score->add_option("--judge-b", so->judge_b,
                      "a second judge: also score with it and report the agreement");
    score->add_option("--out", so->out, "per-item results (JSONL); summary at OUT.summary.json")
        ->required();
    score->add_option("--judge-mode,--mode", so->scorer.mode, "per-criterion | one-call")
        ->capture_default_str();
    score
        ->add_option("--aggregation", so->scorer.aggregation,
                     "healthbench | weighted_mean | implicit (an item's own 'aggregation' wins)")
        ->capture_default_str();
    score->add_option("--votes", so->scorer.votes, "judge samples per criterion, averaged")
        ->capture_default_str();
    score
        ->add_option("--judge-temperature,--temperature", so->scorer.temperature,
                     "judge temperature")
        ->capture_default_str();
    score->add_option("--judge-max-tokens,--max-tokens", so->scorer.max_tokens, "judge max_tokens")
        ->capture_default_str();
    score
        ->add_option("--judge-max-attempts,--max-attempts", so->scorer.max_attempts,
                     "requests per judgement when replies are malformed")
        ->capture_default_str();
    score->add_option("--judge-cache,--cache", so->scorer.cache,
                      "SQLite judge cache file (reused across runs)");
    score
        ->add_option("--judge-concurrency,--concurrency", so->scorer.concurrency,
                     "judge requests in flight")
        ->capture_default_str();
    score
        ->add_option("--judge-rps,--rps", so->scorer.rps,
                     "at most this many judge requests per second (0: no limit)")
        ->capture_default_str();
    score
        ->add_option("--judge-retries,--retries", so->scorer.retries,
                     "HTTP retries on 429/5xx/timeouts")
        ->capture_default_str();
    score->add_option("--judge-timeout-s,--timeout-s", so->scorer.timeout_s, "HTTP timeout")
        ->capture_default_str();
    score->add_option("--price-in", so->scorer.price_in, "USD per 1M judge prompt tokens")
        ->capture_default_str();
    score->add_option("--price-out", so->scorer.price_out, "USD per 1M judge completion tokens")
        ->capture_default_str();
    score->add_option("--level", so->level, "interval level")->capture_default_str();
    score->add_option("--seed", so->scorer.seed, "judge request seed, bootstrap seed")
        ->capture_default_str();

    auto go = std::make_shared<GenerateCliOptions>();
    CLI::App* generate = cmd->add_subcommand(
        "generate", "Write RaR rubrics (7-20 criteria; Essential/Important/Optional/Pitfall)");
    generate->add_option("--data", go->data, "JSONL: prompt/messages/question, reference_answer")
        ->required();
    generate->add_option("--judge", go->judge, "openai:BASE_URL#MODEL")->required();
    generate->add_option("--out", go->out, "JSONL with a RaR 'rubric' per item")->required();
    generate->add_option("--min", go->min_criteria, "fewest criteria")->capture_default_str();
    generate->add_option("--max", go->max_criteria, "most criteria")->capture_default_str();
    generate->add_option("--max-attempts", go->max_attempts, "requests per item on invalid output")
        ->capture_default_str();
    generate->add_option("--temperature", go->temperature, "generator temperature")
        ->capture_default_str();
    generate->add_option("--concurrency", go->concurrency, "requests in flight")
        ->capture_default_str();
    generate->add_option("--timeout-s", go->timeout_s, "HTTP timeout")->capture_default_str();

    return [cmd, score, so, go]() {
        if (cmd->got_subcommand(score)) return run_score(*so);
        return run_generate(*go);
    };
}

}  // namespace crucible::cli
