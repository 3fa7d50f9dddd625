#include "reward/rubric_scorer.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/json_fields.h"
#include "core/worker_pool.h"
#include "reward/rubric_aggregate.h"
#include "reward/rubric_format.h"

namespace crucible::reward {

using nlohmann::json;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// One unit of judge work: one vote on one criterion, on all of an item's judge criteria, or
// on the whole rubric (implicit).
struct Task {
    enum Kind { criterion, all, implicit } kind;
    size_t item;
    size_t criterion_index;  // kind == criterion
    int vote;
    std::vector<Verdict> verdicts;  // criterion: 1; all: one per judge criterion
    ImplicitVerdict implicit_verdict;
};

}  // namespace

json RubricResult::to_json() const {
    json crit = json::array();
    for (const CriterionResult& c : criteria) {
        json j{{"id", c.id}, {"met", number_or_null(c.met)}};
        if (c.votes > 0) j["votes"] = c.votes;
        if (!c.explanation.empty()) j["explanation"] = c.explanation;
        if (!c.error.empty()) j["error"] = c.error;
        crit.push_back(std::move(j));
    }
    json j{{"score", number_or_null(score)},
           {"raw", number_or_null(raw)},
           {"aggregation", to_string(aggregation)},
           {"failed", failed},
           {"criteria", std::move(crit)}};
    if (failed) j["failure"] = failure;
    if (!explanation.empty()) j["explanation"] = explanation;
    return j;
}

RubricResult RubricResult::from_json(const json& j) {
    const auto number = [](const json& v) { return v.is_number() ? v.get<double>() : kNaN; };
    if (!j.is_object() || !j.contains("criteria") || !j["criteria"].is_array())
        throw Error("rubric result: expected an object with 'criteria', got " +
                    j.dump().substr(0, 80));
    RubricResult r;
    r.score = number(j.value("score", json()));
    r.raw = number(j.value("raw", json()));
    r.aggregation = parse_aggregation(j.value("aggregation", std::string("healthbench")));
    r.failed = j.value("failed", false);
    r.failure = j.value("failure", std::string());
    r.explanation = j.value("explanation", std::string());
    for (const json& c : j["criteria"]) {
        if (!c.is_object()) throw Error("rubric result: a criterion is not an object");
        CriterionResult cr;
        cr.id = c.value("id", std::string());
        cr.met = number(c.value("met", json()));
        cr.votes = c.value("votes", 0);
        cr.explanation = c.value("explanation", std::string());
        cr.error = c.value("error", std::string());
        r.criteria.push_back(std::move(cr));
    }
    return r;
}

RubricScorer::RubricScorer(RubricScorerOptions options, std::shared_ptr<Judge> judge)
    : options_(std::move(options)), judge_(std::move(judge)) {}

JudgeStats RubricScorer::judge_stats() const {
    return judge_ ? judge_->stats() : JudgeStats{};
}

RubricResult RubricScorer::score(const RubricItem& item, const std::string& response) const {
    const std::string responses[] = {response};
    return score_batch(std::span<const RubricItem>(&item, 1), responses)[0];
}

