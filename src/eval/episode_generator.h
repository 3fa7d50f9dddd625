// The eval harness's generator of environment episodes (`crucible eval --env NAME`): each
// sample is one episode of the environment (rl/episodes.h: token-exact, several turns with
// tool observations) from a local model folder through the engine. The stored completion is
// the whole transcript after the prompt; the item's verifier scores what the environment's
// verdict reads (the search environment: its <answer> content; the calculator: the last turn).
#pragma once

#include <memory>
#include <string>

#include "eval/harness.h"
#include "rl/episodes.h"
#include "rl/rl_config.h"

namespace crucible::eval {

// `batch` samples run as episodes at once (one group per sample, seeded by its job's seed, so
// results do not depend on the batching) and are stored when that batch finishes. The episode
// budget after the prompt is the sampling's max_tokens; env.max_tokens_per_turn limits a turn.
// `policy` (tests: a scripted one) replaces the engine on the folder's model when set.
// Throws crucible::Error when the folder cannot be loaded.
std::unique_ptr<Generator> make_episode_generator(const std::string& model_dir,
                                                  const rl::RlEnvConfig& env, int batch,
                                                  rl::Generator policy = {});

}  // namespace crucible::eval
