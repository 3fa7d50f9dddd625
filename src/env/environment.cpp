#include "env/environment.h"

namespace crucible::env {

Prompt OneTurnEnvironment::reset(const Item& item) {
    text_.clear();
    return {item.prompt, item.prompt_ids};
}

StepResult OneTurnEnvironment::step(const Turn& turn) {
    text_ = turn.text;
    StepResult r;
    r.done = true;
    return r;
}

}  // namespace crucible::env
