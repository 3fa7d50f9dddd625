#include "evolve/controller.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/file_io.h"
#include "evolve/diff.h"
#include "evolve/evaluator.h"
#include "evolve/operators.h"

namespace crucible::evolve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The options that shape the stored search; a resume must not change them.
json structure_of(const EvolveOptions& o) {
    json f = json::array();
    for (const auto& d : o.features) f.push_back({d.name, d.bins, d.min, d.max});
    return {{"seed", o.seed},
            {"islands", o.islands},
            {"selection", o.selection},
            {"features", f},
            {"migration_interval", o.migration_interval},
            {"migration_rate", o.migration_rate},
            {"archive_size", o.archive_size}};
}

// Every option of the run, saved as RUN/options.json when it starts.
json options_json(const EvolveOptions& o) {
    json f = json::array(), l = json::array();
    for (const auto& d : o.features) {
        f.push_back({{"name", d.name}, {"bins", d.bins}, {"min", d.min}, {"max", d.max}});
    }
    for (const auto& e : o.llms) {
        l.push_back({{"base_url", e.base_url},
                     {"model", e.model},
                     {"weight", e.weight},
                     {"usd_per_mtok_in", e.usd_per_mtok_in},
                     {"usd_per_mtok_out", e.usd_per_mtok_out}});
    }
    return {{"iterations", o.iterations},
            {"workers", o.workers},
            {"seed", o.seed},
            {"islands", o.islands},
            {"migration_interval", o.migration_interval},
            {"migration_rate", o.migration_rate},
            {"selection", o.selection},
            {"weighted_lambda", o.weighted_lambda},
            {"funsearch_t0", o.funsearch_t0},
            {"funsearch_period", o.funsearch_period},
            {"power_law_alpha", o.power_law_alpha},
            {"archive_size", o.archive_size},
            {"archive_ratio", o.archive_ratio},
            {"num_top_inspirations", o.num_top_inspirations},
            {"num_diverse_inspirations", o.num_diverse_inspirations},
            {"features", f},
            {"similarity_threshold", o.similarity_threshold},
            {"mode", o.mode},
            {"offline_crossover_rate", o.offline_crossover_rate},
            {"offline_sigma", o.offline_sigma},
            {"offline_max_mutations", o.offline_max_mutations},
            {"diff_mode", o.diff_mode},
            {"full_rewrite_rate", o.full_rewrite_rate},
            {"llms", l},
            {"ucb", o.ucb},
            {"ucb_c", o.ucb_c},
            {"temperature", o.temperature},
            {"max_tokens", o.max_tokens},
            {"llm_timeout_s", o.llm_timeout_s},
            {"max_total_tokens", o.max_total_tokens},
            {"max_cost_usd", o.max_cost_usd}};
}

struct Done {
    bool evaluated = false;  // false: a proposal finished
    Program child;
    std::string error;  // proposal failure
    EvalOutcome outcome;
    size_t arm = 0;
    double parent_score = 0;
    int thread_id = 0;
};

struct Work {
    Program child;
    Program parent;
    std::vector<ChatMessage> messages;
    std::vector<std::string> others;
    size_t arm = 0;
    uint64_t op_seed = 0;
};

void write_best(ProgramDb& db, const Problem& problem, const fs::path& run_dir) {
    const Program b = db.best();
    if (b.id == 0) return;
    const fs::path dir = run_dir / "best";
    fs::create_directories(dir);
    const fs::path target = dir / problem.program_file;
    write_file_durable(target.string() + ".tmp", b.code);
    fs::rename(target.string() + ".tmp", target);
    const json info = {{"id", b.id},
                       {"score", b.score},
                       {"metrics", b.metrics},
                       {"iteration", b.iteration},
                       {"island", b.island},
                       {"generation", b.generation},
                       {"parent_id", b.parent_id},
                       {"program_file", problem.program_file}};
    write_file_durable((dir / "info.json.tmp").string(), info.dump(2) + "\n");
    fs::rename(dir / "info.json.tmp", dir / "info.json");
}

}  // namespace

