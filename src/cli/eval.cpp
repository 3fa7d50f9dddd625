// `crucible eval`, `verify`, `compare` and `report`: the eval harness from the command line
// (docs/EVALUATION.md).
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "cli/commands.h"
#include "core/config.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/jsonl.h"
#include "dist/world.h"
#include "eval/dataset.h"
#include "eval/episode_generator.h"
#include "eval/harness.h"
#include "eval/local_generator.h"
#include "eval/prompt_mode.h"
#include "eval/report_html.h"
#include "eval/results.h"
#include "eval/sample_store.h"
#include "reward/rubric_scorer.h"
#include "reward/verify/verifiers.h"
#include "rl/rl_config.h"
#include "run/run_folder.h"
#include "run/run_report.h"

namespace crucible::cli {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// "12:34" or "1:02:03".
std::string clock_text(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "--:--";
    const long s = std::lround(seconds);
    char buf[32];
    if (s >= 3600) {
        std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    } else {
        std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
    }
    return buf;
}

// A field of a verify line as text: a string, or a number as JSON writes it.
std::string text_field(const json& j, const char* key, const std::string& where) {
    if (!j.contains(key)) throw Error(where + ": needs field '" + key + "'");
    const json& v = j[key];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number()) return v.dump();
    throw Error(where + ": field '" + key + "' must be a string or a number");
}

// Why the rubric items cannot be scored without a judge ("" when they can).
std::string missing_judge(const std::vector<eval::EvalItem>& items,
                          const std::string& aggregation) {
    for (const eval::EvalItem& it : items) {
        if (!it.is_rubric()) continue;
        const reward::Rubric& r = it.rubric->rubric;
        if (r.aggregation.value_or(reward::parse_aggregation(aggregation)) ==
            reward::Aggregation::implicit)
            return "item '" + it.id + "' uses implicit aggregation (one judge call)";
        for (const reward::Criterion& c : r.criteria)
            if (!c.is_programmatic())
                return "item '" + it.id + "' criterion '" + c.id + "' is judged by an LLM";
    }
    return "";
}

}  // namespace

