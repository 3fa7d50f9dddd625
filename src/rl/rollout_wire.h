// Rollouts between ranks (`mpirun -np N crucible train rl`): each rank generates and scores its
// share of a round's groups, then every rank gathers every rank's, so all of them hold the
// round exactly as one process would. A rollout travels with what scoring left in it; its
// environment (needed only for the verdict, already taken) stays behind.
#pragma once

#include <string>
#include <vector>

#include "rl/rollout.h"

namespace crucible::rl {

// The rollouts as one message: CBOR, so text travels byte for byte (a completion need not be
// valid UTF-8) and every double exactly, NaN included.
std::string rollouts_to_message(const std::vector<Rollout>& rollouts);
// The inverse. Throws Error on a message that is not one.
std::vector<Rollout> rollouts_from_message(const std::string& message);

}  // namespace crucible::rl
