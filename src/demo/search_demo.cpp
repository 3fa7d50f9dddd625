#include "demo/search_demo.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <ostream>

#include "core/config.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/jsonl.h"
#include "core/rng.h"
#include "core/svg_chart.h"
#include "demo/search_kb.h"
#include "env/search_env.h"
#include "env/search_index.h"
#include "eval/dataset.h"
#include "eval/episode_generator.h"
#include "eval/harness.h"
#include "eval/results.h"
#include "eval/sample_store.h"
#include "eval/statistics.h"
#include "model/checkpoint.h"
#include "rl/evaluate.h"
#include "rl/presets.h"
#include "rl/rl_config.h"
#include "rl/rl_trainer.h"
#include "run/run_folder.h"
#include "train/sft_config.h"
#include "train/sft_trainer.h"

namespace crucible::rl {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The search environment's settings, the same for the SFT demonstrations' observations, RL
// and the held-out episodes: one passage per search (the default model copies an answer out
// of one short document within minutes; picking among several similar ones takes far longer:
// ../shared/notes/search-demo-feasibility.md).
constexpr int kTopK = 1;
constexpr int kMaxPassageChars = 200;
constexpr int kMaxTurns = 3;
constexpr int kMaxTokensPerTurn = 48;
// The episode's budget after the prompt (a search, its ~90-token observation and an answer
// take about 140) and the model's context (the prompt is about 25 tokens).
constexpr int kMaxNewTokens = 160;
constexpr int kContext = 256;

bool can_resume(const fs::path& dir) {
    return fs::exists(dir / "config.yaml") && latest_checkpoint(dir / "checkpoints") >= 0;
}

std::string pct(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * v);
    return buf;
}

// A share that may be null (nothing counted): "n/a".
std::string share(const json& j) {
    return j.is_number() ? pct(j.get<double>()) : "n/a";
}

std::string search_call(const std::string& query) {
    return "<search>" + query + "</search>";
}

// What the search environment shows after `<search>NAME</search>`: its own observation, so
// the demonstrations are token for token what RL's episodes will hold.
std::string observation_for(const std::shared_ptr<const SearchIndex>& index,
                            const std::string& name) {
    env::SearchEnvironment e({kMaxTurns, ToolSyntax::search_r1, kTopK, kMaxPassageChars}, index,
                             [](const std::string&) { return env::Verdict{}; }, {});
    env::Item item;
    item.prompt = "Q";
    e.reset(item);
    env::Turn turn;
    turn.text = search_call(name);
    const env::StepResult r = e.step(turn);
    if (!r.observation) throw Error("search demo: no observation for a search of " + name);
    return *r.observation;
}

// The data files under OUT/data: SFT demonstrations, RL questions, held-out questions.
struct DemoData {
    fs::path sft, rl, eval;
    std::vector<KbQuestion> held_out;
    int64_t sft_searching = 0, sft_direct = 0;
};

DemoData write_data(const SearchDemoOptions& o, const SearchKb& kb,
                    const std::shared_ptr<const SearchIndex>& index, const fs::path& dir) {
    fs::create_directories(dir);
    DemoData d{dir / "sft.jsonl", dir / "rl.jsonl", dir / "eval.jsonl", {}, 0, 0};
    Rng rng(Rng::mix(o.seed, 0x5F7D));
    std::string sft, rl, eval;
    for (size_t i = 0; i < kb.sft_end; i++) {
        for (const char* attribute : kKbAttributes) {
            const KbQuestion q = kb_question(kb.entities[i], attribute);
            const std::string answer = "<answer>" + q.answer + "</answer>";
            json pieces = json::array();
            if (rng.uniform() < o.search_share) {
                pieces.push_back(search_call(kb.entities[i].name));
                pieces.push_back(
                    {{"text", observation_for(index, kb.entities[i].name)}, {"train", false}});
                d.sft_searching++;
            } else {
                d.sft_direct++;
            }
            pieces.push_back(answer);
            sft += json{{"prompt", q.prompt}, {"completion", pieces}}.dump() + "\n";
        }
    }
    std::vector<KbQuestion> rl_questions;
    for (size_t i = kb.sft_end; i < kb.rl_end; i++) {
        for (const char* attribute : kKbAttributes)
            rl_questions.push_back(kb_question(kb.entities[i], attribute));
    }
    for (size_t i = rl_questions.size(); i > 1; i--)
        std::swap(rl_questions[i - 1], rl_questions[rng.below(i)]);
    for (const KbQuestion& q : rl_questions)
        rl += json{{"id", q.id}, {"prompt", q.prompt}, {"answer", q.answer}}.dump() + "\n";
    // One question per held-out entity, the attribute cycling.
    for (size_t i = kb.rl_end;
         i < kb.entities.size() && static_cast<int>(d.held_out.size()) < o.eval_questions; i++) {
        d.held_out.push_back(kb_question(kb.entities[i], kKbAttributes[(i - kb.rl_end) % 3]));
        const KbQuestion& q = d.held_out.back();
        eval += json{{"id", q.id}, {"prompt", q.prompt}, {"answer", q.answer}}.dump() + "\n";
    }
    write_file_durable(d.sft, sft);
    write_file_durable(d.rl, rl);
    write_file_durable(d.eval, eval);
    return d;
}