std::function<int()> add_eval(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand(
        "eval", "Score a model on a JSONL dataset with K samples per item (resumable)");
    cmd->option_defaults()->always_capture_default();
    struct Options {
        std::string model, data, out, verifier = "math", cluster_field = "cluster", chat_format;
        int n = 1, max_tokens = 1024, concurrency = 8, batch = 64, max_batch_tokens = 512,
            bootstrap = 0;
        double temperature = 1.0, top_p = 1.0, verifier_timeout_s = 10.0;
        uint64_t seed = 1, bootstrap_seed = 1;
        bool raw = false, chat = false, strip_think = false;
        reward::RubricScorerConfig judge;  // rubric items: the flags of `crucible rubric score`
        std::string judge_b, judge_cache;
        std::string env;                    // environment episodes instead of completions
        std::vector<std::string> env_sets;  // env.* keys of the RL config, without "env."
    };
    auto o = std::make_shared<Options>();
    cmd->add_option("--model", o->model,
                    "model folder, or an endpoint openai:BASE_URL#MODEL (e.g. "
                    "openai:http://127.0.0.1:8000/v1#qwen)")
        ->required();
    cmd->add_option("--data", o->data,
                    "JSONL items {id, prompt | messages, answer | gold, verifier?, cluster?}, "
                    "or with a rubric (docs/RUBRICS.md) instead of an answer")
        ->required()
        ->check(CLI::ExistingFile);
    cmd->add_option("--out", o->out, "run directory (samples.sqlite, results.json)")->required();
    cmd->add_option("--n", o->n, "samples per item (K); a re-run with a larger K adds samples");
    cmd->add_option("--temperature", o->temperature, "0 is greedy");
    cmd->add_option("--top-p", o->top_p);
    cmd->add_option("--max-tokens", o->max_tokens, "completion tokens per sample");
    cmd->add_option("--seed", o->seed, "sample j of item i uses a seed derived from (seed, id, j)");
    auto* chat =
        cmd->add_flag("--chat", o->chat,
                      "send raw prompts through the chat template (default for endpoints and for "
                      "models trained on chat data or with a chat template)");
    cmd->add_flag("--raw", o->raw,
                  "send raw prompts as they are (default for models trained on raw prompts or "
                  "without a chat template)")
        ->excludes(chat);
    cmd->add_flag("--strip-think", o->strip_think,
                  "score only what follows </think> (an unclosed <think> scores 0)");
    cmd->add_option("--verifier", o->verifier,
                    "default verifier: math, exact, regex, numeric, mc (choice)");
    cmd->add_option("--cluster-field", o->cluster_field,
                    "item field naming its cluster, for clustered standard errors");
    cmd->add_option("--concurrency", o->concurrency, "requests in flight (endpoints)");
    cmd->add_option("--batch", o->batch, "samples per engine call (local models)");
    cmd->add_option("--max-batch-tokens", o->max_batch_tokens, "rows per forward pass (local)");
    cmd->add_option("--chat-format", o->chat_format, "chatml, qwen2, qwen2.5 or llama3 (local)");
    cmd->add_option("--env", o->env,
                    "run each sample as an episode of this environment (calculator, search; "
                    "docs/ENVIRONMENTS.md) on a local --model; the item's verifier scores what "
                    "the environment's verdict reads (search: the <answer> content)");
    cmd->add_option("--env-set", o->env_sets,
                    "an env.* key of the RL config without its prefix, e.g. index=DIR, top_k=1, "
                    "max_turns=3, syntax=hermes (repeatable)");
    cmd->add_option("--verifier-timeout-s", o->verifier_timeout_s,
                    "a built-in verifier's verdict on one sample past this many seconds fails "
                    "the sample (reward_timeout); 0: no limit")
        ->check(CLI::Range(0.0, 3600.0));
    cmd->add_option("--bootstrap", o->bootstrap, "bootstrap resamples for avg@K (0: none)");
    cmd->add_option("--bootstrap-seed", o->bootstrap_seed);
    // Rubric items (docs/RUBRICS.md): the judge flags of `crucible rubric score`, prefixed with
    // --judge- where the name would clash with a sampling flag of eval.
    cmd->add_option("--judge", o->judge.judge,
                    "rubric items: the LLM judge, openai:BASE_URL#MODEL (needed when a rubric "
                    "has judge criteria)");
    cmd->add_option("--judge-b", o->judge_b,
                    "rubric items: a second judge; scores the same samples and reports the "
                    "agreement (percent, Cohen's kappa)");
    cmd->add_option("--judge-mode", o->judge.mode, "per-criterion | one-call");
    cmd->add_option("--aggregation", o->judge.aggregation,
                    "healthbench | weighted_mean | implicit (an item's own 'aggregation' wins)");
    cmd->add_option("--votes", o->judge.votes, "judge samples per criterion, averaged");
    cmd->add_option("--judge-temperature", o->judge.temperature, "judge temperature");
    cmd->add_option("--judge-max-tokens", o->judge.max_tokens, "judge max_tokens");
    cmd->add_option("--judge-max-attempts", o->judge.max_attempts,
                    "requests per judgement when replies are malformed");
    cmd->add_option("--judge-concurrency", o->judge.concurrency, "judge requests in flight");
    cmd->add_option("--judge-rps", o->judge.rps,
                    "at most this many judge requests per second (0: no limit)");
    cmd->add_option("--judge-retries", o->judge.retries, "judge HTTP retries on 429/5xx/timeouts");
    cmd->add_option("--judge-timeout-s", o->judge.timeout_s, "judge HTTP timeout");
    cmd->add_option("--judge-cache", o->judge_cache,
                    "SQLite judge cache (default RUN_DIR/judge_cache.sqlite; 'none': no cache)");
    cmd->add_option("--price-in", o->judge.price_in, "USD per 1M judge prompt tokens");
    cmd->add_option("--price-out", o->judge.price_out, "USD per 1M judge completion tokens");
    return [o]() {
        const bool endpoint = o->model.rfind("openai:", 0) == 0;
        if (!endpoint) {
            const fs::path resolved = resolve_model_dir(o->model);
            if (resolved != fs::path(o->model)) {
                std::fprintf(stderr, "eval: model %s is a training run: its latest checkpoint %s\n",
                             o->model.c_str(), resolved.string().c_str());
                o->model = resolved.string();
            }
        }
        // --out names an eval run: a new folder, an empty one, or an eval run to continue;
        // never a foreign folder (a training run's) to write into.
        {
            std::error_code ec;
            const fs::path out(o->out);
            if (fs::exists(out, ec) && !fs::exists(out / "samples.sqlite", ec)) {
                if (!fs::is_directory(out, ec))
                    throw Error("--out " + o->out + ": exists and is not a folder");
                if (!fs::is_empty(out, ec))
                    throw Error("--out " + o->out +
                                ": exists and is not an eval run (no samples.sqlite); choose a "
                                "new folder");
            }
        }
        // The prompt mode: asked for, or what the model was trained with.
        eval::PromptMode mode;
        if (o->raw) {
            mode = {false, "--raw"};
        } else if (o->chat) {
            mode = {true, "--chat"};
        } else if (endpoint) {
            mode = {true, "an endpoint is sent chat messages unless --raw"};
        } else {
            mode = eval::default_prompt_mode(o->model);
        }
        if (dist::is_root())
            std::fprintf(stderr, "eval: %s prompts (%s; %s to change)\n",
                         mode.chat ? "chat-template" : "raw", mode.why.c_str(),
                         mode.chat ? "--raw" : "--chat");
        eval::Dataset data = eval::load_dataset(o->data, o->verifier, o->cluster_field);
        for (const std::string& e : data.excluded)
            if (dist::is_root()) std::fprintf(stderr, "excluded: %s\n", e.c_str());
        if (data.items.empty()) throw Error(o->data + ": no usable item");
        std::unique_ptr<eval::Generator> gen;
        std::string env_setting;
        if (!o->env.empty()) {
            // Episodes are token-exact (rl/episodes.h): the engine in process, on a local folder.
            if (o->model.rfind("openai:", 0) == 0)
                throw Error("--env: episodes run on a local --model folder, not an endpoint");
            for (const eval::EvalItem& it : data.items)
                if (it.is_rubric())
                    throw Error("--env: item '" + it.id +
                                "' has a rubric; rubric items are not scored as episodes yet");
            if (!o->chat_format.empty())
                throw Error("--env: --chat-format is not used (the folder's own format is)");
            Config c(kRlConfigDefaults);
            c.set("env.name=" + o->env);
            env_setting = o->env;
            for (const std::string& kv : o->env_sets) {
                c.set("env." + kv);
                env_setting += " " + kv;
            }
            const rl::RlEnvConfig env = rl::read_rl_env_config(c);
            if (env.name == rl::EnvKind::single_turn)
                throw Error("--env single_turn: leave --env out for plain completions");
            if (env.name == rl::EnvKind::server)
                throw Error(
                    "--env server: an agent-driven environment trains only "
                    "(crucible train rl --env server); evaluate the agent itself");
            gen = eval::make_episode_generator(o->model, env, o->batch);
        } else if (!o->env_sets.empty()) {
            throw Error("--env-set needs --env");
        } else {
            gen = o->model.rfind("openai:", 0) == 0
                      ? eval::make_openai_generator(o->model, o->concurrency)
                      : eval::make_local_generator(o->model, o->batch, o->max_batch_tokens,
                                                   o->chat_format);
        }
        if (gen->context() > 0 && o->max_tokens >= gen->context()) {
            std::fprintf(stderr,
                         "eval: the endpoint's context is %d tokens: each sample's max_tokens is "
                         "capped at %d minus its prompt (--max-tokens %d)\n",
                         gen->context(), gen->context(), o->max_tokens);
        }
        eval::EvalOptions eo;
        eo.run_dir = o->out;
        eo.k = o->n;
        eo.sampling.temperature = o->temperature;
        eo.sampling.top_p = o->top_p;
        eo.sampling.max_tokens = o->max_tokens;
        eo.sampling.seed = o->seed;
        eo.sampling.chat = mode.chat;
        eo.strip_think = o->strip_think;
        eo.verifier_timeout_s = o->verifier_timeout_s;
        eo.model = o->model;
        eo.data = o->data;
        eo.env = env_setting;
        const auto t0 = std::chrono::steady_clock::now();
        const bool tty = isatty(STDERR_FILENO);
        double last_print = -1e9;
        eo.on_progress = [&](int64_t done, int64_t total) {
            const double s =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (done < total && !tty && s - last_print < 5.0) return;
            last_print = s;
            const double rate = done / std::max(s, 1e-9);
            const double eta = done > 0 ? (total - done) / rate : NAN;
            std::fprintf(
                stderr, "%seval: %lld/%lld samples | %.2f samples/s | elapsed %s | ETA %s%s",
                tty ? "\r" : "", (long long)done, (long long)total, rate, clock_text(s).c_str(),
                clock_text(eta).c_str(), (done == total || !tty) ? "\n" : "   ");
        };
        // Under mpirun rank 0 alone writes the run (eval/harness.h); the others generate.
        if (dist::is_root()) {
            eval::SampleStore store(o->out);
            store.set_setting("excluded", json(data.excluded).dump());
            store.set_setting("chat_reason", mode.why);
        }
        size_t n_rubric = 0;
        for (const eval::EvalItem& it : data.items) n_rubric += it.is_rubric() ? 1 : 0;
        std::unique_ptr<reward::RubricScorer> scorer, scorer_b;
        if (n_rubric > 0) {
            const std::string why = missing_judge(data.items, o->judge.aggregation);
            if (!why.empty() && o->judge.judge.empty())
                throw Error(o->data + ": " + why + ": pass --judge openai:BASE_URL#MODEL");
        }
        // Under mpirun rank 0 alone judges (the others send it their rubric samples unjudged).
        if (n_rubric > 0 && dist::is_root()) {
            reward::RubricScorerConfig config = o->judge;
            config.seed = o->seed;
            config.cache = o->judge_cache.empty()
                               ? (fs::path(o->out) / "judge_cache.sqlite").string()
                           : o->judge_cache == "none" ? std::string()
                                                      : o->judge_cache;
            scorer = reward::make_rubric_scorer(config);
            if (!o->judge_b.empty()) {
                reward::RubricScorerConfig config_b = config;
                config_b.judge = o->judge_b;
                scorer_b = reward::make_rubric_scorer(config_b);
            }
            eo.rubric_scorer = scorer.get();
            eo.rubric_scorer_b = scorer_b.get();
            eo.judge_b = o->judge_b;
            char buf[64];
            std::snprintf(buf, sizeof buf, "%.17g", config.temperature);
            // What decides a score; the endpoint's address may change between calls.
            eo.rubric_settings = {
                {"judge_model",
                 config.judge.empty() ? "" : reward::parse_judge_endpoint(config.judge).model},
                {"judge_mode", config.mode},
                {"aggregation", config.aggregation},
                {"votes", std::to_string(config.votes)},
                {"judge_temperature", buf},
                {"judge_max_tokens", std::to_string(config.max_tokens)}};
            eval::SampleStore(o->out).set_setting("judge", config.judge);
            std::fprintf(
                stderr, "eval: %zu rubric items, judge %s\n", n_rubric,
                config.judge.empty() ? "(none: programmatic criteria only)" : config.judge.c_str());
        } else if (n_rubric == 0 && (!o->judge.judge.empty() || !o->judge_b.empty())) {
            std::fprintf(stderr, "eval: no rubric items, so --judge/--judge-b are not used\n");
        }
        if (!dist::is_root()) eo.on_progress = nullptr;
        const eval::EvalSummary sum = eval::run_eval(data.items, *gen, eo);
        if (!dist::is_root()) return 0;
        std::fprintf(stderr, "eval: %lld generated (%lld failed), %lld already stored\n",
                     (long long)sum.generated, (long long)sum.failed, (long long)sum.skipped);
        if (sum.rejudged > 0)
            std::fprintf(stderr,
                         "eval: %lld stored samples whose judging had failed judged again "
                         "(not regenerated)\n",
                         (long long)sum.rejudged);
        if (sum.rubric_failed > 0)
            std::fprintf(
                stderr,
                "eval: %lld samples failed in rubric scoring (a re-run judges them again)\n",
                (long long)sum.rubric_failed);
        if (scorer_b)
            std::fprintf(stderr, "eval: second judge scored %lld samples (%lld failed)\n",
                         (long long)sum.judged_b, (long long)sum.judged_b_failed);
        eval::ResultsOptions ro;
        ro.bootstrap = o->bootstrap;
        ro.bootstrap_seed = o->bootstrap_seed;
        const json results = eval::compute_results(eval::load_run(o->out), ro);
        write_file_durable(fs::path(o->out) / "results.json", results.dump(2) + "\n");
        std::fputs(eval::results_table(results).c_str(), stdout);
        return 0;
    };
}

