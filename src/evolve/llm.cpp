#include "evolve/llm.h"

#include <fmt/format.h>

#include <cmath>

#include "core/error.h"

namespace crucible::evolve {
namespace {

constexpr const char* kSystem =
    "You are an expert programmer and researcher improving a program through evolutionary "
    "search. Each program you write is run by an automatic evaluator; higher combined_score is "
    "better. Change only the code between the EVOLVE-BLOCK-START and EVOLVE-BLOCK-END markers.";

constexpr const char* kTemplate = R"(# Task
{description}

# Current program (parent)
Metrics: {parent_metrics}
```
{parent_code}```
{artifacts}{inspirations}{previous_error}
# What to do
{variation}
{instructions}
)";

constexpr const char* kDiffInstructions =
    R"(Answer with one or more SEARCH/REPLACE blocks in exactly this format:
<<<<<<< SEARCH
lines copied exactly from the current program
=======
the new lines
>>>>>>> REPLACE
Each SEARCH part must match a unique place inside the EVOLVE-BLOCK. Do not rewrite the
whole program.)";

constexpr const char* kFullInstructions =
    R"(Answer with the complete new content of the EVOLVE-BLOCK (or the whole program with its
markers and the code outside them unchanged) in one fenced code block.)";

// Stochastic phrasing (AlphaEvolve §2.2): one of these is drawn for each prompt.
constexpr const char* kVariations[] = {
    "Propose one focused change that should raise combined_score.",
    "Improve the program. Think about what limits its score now, then fix that.",
    "Try a different idea from the programs above; small, careful edits are fine.",
    "Make the program better; if the metrics show a weak spot, target it.",
};

std::string replace_all(std::string s, const std::string& key, const std::string& value) {
    for (size_t p = s.find(key); p != std::string::npos; p = s.find(key, p + value.size())) {
        s.replace(p, key.size(), value);
    }
    return s;
}

std::string metrics_text(const Program& p) {
    std::string out = fmt::format("combined_score={:.10g}", p.score);
    for (auto it = p.metrics.begin(); it != p.metrics.end(); ++it) {
        if (it.key() == "combined_score") continue;
        out += " " + it.key() + "=" + (it->is_string() ? it->get<std::string>() : it->dump());
    }
    return out;
}

}  // namespace

OpenAIEnsemble::OpenAIEnsemble(const EvolveOptions& options)
    : endpoints_(options.llms), temperature_(options.temperature), max_tokens_(options.max_tokens) {
    if (endpoints_.empty()) throw Error("evolve: no LLM endpoint given (--llm or evolve.llms)");
    for (const auto& e : endpoints_) {
        ClientOptions co;
        co.base_url = e.base_url;
        co.timeout_s = options.llm_timeout_s;
        co.seed = options.seed;
        clients_.push_back(std::make_unique<OpenAIClient>(co));
    }
}

LlmReply OpenAIEnsemble::generate(size_t arm, const std::vector<ChatMessage>& messages,
                                  uint64_t seed) {
    const LlmEndpoint& e = endpoints_.at(arm);
    ChatRequest req;
    req.model = e.model;
    req.messages = messages;
    req.max_tokens = max_tokens_;
    req.temperature = temperature_;
    req.top_p = 0.95;
    req.seed = static_cast<int64_t>(seed & 0x7fffffffffffffffULL);
    const ChatResult res = clients_[arm]->chat(req);
    LlmReply r;
    r.model = e.model;
    if (!res.choices.empty()) r.text = res.choices[0].text;
    r.prompt_tokens = res.usage.prompt_tokens;
    r.completion_tokens = res.usage.completion_tokens;
    r.cost_usd = (static_cast<double>(r.prompt_tokens) * e.usd_per_mtok_in +
                  static_cast<double>(r.completion_tokens) * e.usd_per_mtok_out) /
                 1e6;
    return r;
}

size_t ModelPicker::pick(Rng& rng) const {
    const size_t n = weights_.size();
    if (n <= 1) return 0;
    if (ucb_) {
        int64_t t = 0;
        for (size_t i = 0; i < n; i++) {
            if (n_[i] == 0) return i;
            t += n_[i];
        }
        size_t best = 0;
        double best_v = -1e300;
        for (size_t i = 0; i < n; i++) {
            const double v =
                sum_[i] / static_cast<double>(n_[i]) +
                c_ * std::sqrt(std::log(static_cast<double>(t)) / static_cast<double>(n_[i]));
            if (v > best_v) {
                best_v = v;
                best = i;
            }
        }
        return best;
    }
    double total = 0;
    for (double w : weights_) total += w;
    double u = rng.uniform() * total;
    for (size_t i = 0; i < n; i++) {
        if (u < weights_[i]) return i;
        u -= weights_[i];
    }
    return n - 1;
}

void ModelPicker::reward(size_t arm, double r) {
    if (arm >= n_.size()) return;
    n_[arm]++;
    sum_[arm] += r;
}

std::vector<ChatMessage> build_prompt(const Problem& problem, const Program& parent,
                                      const std::vector<Program>& inspirations,
                                      const std::string& last_error, bool full_rewrite, Rng& rng) {
    const EvolveOptions& o = problem.options;
    std::string artifacts, insp, prev;
    if (!parent.artifacts.empty()) {
        std::string a = parent.artifacts;
        if (a.size() > 4000) a = a.substr(0, 4000) + "\n...(truncated)";
        artifacts = "\n# Evaluator feedback on the parent\n" + a + "\n";
    }
    for (size_t i = 0; i < inspirations.size(); i++) {
        insp += fmt::format("\n# Other program {} ({})\n```\n{}```\n", i + 1,
                            metrics_text(inspirations[i]), evolve_text(inspirations[i].code));
    }
    if (!last_error.empty()) {
        prev = "\n# Your previous attempt failed\n" + last_error + "\n";
    }
    const size_t nv = sizeof(kVariations) / sizeof(kVariations[0]);
    std::string text = o.prompt_template.empty() ? kTemplate : o.prompt_template;
    text = replace_all(text, "{description}", problem.description);
    text = replace_all(text, "{parent_metrics}", metrics_text(parent));
    text = replace_all(text, "{artifacts}", artifacts);
    text = replace_all(text, "{inspirations}", insp);
    text = replace_all(text, "{previous_error}", prev);
    text = replace_all(text, "{variation}", kVariations[rng.below(nv)]);
    text =
        replace_all(text, "{instructions}", full_rewrite ? kFullInstructions : kDiffInstructions);
    // Last, so that program text containing a placeholder is never expanded.
    text = replace_all(text, "{parent_code}", parent.code);
    return {{"system", o.system_prompt.empty() ? kSystem : o.system_prompt}, {"user", text}};
}

}  // namespace crucible::evolve
