// The LLM side of evolve: prompts built from templates (problem, parent with metrics,
// inspirations, artifacts, the last failure, diff instructions) with stochastic phrasing; the
// ensemble of OpenAI-compatible endpoints picked by weight or by a UCB1 bandit; and the
// interface the controller calls, so tests can script the LLM.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/rng.h"
#include "evolve/problem.h"
#include "evolve/program_db.h"
#include "serve/openai_client.h"

namespace crucible::evolve {

struct LlmReply {
    std::string text;
    std::string model;
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
    double cost_usd = 0;
};

// What the controller calls. Implementations must be callable from several threads at once.
class LlmBackend {
  public:
    virtual ~LlmBackend() = default;
    virtual size_t arms() const = 0;  // endpoints to choose between
    virtual std::string arm_name(size_t arm) const = 0;
    virtual double arm_weight(size_t arm) const { return arm < arms() ? 1.0 : 0.0; }
    // Throws Error when the call fails (after the client's retries).
    virtual LlmReply generate(size_t arm, const std::vector<ChatMessage>& messages,
                              uint64_t seed) = 0;
};

// The ensemble of OpenAI-compatible endpoints from EvolveOptions::llms.
class OpenAIEnsemble : public LlmBackend {
  public:
    explicit OpenAIEnsemble(const EvolveOptions& options);
    size_t arms() const override { return endpoints_.size(); }
    std::string arm_name(size_t arm) const override { return endpoints_[arm].model; }
    double arm_weight(size_t arm) const override { return endpoints_[arm].weight; }
    LlmReply generate(size_t arm, const std::vector<ChatMessage>& messages, uint64_t seed) override;

  private:
    std::vector<LlmEndpoint> endpoints_;
    std::vector<std::unique_ptr<OpenAIClient>> clients_;
    double temperature_;
    int max_tokens_;
};

// Chooses the endpoint for each call: by weight, or (ucb) UCB1 over the reward "the child
// beat its parent": every arm once, then argmax mean_i + c·sqrt(ln t / n_i).
class ModelPicker {
  public:
    ModelPicker(std::vector<double> weights, bool ucb, double c)
        : weights_(std::move(weights)),
          ucb_(ucb),
          c_(c),
          n_(weights_.size(), 0),
          sum_(weights_.size(), 0) {}
    size_t pick(Rng& rng) const;
    void reward(size_t arm, double r);
    int64_t pulls(size_t arm) const { return n_[arm]; }

  private:
    std::vector<double> weights_;
    bool ucb_;
    double c_;
    std::vector<int64_t> n_;
    std::vector<double> sum_;
};

// Builds the chat messages for a child of `parent`. `last_error` is the failure of the
// island's previous attempt (shown so the LLM can avoid it); `full_rewrite` asks for the
// whole evolve block instead of SEARCH/REPLACE blocks.
// Template placeholders: {description} {parent_code} {parent_metrics} {artifacts}
// {inspirations} {previous_error} {instructions} {variation}.
std::vector<ChatMessage> build_prompt(const Problem& problem, const Program& parent,
                                      const std::vector<Program>& inspirations,
                                      const std::string& last_error, bool full_rewrite, Rng& rng);

}  // namespace crucible::evolve