// Held-out episodes scored, with what the searches did.
struct Scored {
    eval::Estimate avg;  // avg@K with the item-clustered SE
    eval::Interval ci;
    eval::Estimate pass_k;
    std::vector<double> per_item;
    eval::ScoreRows rows;
    int64_t episodes = 0, failures = 0;
    int64_t searched = 0;             // episodes with at least one search
    int64_t searches = 0;             // searches in all
    int64_t found = 0;                // searched episodes that retrieved the entity's document
    double correct_searched = 0.0;    // fully correct episodes among the searched ...
    double correct_unsearched = 0.0;  // ... and among the others (answers from memory)
    int64_t unsearched_scored = 0, searched_scored = 0;
    double mean_length = 0.0;

    json figures() const {
        // null (as JSON writes NaN) when nothing was counted
        const auto ratio = [](double a, double b) { return b > 0 ? json(a / b) : json(nullptr); };
        return {
            {"accuracy", avg.mean},
            {"se", avg.se},
            {"ci", {ci.lo, ci.hi}},
            {"pass_at_k", pass_k.mean},
            {"episodes", episodes},
            {"failures", failures},
            {"search_rate", ratio(static_cast<double>(searched), static_cast<double>(episodes))},
            {"searches_per_question",
             ratio(static_cast<double>(searches), static_cast<double>(episodes))},
            {"search_success", ratio(static_cast<double>(found), static_cast<double>(searched))},
            {"accuracy_when_searching",
             ratio(correct_searched, static_cast<double>(searched_scored))},
            {"accuracy_without_search",
             ratio(correct_unsearched, static_cast<double>(unsearched_scored))},
            {"episodes_without_search", episodes - searched},
            {"mean_length", mean_length}};
    }
};

