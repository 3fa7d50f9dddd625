#include "run/lora_settings.h"

#include <sstream>

#include "core/error.h"
#include "core/strings.h"

namespace crucible {

LoraConfig read_lora_settings(const Config& c) {
    LoraConfig l;
    l.rank = static_cast<int>(c.get_int("lora.rank"));
    l.alpha = c.get_double("lora.alpha");
    l.targets.clear();
    std::stringstream list(c.get_string("lora.targets"));
    for (std::string t; std::getline(list, t, ',');) {
        t = trim(t);
        if (!t.empty()) l.targets.push_back(t);
    }
    if (l.rank > 0 && l.targets.empty()) throw Error("lora.targets: name at least one projection");
    if (l.rank == 0 && c.get_string("train.dtype") == "q8_0") {
        throw Error(
            "train.dtype: q8_0 is a frozen quantized base; it trains LoRA adapters only (set "
            "lora.rank > 0) — full fine-tuning takes float32 or bfloat16");
    }
    return l;
}

}  // namespace crucible