std::function<int()> add_verify(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand(
        "verify", "Check answers: JSONL lines {gold, pred, verifier?} get \"equal\": true|false");
    struct Options {
        std::string in, out, verifier = "math";
    };
    auto o = std::make_shared<Options>();
    cmd->add_option("--data,--jsonl", o->in,
                    "input JSONL of {gold, pred} (--jsonl: the old name, kept for one release)")
        ->required()
        ->check(CLI::ExistingFile);
    cmd->add_option("--out", o->out, "output JSONL (default: stdout)");
    cmd->add_option("--verifier", o->verifier, "for lines without one (default math)");
    return [o]() {
        std::string out_text;
        int n = 0, n_equal = 0;
        for_each_jsonl_line(o->in, "", [&](const JsonlLine& line) {
            const std::string where = line.where();
            json j = json::parse(line.text, nullptr, false);
            if (j.is_discarded() || !j.is_object()) throw Error(where + ": not a JSON object");
            const std::string gold = text_field(j, "gold", where);
            const std::string pred = text_field(j, "pred", where);
            std::string kind = o->verifier;
            if (j.contains("verifier")) {
                if (!j["verifier"].is_string())
                    throw Error(where + ": field 'verifier' must be a string");
                kind = j["verifier"].get<std::string>();
            }
            if (!eval::is_known_verifier(kind))
                throw Error(where + ": unknown verifier '" + kind +
                            "' (expected exact, regex, numeric, mc, choice or math)");
            bool equal = false;
            try {
                equal = eval::verify(kind, gold, pred);
            } catch (const Error& e) {
                throw Error(where + ": " + e.what());
            }
            j["equal"] = equal;
            ++n;
            n_equal += equal ? 1 : 0;
            out_text += j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
        });
        if (o->out.empty()) {
            std::fputs(out_text.c_str(), stdout);
        } else {
            write_file_durable(o->out, out_text);
        }
        std::fprintf(stderr, "verify: %d lines, %d equal\n", n, n_equal);
        return 0;
    };
}