std::vector<RubricResult> RubricScorer::score_batch(std::span<const RubricItem> items,
                                                    std::span<const std::string> responses) const {
    if (!responses.empty() && responses.size() != items.size())
        throw Error("rubric scorer: " + std::to_string(responses.size()) + " responses for " +
                    std::to_string(items.size()) + " items");
    std::vector<RubricResult> results(items.size());
    std::vector<const std::string*> response_of(items.size(), nullptr);
    std::vector<Task> tasks;
    const int votes = judge_ ? judge_->options().votes : 1;
    const bool one_call = judge_ && judge_->options().one_call;

    for (size_t i = 0; i < items.size(); ++i) {
        const RubricItem& item = items[i];
        RubricResult& r = results[i];
        r.aggregation = item.rubric.aggregation.value_or(options_.aggregation);
        if (!responses.empty())
            response_of[i] = &responses[i];
        else if (item.response)
            response_of[i] = &*item.response;
        r.criteria.resize(item.rubric.criteria.size());
        for (size_t c = 0; c < item.rubric.criteria.size(); ++c)
            r.criteria[c].id = item.rubric.criteria[c].id;
        if (!response_of[i]) {
            r.failed = true;
            r.failure = "item '" + item.id + "' has no response to score";
            continue;
        }
        bool needs_judge = r.aggregation == Aggregation::implicit;
        for (size_t c = 0; c < item.rubric.criteria.size(); ++c) {
            const Criterion& crit = item.rubric.criteria[c];
            if (crit.is_programmatic()) {
                // A check that cannot decide (a regex stopped at its match limits) is the
                // criterion's error, and so the item's failure: never a silent "not met".
                try {
                    r.criteria[c].met =
                        check_programmatic(crit, *response_of[i], options_.count_tokens) ? 1.0
                                                                                         : 0.0;
                } catch (const std::exception& e) {
                    r.criteria[c].met = kNaN;
                    r.criteria[c].error = e.what();
                }
            } else {
                r.criteria[c].met = kNaN;
                needs_judge = true;
            }
        }
        if (!needs_judge) continue;
        if (!judge_) {
            r.failed = true;
            r.failure = "item '" + item.id + "' needs a judge and none is configured";
            continue;
        }
        for (int v = 0; v < votes; ++v) {
            if (r.aggregation == Aggregation::implicit) {
                tasks.push_back({Task::implicit, i, 0, v, {}, {}});
            } else if (one_call) {
                tasks.push_back({Task::all, i, 0, v, {}, {}});
            } else {
                for (size_t c = 0; c < item.rubric.criteria.size(); ++c)
                    if (!item.rubric.criteria[c].is_programmatic())
                        tasks.push_back({Task::criterion, i, c, v, {}, {}});
            }
        }
    }

    // Run the judge tasks on up to max_concurrency threads; each writes only its own Task.
    if (!tasks.empty()) {
        const auto work = [&](size_t t) {
            Task& task = tasks[t];
            const RubricItem& item = items[task.item];
            const std::string& response = *response_of[task.item];
            try {
                if (task.kind == Task::criterion) {
                    task.verdicts = {judge_->judge_criterion(
                        item.messages, response, item.rubric.criteria[task.criterion_index],
                        task.vote)};
                } else if (task.kind == Task::all) {
                    std::vector<const Criterion*> judged;
                    for (const Criterion& c : item.rubric.criteria)
                        if (!c.is_programmatic()) judged.push_back(&c);
                    task.verdicts =
                        judge_->judge_criteria(item.messages, response, judged, task.vote);
                } else {
                    task.implicit_verdict =
                        judge_->judge_implicit(item.messages, response, item.rubric, task.vote);
                }
            } catch (const std::exception& e) {  // a bug or an allocation failure
                Verdict failed;
                failed.error = std::string("judge error: ") + e.what();
                task.verdicts = {failed};
                task.implicit_verdict.error = failed.error;
            }
        };
        run_parallel(tasks.size(),
                     static_cast<size_t>(std::max(0, judge_->options().max_concurrency)), work);
    }

    // Merge the votes: met = the share of answering votes that found the criterion met.
    std::vector<std::vector<int>> met_votes(items.size()), answered(items.size());
    std::vector<std::vector<double>> implicit_scores(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
        met_votes[i].assign(items[i].rubric.criteria.size(), 0);
        answered[i].assign(items[i].rubric.criteria.size(), 0);
    }
    const auto record = [&](size_t i, size_t c, const Verdict& v) {
        CriterionResult& cr = results[i].criteria[c];
        if (v.ok) {
            ++answered[i][c];
            met_votes[i][c] += v.met ? 1 : 0;
            if (cr.explanation.empty()) cr.explanation = v.explanation;
        } else if (cr.error.empty()) {
            cr.error = v.error;
        }
    };
    for (const Task& task : tasks) {
        const RubricItem& item = items[task.item];
        if (task.kind == Task::criterion) {
            record(task.item, task.criterion_index, task.verdicts.at(0));
        } else if (task.kind == Task::all) {
            size_t k = 0;
            for (size_t c = 0; c < item.rubric.criteria.size(); ++c)
                if (!item.rubric.criteria[c].is_programmatic())
                    record(task.item, c,
                           task.verdicts.size() == 1 ? task.verdicts[0] : task.verdicts.at(k++));
        } else {
            RubricResult& r = results[task.item];
            if (task.implicit_verdict.ok) {
                implicit_scores[task.item].push_back(task.implicit_verdict.score);
                if (r.explanation.empty()) r.explanation = task.implicit_verdict.explanation;
            } else if (r.failure.empty()) {
                r.failure = "implicit judgement: " + task.implicit_verdict.error;
            }
        }
    }

    for (size_t i = 0; i < items.size(); ++i) {
        RubricResult& r = results[i];
        const Rubric& rubric = items[i].rubric;
        if (r.failed) {
            r.score = r.raw = kNaN;
            continue;
        }
        std::vector<double> met(rubric.criteria.size());
        for (size_t c = 0; c < rubric.criteria.size(); ++c) {
            CriterionResult& cr = r.criteria[c];
            if (!rubric.criteria[c].is_programmatic()) {
                cr.votes = answered[i][c];
                cr.met = cr.votes > 0 ? static_cast<double>(met_votes[i][c]) / cr.votes : kNaN;
                if (cr.votes > 0) cr.error.clear();  // some votes answered: use them
            }
            met[c] = cr.met;
        }
        if (r.aggregation == Aggregation::implicit) {
            const auto& s = implicit_scores[i];
            if (s.empty()) {
                r.failed = true;
                r.score = r.raw = kNaN;
                continue;
            }
            double sum = 0;
            for (double x : s) sum += x;
            r.score = r.raw = sum / static_cast<double>(s.size());
            r.failure.clear();
            continue;
        }
        for (size_t c = 0; c < rubric.criteria.size(); ++c) {
            if (std::isnan(met[c])) {
                r.failed = true;
                r.failure = "criterion '" + rubric.criteria[c].id + "': " + r.criteria[c].error;
                break;
            }
        }
        if (r.failed) {
            r.score = r.raw = kNaN;
            continue;
        }
        const Aggregate a = aggregate(rubric, met, r.aggregation);
        r.score = a.score;
        r.raw = a.raw;
    }
    return results;
}

