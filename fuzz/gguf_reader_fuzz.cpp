// libFuzzer target for the GGUF reader: any byte string must either read into metadata and
// tensors that lie inside the file or raise crucible::Error; never crash, hang or read out of
// bounds. read_gguf takes a path, so each input goes through an in-memory file.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "fuzz_file.h"
#include "model/gguf_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const crucible::GgufFile g = crucible::read_gguf(crucible::fuzz::as_file(data, size));
        for (const std::string& key : g.keys) (void)g.at(key);
        for (const crucible::GgufTensorInfo& t : g.tensors) {
            // Decode small tensors in full (F16/Q8_0 dequantization); touch the ends of others.
            if (t.numel() <= 4096) {
                volatile float first = g.tensor_f32(t.name).front();
                (void)first;
            } else {
                const auto bytes = g.data(t);
                volatile uint8_t first = bytes.front(), last = bytes.back();
                (void)first;
                (void)last;
            }
        }
    } catch (const crucible::Error&) {
    }
    return 0;
}