namespace {

// Whether `diff` (A - B, a fraction) is within the seed-to-seed spread an experiment measured:
// its arms' seed standard deviations pooled (the root mean square over arms with two or more
// runs); two single runs then differ by about sqrt(2) times that from the seed alone.
json seed_spread_note(const std::string& dir, const json& diff) {
    const fs::path file = fs::path(dir) / "results.json";
    if (!fs::exists(file)) {
        throw Error("--seed-spread " + dir +
                    ": no results.json (an experiment folder: crucible "
                    "experiment run)");
    }
    json r;
    try {
        r = json::parse(read_file(file));
    } catch (const json::exception& e) {
        throw Error(file.string() + ": not valid JSON: " + e.what());
    }
    double sum = 0;
    int arms = 0, runs = 0;
    for (const json& a : r.value("arms", json::array())) {
        if (!a.contains("seed_sd") || !a["seed_sd"].is_number()) continue;
        sum += a["seed_sd"].get<double>() * a["seed_sd"].get<double>();
        arms++;
        runs += static_cast<int>(a.value("runs", json::array()).size());
    }
    if (arms == 0) {
        throw Error(file.string() +
                    ": no arm with two or more finished runs to measure the "
                    "seed-to-seed spread");
    }
    const double sd = std::sqrt(sum / arms), pair_sd = std::sqrt(2.0) * sd;
    char buf[512];
    const double d = diff.is_number() ? diff.get<double>() : NAN;
    const bool within = std::fabs(d) < 2 * pair_sd;
    std::snprintf(buf, sizeof buf,
                  "seed spread (%s: %d runs over %d arms): seed-to-seed SD %.2f pp, so two "
                  "single runs differ by about %.2f pp from the seed alone; A - B = %.2f pp is %s",
                  dir.c_str(), runs, arms, 100 * sd, 100 * pair_sd, 100 * d,
                  within ? "within twice that: another seed could reverse it (compare several "
                           "seeds per side, crucible experiment)"
                         : "beyond twice that");
    return {{"experiment", dir},
            {"seed_sd", sd},
            {"single_run_difference_sd", pair_sd},
            {"within_seed_spread", within},
            {"note", buf}};
}

}  // namespace