// Scores the held-out questions with the eval harness (`crucible eval --env search` on
// `model_dir`): K episodes per question stored in `run_dir` (samples.sqlite, results.json),
// so `crucible compare` and `crucible report` read the numbers the demo prints. The search
// figures come from each sample's stored episode info.
Scored score(const fs::path& model_dir, const RlConfig& cfg, const fs::path& eval_data, int samples,
             uint64_t seed, const fs::path& run_dir, eval::RunData* run_out) {
    const eval::Dataset data = eval::load_dataset(eval_data.string(), "exact", "");
    if (!data.excluded.empty()) throw Error("search demo: " + data.excluded[0]);
    auto generator = eval::make_episode_generator(model_dir.string(), cfg.env, 64);
    eval::EvalOptions eo;
    eo.run_dir = run_dir.string();
    eo.k = samples;
    eo.sampling.temperature = 1.0;
    eo.sampling.max_tokens = kMaxNewTokens;
    eo.sampling.seed = seed;
    eo.sampling.chat = false;  // the demo's model is trained on raw prompts
    eo.model = model_dir.string();
    eo.data = eval_data.string();
    eo.env = "search";
    fs::remove_all(run_dir);  // a new model each time the demo runs: score it afresh
    eval::run_eval(data.items, *generator, eo);
    eval::RunData run = eval::load_run(run_dir.string());
    write_file_durable(run_dir / "results.json", eval::compute_results(run).dump(2) + "\n");

    Scored s;
    s.rows = run.scores;
    s.avg = eval::mean_accuracy(s.rows);
    s.ci = eval::normal_interval(s.avg.mean, s.avg.se);
    s.pass_k = eval::pass_at_k(s.rows, samples);
    s.per_item = eval::item_means(s.rows);
    double length = 0;
    for (const eval::SampleRecord& r : eval::SampleStore(run_dir.string()).samples()) {
        if (r.sample >= samples) continue;
        s.episodes++;
        length += static_cast<double>(r.completion_tokens);
        if (!r.error.empty()) s.failures++;
        const std::string entity = r.item_id.substr(0, r.item_id.find(':'));
        const json info = json::parse(r.info, nullptr, false);
        const json env = info.is_object() ? info.value("env", json::object()) : json::object();
        const json queries = env.value("queries", json::array());
        const json retrieved = env.value("retrieved", json::array());
        const bool scored = r.error.empty() && r.score.has_value();
        const double correct = scored ? *r.score : 0.0;
        if (queries.empty()) {
            if (scored) {
                s.unsearched_scored++;
                s.correct_unsearched += correct;
            }
            continue;
        }
        s.searched++;
        s.searches += static_cast<int64_t>(queries.size());
        if (std::find(retrieved.begin(), retrieved.end(), json(entity)) != retrieved.end())
            s.found++;
        if (scored) {
            s.searched_scored++;
            s.correct_searched += correct;
        }
    }
    s.mean_length = s.episodes > 0 ? length / static_cast<double>(s.episodes) : 0.0;
    if (run_out) *run_out = std::move(run);
    return s;
}

void log_scored(std::ostream& log, const Scored& s, int samples) {
    const json f = s.figures();
    log << "   accuracy " << pct(s.avg.mean) << " [" << pct(s.ci.lo) << ", " << pct(s.ci.hi)
        << "], pass@" << samples << " " << pct(s.pass_k.mean) << "; searched in "
        << share(f["search_rate"]) << " of episodes, the right document in "
        << share(f["search_success"]) << " of those\n";
}