RunSummary run_evolution(const Problem& problem, const fs::path& run_dir, LlmBackend* llm,
                         bool resume, const ControllerHooks& hooks) {
    const EvolveOptions& o = problem.options;
    if (o.mode == "llm" && llm == nullptr) {
        throw Error("evolve: mode 'llm' needs an endpoint (--llm BASE_URL#MODEL) or --offline");
    }
    fs::create_directories(run_dir);
    const fs::path db_path = run_dir / "programs.sqlite";
    if (fs::exists(db_path) && !resume) {
        throw Error("evolve: " + run_dir.string() +
                    " already holds a run; pass --resume to continue it or choose another --out");
    }
    ProgramDb db(db_path.string(), o);
    const fs::path work_dir = evaluation_work_dir(problem, run_dir);
    fs::create_directories(work_dir);
    remove_stale_evaluations(work_dir);  // what a killed run left
    const std::string want = structure_of(o).dump();
    const std::string have = db.meta("structure");
    if (have.empty()) {
        db.set_meta("structure", want);
        db.set_meta("problem", problem.dir.string());
        write_file_durable(run_dir / "options.json", options_json(o).dump(2) + "\n");
    }
    if (!have.empty() && have != want) {
        throw Error("evolve: " + db_path.string() +
                    " was created with other search options; a resume must keep them.\n stored: " +
                    have + "\n given:  " + want);
    }
    // The report's reference line; a problem.yaml edited between runs updates it.
    db.set_meta("best_known", std::isnan(problem.best_known)
                                  ? std::string()
                                  : fmt::format("{:.17g}", problem.best_known));
    const auto log = [&](const std::string& s) {
        if (hooks.log) hooks.log(s);
    };

    // The initial program: evaluated once, placed on every island.
    if (db.count("iteration = 0") == 0) {
        const auto t0 = std::chrono::steady_clock::now();
        const EvalOutcome out = evaluate_program(problem, problem.initial_code, work_dir);
        if (!out.ok) {
            throw Error("evolve: the initial program of " + problem.dir.string() +
                        " fails its evaluation: " + out.error +
                        (out.artifacts.empty() ? "" : "\n" + out.artifacts));
        }
        Program init;
        init.iteration = 0;
        init.status = "evaluated";
        init.code = problem.initial_code;
        init.operator_name = "initial";
        init.score = out.score;
        init.metrics = out.metrics;
        init.artifacts = out.artifacts;
        init.eval_s = seconds_since(t0);
        db.compute_features(init);
        db.insert(init);
        log(fmt::format("initial program: combined_score {:.10g}", init.score));
    }
    const Program initial = db.all("iteration = 0").at(0);
    if (db.members(0).empty()) db.seed_islands(initial);

    std::vector<double> weights;
    if (llm) {
        for (size_t a = 0; a < llm->arms(); a++) weights.push_back(llm->arm_weight(a));
    }
    ModelPicker picker(weights, o.ucb, o.ucb_c);
    if (llm) {  // replay the bandit from the stored children, so a resume keeps its state
        std::map<std::string, size_t> arm_of;
        for (size_t a = 0; a < llm->arms(); a++) arm_of[llm->arm_name(a)] = a;
        for (const Program& p : db.all("iteration > 0 AND status IN ('evaluated', 'failed')")) {
            if (!arm_of.count(p.model)) continue;
            const double parent_score = p.parent_id ? db.get(p.parent_id).score : 0;
            picker.reward(arm_of[p.model], p.status == "evaluated" && p.score > parent_score);
        }
    }

    std::mutex mutex;
    std::condition_variable cv;
    std::deque<Done> done;
    // One thread per proposal or evaluation, launched as the loop decides and collected from
    // `done` as each finishes (not core/worker_pool's run_parallel, which runs a batch known in
    // advance: here what runs next depends on what finished).
    std::map<int, std::thread> threads;
    int next_thread = 0;
    const auto launch = [&](std::function<Done()> fn) {
        const int id = next_thread++;
        threads[id] = std::thread([&, id, fn = std::move(fn)]() {
            Done d = fn();
            d.thread_id = id;
            std::lock_guard<std::mutex> lock(mutex);
            done.push_back(std::move(d));
            cv.notify_one();
        });
    };
    const auto launch_eval = [&](Program child, size_t arm, double parent_score) {
        launch([&problem, &work_dir, child = std::move(child), arm, parent_score]() {
            Done d;
            d.evaluated = true;
            d.child = child;
            d.arm = arm;
            d.parent_score = parent_score;
            const auto t0 = std::chrono::steady_clock::now();
            try {
                d.outcome = evaluate_program(problem, child.code, work_dir);
            } catch (const std::exception& e) {
                d.outcome.ok = false;
                d.outcome.error = std::string("sandbox: ") + e.what();
            }
            d.child.eval_s = seconds_since(t0);
            return d;
        });
    };

    std::map<int, std::string> last_error;  // per island, fed back to the next prompt
    int proposing = 0;
    int64_t next_iteration = db.max_iteration() + 1;
    RunSummary summary;
    summary.initial_score = initial.score;

    try {
        // Candidates stored as pending by an interrupted run: evaluate them now, once.
        for (Program& p : db.pending()) {
            log(fmt::format("resume: evaluating pending program {} (iteration {})", p.id,
                            p.iteration));
            double ps = p.parent_id ? db.get(p.parent_id).score : 0;
            size_t arm = 0;
            if (llm) {
                for (size_t a = 0; a < llm->arms(); a++) {
                    if (llm->arm_name(a) == p.model) arm = a;
                }
            }
            launch_eval(p, arm, ps);
        }
        while (true) {
            // Start new candidates while there is room.
            while (static_cast<int>(threads.size()) < o.workers && summary.stop_reason.empty()) {
                if (hooks.stop && hooks.stop->load()) {
                    summary.stop_reason = "stopped";
                    break;
                }
                if (db.count("iteration > 0") + proposing >= o.iterations) break;
                if (o.max_total_tokens > 0 && db.total_tokens() >= o.max_total_tokens) {
                    summary.stop_reason = "token budget";
                    break;
                }
                if (o.max_cost_usd > 0 && db.total_cost() >= o.max_cost_usd) {
                    summary.stop_reason = "cost budget";
                    break;
                }
                const int64_t it = next_iteration++;
                const int island = static_cast<int>((it - 1) % o.islands);
                Rng sel(Rng::mix(o.seed, static_cast<uint64_t>(2 * it)));
                Work w;
                w.op_seed = Rng::mix(o.seed, static_cast<uint64_t>(2 * it + 1));
                w.parent = db.select_parent(island, sel);
                const auto insp = db.inspirations(island, w.parent, sel);
                for (const auto& p : insp) w.others.push_back(p.code);
                Program& c = w.child;
                c.iteration = it;
                c.island = island;
                c.parent_id = w.parent.id;
                c.generation = w.parent.generation + 1;
                if (o.mode == "offline") {
                    c.model = "offline";
                } else {
                    const bool full = o.diff_mode == "full" || sel.uniform() < o.full_rewrite_rate;
                    c.operator_name = full ? "full" : "diff";
                    w.arm = picker.pick(sel);
                    c.model = llm->arm_name(w.arm);
                    w.messages =
                        build_prompt(problem, w.parent, insp, last_error[island], full, sel);
                    c.prompt = w.messages[0].content + "\n\n" + w.messages[1].content;
                }
                last_error.erase(island);
                proposing++;
                launch([&o, llm, w = std::move(w)]() mutable {
                    Done d;
                    d.child = std::move(w.child);
                    d.arm = w.arm;
                    d.parent_score = w.parent.score;
                    const auto t0 = std::chrono::steady_clock::now();
                    try {
                        Rng rng(w.op_seed);
                        if (o.mode == "offline") {
                            const OperatorResult r = offline_mutate(
                                w.parent.code, w.others, o.offline_sigma, o.offline_max_mutations,
                                o.offline_crossover_rate, rng);
                            d.child.operator_name = r.crossover ? "crossover" : "mutate";
                            d.child.diff = r.description;
                            if (r.ok) {
                                d.child.code = r.code;
                            } else {
                                d.error = r.description;
                            }
                        } else {
                            const LlmReply reply = llm->generate(w.arm, w.messages, w.op_seed);
                            d.child.diff = reply.text;
                            d.child.prompt_tokens = reply.prompt_tokens;
                            d.child.completion_tokens = reply.completion_tokens;
                            d.child.cost_usd = reply.cost_usd;
                            const ApplyResult a = apply_reply(w.parent.code, reply.text);
                            if (a.ok) {
                                d.child.code = a.code;
                                if (a.full_rewrite) d.child.operator_name = "full";
                            } else {
                                d.error = "the change could not be applied: " + a.error;
                            }
                        }
                    } catch (const std::exception& e) {
                        d.error = std::string("llm: ") + e.what();
                    }
                    d.child.llm_s = seconds_since(t0);
                    return d;
                });
            }
            if (threads.empty()) break;
            Done d;
            {
                std::unique_lock<std::mutex> lock(mutex);
                cv.wait(lock, [&] { return !done.empty(); });
                d = std::move(done.front());
                done.pop_front();
            }
            threads[d.thread_id].join();
            threads.erase(d.thread_id);
            Program& c = d.child;
            if (!d.evaluated) {
                proposing--;
                if (d.error.empty()) {
                    const std::string dup = db.duplicate_reason(c.code, c.island);
                    if (!dup.empty()) {
                        c.status = "rejected";
                        c.error = dup;
                    }
                } else {
                    c.status = "failed";
                    c.error = d.error;
                }
                if (!c.status.empty()) {
                    if (c.code.empty()) c.code = "";
                    db.insert(c);
                    last_error[c.island] = c.error;
                    if (llm && c.model != "offline") picker.reward(d.arm, 0);
                    log(fmt::format("[{}] program #{} island {}: {} ({})", c.iteration, c.id,
                                    c.island, c.status, c.error.substr(0, 160)));
                    continue;
                }
                c.status = "pending";
                db.insert(c);
                if (hooks.on_event) hooks.on_event("pending", c.iteration);
                launch_eval(c, d.arm, d.parent_score);
                continue;
            }
            const EvalOutcome& out = d.outcome;
            c.status = out.ok ? "evaluated" : "failed";
            c.score = out.ok ? out.score : std::numeric_limits<double>::quiet_NaN();
            c.metrics = out.metrics;
            c.artifacts = out.artifacts;
            c.error = out.error;
            if (out.ok) db.compute_features(c);
            db.finish(c);
            if (hooks.on_event) hooks.on_event("evaluated", c.iteration);
            if (llm && c.model != "offline") {
                picker.reward(d.arm, out.ok && out.score > d.parent_score ? 1.0 : 0.0);
            }
            if (!out.ok) {
                last_error[c.island] = "evaluation failed: " + out.error +
                                       (out.artifacts.empty() ? "" : "\n" + out.artifacts);
            }
            // A failure's line says why: the error and the last line the program or the
            // evaluator wrote on stderr (the whole tail stays in the database and `export`).
            std::string why = out.error.substr(0, 160);
            if (!out.ok) {
                std::string tail = out.artifacts;
                while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' '))
                    tail.pop_back();
                const size_t nl = tail.rfind('\n');
                tail = nl == std::string::npos ? tail : tail.substr(nl + 1);
                if (!tail.empty()) why += ": " + tail.substr(0, 160);
            }
            // Iterations count candidates from 0 (the initial program); program ids number rows
            // from 1: both are shown, as in the report.
            log(fmt::format("[{}] program #{} island {} gen {}: {} {} (best {:.10g})", c.iteration,
                            c.id, c.island, c.generation, c.status,
                            out.ok ? fmt::format("{:.10g}", c.score) : why, db.best().score));
        }
    } catch (...) {
        for (auto& [id, t] : threads) t.join();
        throw;
    }
    if (summary.stop_reason.empty()) summary.stop_reason = "iterations";
    db.set_meta("stop_reason", summary.stop_reason);
    write_best(db, problem, run_dir);
    const Program b = db.best();
    summary.candidates = db.count("iteration > 0");
    summary.evaluated = db.count("iteration > 0 AND status = 'evaluated'");
    summary.failed = db.count("status = 'failed'");
    summary.rejected = db.count("status = 'rejected'");
    summary.best_score = b.score;
    summary.best_id = b.id;
    summary.tokens = db.total_tokens();
    summary.cost_usd = db.total_cost();
    return summary;
}

}  // namespace crucible::evolve