std::unique_ptr<RubricScorer> make_rubric_scorer(const RubricScorerConfig& c,
                                                 TokenCounter count_tokens) {
    RubricScorerOptions options;
    options.aggregation = parse_aggregation(c.aggregation);
    options.count_tokens = std::move(count_tokens);
    std::shared_ptr<Judge> judge;
    if (!c.judge.empty()) {
        const JudgeEndpoint endpoint = parse_judge_endpoint(c.judge);
        ClientOptions client;
        client.base_url = endpoint.base_url;
        client.timeout_s = c.timeout_s;
        client.max_retries = c.retries;
        client.max_concurrency = std::max(1, c.concurrency);
        client.seed = c.seed;
        JudgeOptions j;
        j.model = endpoint.model;
        if (c.mode == "one-call")
            j.one_call = true;
        else if (c.mode != "per-criterion")
            throw Error("rubric judge mode: expected per-criterion or one-call, got '" + c.mode +
                        "'");
        j.votes = c.votes;
        j.temperature = c.temperature;
        j.max_tokens = c.max_tokens;
        j.max_attempts = c.max_attempts;
        j.cache_path = c.cache;
        j.max_concurrency = c.concurrency;
        j.max_requests_per_s = c.rps;
        j.price_input_per_mtok = c.price_in;
        j.price_output_per_mtok = c.price_out;
        j.seed = c.seed;
        judge = std::make_shared<Judge>(std::make_shared<OpenAIClient>(client), j);
    }
    return std::make_unique<RubricScorer>(std::move(options), std::move(judge));
}

}  // namespace crucible::reward
