// The eval harness's generator for a local model folder (config.json + safetensors, with the
// folder's tokenizer.json or the byte tokenizer): samples run through the batched engine, many
// items' pending samples per generate() call, each sample a request of its own with its own
// seed so that results do not depend on how samples were batched.
#pragma once

#include <memory>
#include <string>

#include "eval/harness.h"

namespace crucible::eval {

// `batch` samples go to the engine at once and are stored when that batch finishes (so a kill
// loses at most one batch). `chat_format`: "" for the folder's own (ChatML when none).
// Throws crucible::Error when the folder cannot be loaded.
std::unique_ptr<Generator> make_local_generator(const std::string& model_dir, int batch,
                                                int max_batch_tokens,
                                                const std::string& chat_format = "");

}  // namespace crucible::eval
