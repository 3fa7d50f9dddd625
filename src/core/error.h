// Errors raised at the boundaries (files, configs, datasets, checkpoints).
#pragma once

#include <stdexcept>
#include <string>

namespace crucible {

// The one exception type Crucible throws for bad input or failed I/O. The message names the
// file, line and field involved, and what was expected, so it can be shown to a user as is.
class Error : public std::runtime_error {
  public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace crucible
