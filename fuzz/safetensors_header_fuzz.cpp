// libFuzzer target for the safetensors parser: any byte string must either parse into tensors
// that lie inside the buffer or raise crucible::Error; never crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const crucible::SafetensorsContents c = crucible::parse_safetensors(data, size, "fuzz");
        for (const auto& [name, t] : c.tensors) {
            // Touch the first and last byte of every tensor: ASan flags any out-of-range view.
            if (t.nbytes > 0) {
                volatile uint8_t first = t.data[0], last = t.data[t.nbytes - 1];
                (void)first;
                (void)last;
            }
        }
    } catch (const crucible::Error&) {
    }
    return 0;
}