std::function<int()> add_compare(CLI::App& app) {
    CLI::App* cmd =
        app.add_subcommand("compare", "Paired comparison of two eval runs, with power analysis");
    cmd->option_defaults()->always_capture_default();
    struct Options {
        std::string a, b, json_out, seed_spread;
        double delta = 0.05;
        int permutations = 10000;
        uint64_t seed = 1;
    };
    auto o = std::make_shared<Options>();
    cmd->add_option("RUN_A", o->a, "eval run directory")->required()->check(CLI::ExistingDirectory);
    cmd->add_option("RUN_B", o->b, "eval run directory")->required()->check(CLI::ExistingDirectory);
    cmd->add_option("--delta", o->delta,
                    "difference (a fraction, 0.05 = 5 points) the power analysis sizes for");
    cmd->add_option("--permutations", o->permutations, "sign-flip resamples beyond 20 items");
    cmd->add_option("--seed", o->seed, "seed of the sign-flip resamples");
    cmd->add_option("--json", o->json_out, "also write the comparison as JSON");
    cmd->add_option("--seed-spread", o->seed_spread,
                    "an experiment folder (crucible experiment): say whether A - B is within "
                    "the seed-to-seed spread it measured")
        ->check(CLI::ExistingDirectory);
    return [o]() {
        if (!(o->delta > 0)) throw Error("--delta must be positive");
        eval::CompareOptions co;
        co.delta = o->delta;
        co.permutations = o->permutations;
        co.seed = o->seed;
        json c = eval::compare_runs(eval::load_run(o->a), eval::load_run(o->b), co);
        std::fputs(eval::comparison_text(c).c_str(), stdout);
        if (!o->seed_spread.empty()) {
            c["seed_spread"] = seed_spread_note(o->seed_spread, c.value("diff", json()));
            std::printf("%s\n", c["seed_spread"]["note"].get<std::string>().c_str());
        }
        if (!o->json_out.empty()) write_file_durable(o->json_out, c.dump(2) + "\n");
        return 0;
    };
}