void write_report(const fs::path& out, const json& results, const fs::path& sft_metrics,
                  const fs::path& rl_metrics) {
    ChartSeries sft_loss{"SFT loss", {}, {}};
    for_each_jsonl_log_record(sft_metrics.string(), [&](const JsonlLine&, const json& m) {
        if (!m.contains("loss")) return;
        sft_loss.x.push_back(m.value("step", 0.0));
        sft_loss.y.push_back(m.value("loss", NAN));
    });
    ChartSeries reward{"train reward (mean)", {}, {}}, acc{"held-out accuracy during RL", {}, {}};
    ChartSeries calls{"searches per episode (train)", {}, {}}, len{"episode length", {}, {}};
    ChartSeries loss{"RL loss", {}, {}}, grad{"grad norm", {}, {}};
    for_each_jsonl_log_record(rl_metrics.string(), [&](const JsonlLine&, const json& m) {
        const double step = m.value("step", 0.0);
        const auto add = [&](ChartSeries& s, const char* key) {
            s.x.push_back(step);
            s.y.push_back(m.contains(key) && m[key].is_number() ? m[key].get<double>() : NAN);
        };
        add(reward, "reward_mean");
        add(calls, "env/tool_calls_mean");
        add(len, "response_length_mean");
        add(loss, "loss");
        add(grad, "grad_norm");
        if (m.contains("eval_accuracy")) add(acc, "eval_accuracy");
    });
    const json& b = results["figures_before"];
    const json& a = results["figures_after"];
    const auto row = [&](const std::string& name, const char* key) {
        return "<tr><td>" + html_escape(name) + "</td><td>" + share(b[key]) + "</td><td>" +
               share(a[key]) + "</td></tr>\n";
    };
    const auto interval = [](const json& j) {
        std::string text = "[";
        text += pct(j[0].get<double>());
        text += ", ";
        text += pct(j[1].get<double>());
        return text + "]";
    };
    char searches[96];
    std::snprintf(searches, sizeof searches,
                  "<tr><td>searches per question</td><td>%.2f</td>"
                  "<td>%.2f</td></tr>\n",
                  b["searches_per_question"].get<double>(),
                  a["searches_per_question"].get<double>());
    std::string html =
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Crucible demo: "
        "search</title>\n"
        "<style>body{font-family:sans-serif;max-width:1200px;margin:1em auto}table{border-"
        "collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
        "</style></head><body>\n<h1>Crucible demo: RL teaches a model to search</h1>\n";
    html += "<p>" + std::to_string(results["problems"].get<int>()) +
            " held-out questions about entities no training saw, " +
            std::to_string(results["samples"].get<int>()) +
            " episodes each at temperature 1; intervals are 95%, standard errors clustered by "
            "question; the p-value is a paired t-test over questions. A closed-book guess is "
            "right " +
            pct(results["chance"].get<double>()) + " of the time.</p>\n<table>\n" +
            "<tr><th></th><th>before RL</th><th>after RL</th></tr>\n";
    html += "<tr><td>accuracy (avg@K)</td><td>" + pct(results["before"]) + "</td><td>" +
            pct(results["after"]) + "</td></tr>\n";
    html += "<tr><td>95% interval</td><td>" + interval(results["ci_before"]) + "</td><td>" +
            interval(results["ci_after"]) + "</td></tr>\n";
    html += row("pass@K", "pass_at_k");
    html += row("episodes that search", "search_rate");
    html += searches;
    html += row("right document retrieved (of searching episodes)", "search_success");
    html += row("accuracy when searching", "accuracy_when_searching");
    html += row("accuracy without a search (closed book)", "accuracy_without_search");
    html += "</table>\n<p>Difference " + pct(results["difference"]) +
            ", paired p = " + html_escape(std::to_string(results["p_value"].get<double>())) +
            "; the smallest difference this setup detects (80% power, alpha 0.05): " +
            pct(results["minimum_detectable_effect"]) + ".</p>\n";
    html += svg_line_chart("SFT loss", {sft_loss}, "SFT step", "loss");
    html += svg_line_chart("Reward during RL", {reward}, "RL step", "reward");
    html += svg_line_chart("Held-out accuracy during RL", {acc}, "RL step", "accuracy");
    html += svg_line_chart("Searches per episode", {calls}, "RL step", "searches");
    html += svg_line_chart("Episode length (model and tool tokens)", {len}, "RL step", "tokens");
    html += svg_line_chart("RL loss", {loss}, "RL step", "loss");
    html += svg_line_chart("Gradient norm", {grad}, "RL step", "norm");
    html += "\n</body></html>\n";
    write_file_durable(out, html);
}

}  // namespace

