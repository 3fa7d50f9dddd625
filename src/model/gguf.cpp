// ggml's tensor encodings: F32 as is, F16 (model/float_formats), Q8_0 as ggml quantizes it.
#include "model/gguf.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/float_formats.h"

namespace crucible {

size_t ggml_nbytes(GgmlType type, size_t n) {
    switch (type) {
        case GgmlType::f32:
            return n * 4;
        case GgmlType::f16:
        case GgmlType::bf16:
            return n * 2;
        case GgmlType::q8_0:
            return n / kQ8_0BlockSize * kQ8_0BlockBytes;
    }
    return 0;
}

std::vector<uint8_t> encode_ggml(GgmlType type, const float* x, size_t n) {
    std::vector<uint8_t> out(ggml_nbytes(type, n));
    encode_ggml_into(type, x, n, out.data());
    return out;
}

void encode_ggml_into(GgmlType type, const float* x, size_t n, uint8_t* p) {
    if (type == GgmlType::f32) {
        std::memcpy(p, x, n * 4);
    } else if (type == GgmlType::f16 || type == GgmlType::bf16) {
        for (size_t i = 0; i < n; i++) {
            const uint16_t h = type == GgmlType::f16 ? fp32_to_fp16(x[i]) : fp32_to_bf16(x[i]);
            std::memcpy(p + 2 * i, &h, 2);
        }
    } else {
        // ggml-quants.c quantize_row_q8_0_ref, operation for operation.
        for (size_t b = 0; b < n / kQ8_0BlockSize; b++, p += kQ8_0BlockBytes) {
            const float* xb = x + b * kQ8_0BlockSize;
            float amax = 0.0f;
            for (size_t j = 0; j < kQ8_0BlockSize; j++) amax = std::max(amax, std::fabs(xb[j]));
            const float d = amax / 127.0f;
            const float id = d != 0.0f ? 1.0f / d : 0.0f;
            const uint16_t dh = fp32_to_fp16(d);
            std::memcpy(p, &dh, 2);
            for (size_t j = 0; j < kQ8_0BlockSize; j++) {
                p[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::roundf(xb[j] * id)));
            }
        }
    }
}

void decode_ggml(GgmlType type, const uint8_t* data, size_t n, float* out) {
    if (type == GgmlType::f32) {
        std::memcpy(out, data, n * 4);
    } else if (type == GgmlType::f16 || type == GgmlType::bf16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            std::memcpy(&h, data + 2 * i, 2);
            out[i] = type == GgmlType::f16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
        }
    } else {
        for (size_t b = 0; b < n / kQ8_0BlockSize; b++, data += kQ8_0BlockBytes) {
            uint16_t dh;
            std::memcpy(&dh, data, 2);
            const float d = fp16_to_fp32(dh);
            for (size_t j = 0; j < kQ8_0BlockSize; j++) {
                out[b * kQ8_0BlockSize + j] =
                    static_cast<float>(static_cast<int8_t>(data[2 + j])) * d;
            }
        }
    }
}

}  // namespace crucible