std::function<int()> add_report(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand(
        "report", "One self-contained HTML page for eval runs, or for training runs (SFT/RL)");
    cmd->option_defaults()->always_capture_default();
    struct Options {
        std::vector<std::string> runs;
        std::string out = "report.html", tensorboard;
        double smooth = 0.0;
    };
    auto o = std::make_shared<Options>();
    cmd->add_option("RUN_DIR", o->runs,
                    "eval run folders (samples.sqlite) or training run folders (metrics.jsonl)")
        ->required()
        ->check(CLI::ExistingDirectory);
    cmd->add_option("--out", o->out, "HTML file to write");
    cmd->add_option("--smooth", o->smooth,
                    "training runs: TensorBoard's smoothing weight in [0, 1) (0: raw)");
    cmd->add_option("--tensorboard", o->tensorboard,
                    "training runs: also write their metrics as TensorBoard event files under "
                    "this folder (tensorboard --logdir DIR)");
    return [o]() {
        std::vector<std::string> eval_runs, training_runs;
        for (const std::string& r : o->runs) {
            const bool is_eval = fs::exists(fs::path(r) / "samples.sqlite");
            const bool is_training = is_training_run(r);
            if (!is_eval && !is_training)
                throw Error(r +
                            ": neither an eval run (samples.sqlite) nor a training run "
                            "(metrics.jsonl)");
            (is_eval ? eval_runs : training_runs).push_back(r);
        }
        if (!eval_runs.empty() && !training_runs.empty())
            throw Error("report: " + eval_runs[0] + " is an eval run and " + training_runs[0] +
                        " a training run; report them separately");
        if (!training_runs.empty()) {
            std::vector<TrainingRun> runs;
            for (const std::string& r : training_runs) runs.push_back(load_training_run(r));
            name_runs(runs);
            write_file_durable(o->out, training_report_html(runs, o->smooth));
            std::fprintf(stderr, "report: %s (%zu training runs)\n", o->out.c_str(), runs.size());
            if (!o->tensorboard.empty()) {
                for (const fs::path& f : write_tensorboard(runs, o->tensorboard))
                    std::fprintf(stderr, "report: %s\n", f.c_str());
            }
            return 0;
        }
        if (!o->tensorboard.empty() || o->smooth != 0.0)
            throw Error("--tensorboard and --smooth are for training runs");
        std::vector<json> results, comparisons;
        std::vector<eval::RunData> data;
        for (const std::string& r : o->runs) {
            data.push_back(eval::load_run(r));
            results.push_back(eval::compute_results(data.back()));
            // The first sample of up to 50 items, for the page's completions section.
            json shown = json::array();
            std::set<std::string> seen;
            for (const eval::SampleRecord& s : eval::SampleStore(r).samples()) {
                if (shown.size() >= 50 || seen.count(s.item_id)) continue;
                seen.insert(s.item_id);
                json x = {{"id", s.item_id},
                          {"sample", s.sample},
                          {"prompt", s.prompt.substr(0, 2000)},
                          {"completion", s.completion.substr(0, 4000)},
                          {"error", s.error}};
                if (s.score) x["score"] = *s.score;
                shown.push_back(std::move(x));
            }
            results.back()["shown_samples"] = std::move(shown);
        }
        // Each later run against the first, as crucible compare prints it (runs that share
        // no item are left out of the table).
        for (size_t i = 1; i < data.size(); i++) {
            try {
                comparisons.push_back(eval::compare_runs(data[i], data[0], {}));
            } catch (const Error& e) {
                comparisons.push_back({{"error", e.what()}});
            }
        }
        write_file_durable(o->out, eval::report_html(results, comparisons));
        std::fprintf(stderr, "report: %s (%zu runs)\n", o->out.c_str(), results.size());
        return 0;
    };
}

}  // namespace crucible::cli