json run_search_demo(const SearchDemoOptions& o, std::ostream& log) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto elapsed = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    if (o.eval_questions < 1) throw Error("search demo: --questions must be >= 1");
    if (o.eval_samples < 1) throw Error("search demo: --samples must be >= 1");
    if (!(o.search_share >= 0.0 && o.search_share <= 1.0))
        throw Error("search demo: --search-share must be in [0, 1]");
    const fs::path out(o.out_dir);
    fs::create_directories(out);

    // 0. The knowledge base, its index and the data (the same from the same seed).
    const SearchKb kb = make_search_kb(o.entities, o.seed);
    const fs::path index_dir = out / "kb" / "index";
    if (!fs::exists(index_dir)) {
        fs::create_directories(out / "kb");
        std::string docs;
        for (const KbEntity& e : kb.entities) docs += kb_document_jsonl(e);
        write_file_durable(out / "kb" / "docs.jsonl", docs);
        build_search_index(out / "kb" / "docs.jsonl", index_dir);
    }
    const auto index = std::make_shared<const SearchIndex>(SearchIndex::open(index_dir));
    const DemoData data = write_data(o, kb, index, out / "data");
    log << "== 0/4 knowledge base: " << kb.entities.size() << " entities (" << kb.sft_end
        << " for SFT, " << kb.rl_end - kb.sft_end << " for RL, " << kb.entities.size() - kb.rl_end
        << " held out); " << data.sft_searching << " of " << data.sft_searching + data.sft_direct
        << " SFT demonstrations search\n";

    // 1. SFT on the demonstrations.
    log << "== 1/4 SFT: the default model on the demonstrations (" << o.sft_steps << " steps)\n";
    Config sft(kSftConfigDefaults);
    sft.set("run.dir=" + out.string());
    sft.set("run.name=sft");
    sft.set("seed=" + std::to_string(o.seed));
    sft.set("model.arch.max_position_embeddings=" + std::to_string(kContext));
    sft.set("data.train=" + data.sft.string());
    sft.set("data.eval=\"\"");
    sft.set("data.max_seq_len=" + std::to_string(kContext));
    sft.set("train.steps=" + std::to_string(o.sft_steps));
    sft.set("train.batch_size=32");
    sft.set("train.checkpoint_every=" + std::to_string(std::max<int64_t>(o.sft_steps / 4, 1)));
    sft.set("train.eval_every=0");
    sft.set("train.eval_generate=0");
    sft.set("train.log_every=50");
    for (const std::string& s : o.sft_overrides) sft.set(s);
    fs::path sft_final;
    {
        SftTrainer trainer(sft, can_resume(out / "sft"), log);
        trainer.run();
        sft_final = trainer.checkpoint_dir(trainer.step());
    }
    const double t_sft = elapsed();

    // 2. The RL config: the DAPO preset in the search environment.
    Config rl(kRlConfigDefaults);
    rl.merge_text(rl_preset("dapo"), "preset dapo");
    rl.set("run.dir=" + out.string());
    rl.set("run.name=rl");
    rl.set("seed=" + std::to_string(o.seed));
    rl.set("model.path=" + sft_final.string());
    rl.set("task.name=jsonl");
    rl.set("task.data=" + data.rl.string());
    rl.set("task.eval_data=" + data.eval.string());
    rl.set("task.verifier=exact");
    rl.set("env.name=search");
    rl.set("env.index=" + index_dir.string());
    rl.set("env.top_k=" + std::to_string(kTopK));
    rl.set("env.max_passage_chars=" + std::to_string(kMaxPassageChars));
    rl.set("env.max_turns=" + std::to_string(kMaxTurns));
    rl.set("env.max_tokens_per_turn=" + std::to_string(kMaxTokensPerTurn));
    rl.set("rollout.max_new_tokens=" + std::to_string(kMaxNewTokens));
    rl.set("algorithm.overlong_cache=16");
    rl.set("train.steps=" + std::to_string(o.rl_steps));
    rl.set("train.eval_every=" + std::to_string(std::max<int64_t>(o.rl_steps / 4, 1)));
    rl.set("train.eval_problems=" + std::to_string(std::min(o.eval_questions, 100)));
    rl.set("train.checkpoint_every=" + std::to_string(std::max<int64_t>(o.rl_steps / 4, 1)));
    for (const std::string& s : o.rl_overrides) rl.set(s);
    const RlConfig cfg = read_rl_config(rl);
    const uint64_t eval_seed = Rng::mix(o.seed, 0x5EA2);
    const TextTokenizer tok = load_text_tokenizer(sft_final);
    Task task = load_task(cfg.task, cfg.seed, tok);
    limit_verdict_time(task, cfg.rewards.verifier_timeout_s, "rewards.verifier_timeout_s");

    log << "== 2/4 scoring " << task.eval.size() << " held-out questions x " << o.eval_samples
        << " episodes before RL\n";
    eval::RunData before_run, after_run;
    const Scored before = score(sft_final, cfg, data.eval, o.eval_samples, eval_seed,
                                out / "eval-before", &before_run);
    log_scored(log, before, o.eval_samples);
    const double t_before = elapsed();

    log << "== 3/4 RL: GRPO with the DAPO preset in the search environment (" << o.rl_steps
        << " steps)\n";
    {
        RlTrainer trainer(rl, can_resume(out / "rl"), log);
        trainer.run();
    }
    log << "== 4/4 scoring the same questions after RL\n";
    const Scored after = score(resolve_model_dir(out / "rl"), cfg, data.eval, o.eval_samples,
                               eval_seed, out / "eval-after", &after_run);
    log_scored(log, after, o.eval_samples);

    // The comparison `crucible compare eval-before eval-after` prints.
    const json cmp_json = eval::compare_runs(after_run, before_run, eval::CompareOptions{});
    const auto num = [](const json& j) { return j.is_number() ? j.get<double>() : NAN; };
    struct {
        double diff, p_value_t;
        eval::Interval interval;
    } cmp{num(cmp_json["diff"]),
          num(cmp_json["p_value_t"]),
          {num(cmp_json["ci"][0]), num(cmp_json["ci"][1])}};
    const eval::PowerInputs power = eval::estimate_power_inputs(after.rows, before.rows);
    const double mde =
        eval::minimum_detectable_effect(power, static_cast<double>(after.per_item.size()));
    const double seconds = elapsed();
    const json fb = before.figures(), fa = after.figures();
    json results = {
        {"task", "search (synthetic knowledge base)"},
        {"entities", kb.entities.size()},
        {"problems", static_cast<int>(task.eval.size())},
        {"samples", o.eval_samples},
        {"before", before.avg.mean},
        {"after", after.avg.mean},
        {"se_before", before.avg.se},
        {"se_after", after.avg.se},
        {"ci_before", {before.ci.lo, before.ci.hi}},
        {"ci_after", {after.ci.lo, after.ci.hi}},
        {"difference", cmp.diff},
        {"ci_difference", {cmp.interval.lo, cmp.interval.hi}},
        {"p_value", cmp.p_value_t},
        {"minimum_detectable_effect", mde},
        {"pass_at_k_before", before.pass_k.mean},
        {"pass_at_k_after", after.pass_k.mean},
        // Closed book: the SFT model's answers in the held-out episodes where it did not
        // search; chance: a uniform guess of each asked attribute.
        {"closed_book", fb["accuracy_without_search"]},
        {"closed_book_episodes", fb["episodes_without_search"]},
        {"chance", kb_chance(data.held_out)},
        {"search_rate_before", fb["search_rate"]},
        {"search_rate_after", fa["search_rate"]},
        {"searches_per_question_before", fb["searches_per_question"]},
        {"searches_per_question_after", fa["searches_per_question"]},
        {"search_success_before", fb["search_success"]},
        {"search_success_after", fa["search_success"]},
        {"figures_before", fb},
        {"figures_after", fa},
        {"sft_demonstrations", data.sft_searching + data.sft_direct},
        {"sft_demonstrations_searching", data.sft_searching},
        {"sft_steps", o.sft_steps},
        {"rl_steps", o.rl_steps},
        {"seed", o.seed},
        {"seconds", seconds},
        {"seconds_sft", t_sft},
        {"seconds_eval_before", t_before - t_sft},
        {"seconds_rl_and_eval_after", seconds - t_before},
    };
    write_file_durable(out / "results.json", results.dump(2) + "\n");
    write_report(out / "report.html", results, out / "sft" / "metrics.jsonl",
                 out / "rl" / "metrics.jsonl");
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "\nheld-out accuracy (%d questions x %d episodes): before RL %s [%s, %s] -> "
                  "after RL %s [%s, %s]\ndifference %+.1f points, paired t-test p = %.2g; "
                  "episodes that search %s -> %s; closed book %s (chance %s)\n",
                  static_cast<int>(task.eval.size()), o.eval_samples, pct(before.avg.mean).c_str(),
                  pct(before.ci.lo).c_str(), pct(before.ci.hi).c_str(), pct(after.avg.mean).c_str(),
                  pct(after.ci.lo).c_str(), pct(after.ci.hi).c_str(), 100.0 * cmp.diff,
                  cmp.p_value_t, share(fb["search_rate"]).c_str(), share(fa["search_rate"]).c_str(),
                  share(fb["accuracy_without_search"]).c_str(),
                  pct(kb_chance(data.held_out)).c_str());
    log << buf << "wrote " << (out / "results.json").string() << " and "
        << (out / "report.html").string() << " in " << format_duration(seconds) << "\n";
    return results;
}

}  // namespace crucible::rl
