// libFuzzer target for the tokenizer.json loader (parse_tokenizer_json, then BpeTokenizer's
// tables): any byte string must either load or raise crucible::Error; a tokenizer that loads
// must encode and decode text without crashing, and every id it produces must be in its
// vocabulary.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "fuzz_file.h"
#include "tokenizer/bpe_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const crucible::BpeTokenizer tok(crucible::fuzz::as_file(data, size));
        // ASCII, NFC-sensitive text (e + combining acute), ill-formed UTF-8, ChatML markers.
        static const std::string kText =
            "Hello, w\xC3\xB6rld! 123  \n\t e\xCC\x81 \xFF\xC3 <|im_start|>user<|im_end|>";
        const std::vector<int32_t> ids = tok.encode(kText);
        for (int32_t id : ids) {
            if (id < 0 || id >= tok.vocab_size()) std::abort();
            (void)tok.token_bytes(id);
            (void)tok.id_to_token(id);
        }
        (void)tok.decode(ids);
        (void)tok.decode(ids, /*skip_special=*/true);
        crucible::BpeStreamDecoder stream(tok);
        for (int32_t id : ids) (void)stream.push(id);
        (void)stream.finish();
    } catch (const crucible::Error&) {
    }
    return 0;
}
