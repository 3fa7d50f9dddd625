#include "run/tfevents.h"

#include <array>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/file_io.h"

namespace crucible {

namespace {

std::array<uint32_t, 256> make_crc_table() {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        t[i] = c;
    }
    return t;
}

uint32_t masked_crc(std::string_view data) {
    const uint32_t c = crc32c(data);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

void put_le(std::string& out, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Protocol buffer wire format: varints, tags, length-delimited fields, fixed 32/64.
void put_varint(std::string& out, uint64_t v) {
    while (v >= 0x80) {
        out.push_back(static_cast<char>((v & 0x7f) | 0x80));
        v >>= 7;
    }
    out.push_back(static_cast<char>(v));
}
void put_tag(std::string& out, int field, int wire_type) {
    put_varint(out, (static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire_type));
}
void put_bytes(std::string& out, int field, std::string_view bytes) {
    put_tag(out, field, 2);
    put_varint(out, bytes.size());
    out.append(bytes);
}
void put_double(std::string& out, int field, double v) {
    put_tag(out, field, 1);
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    put_le(out, bits, 8);
}
void put_float(std::string& out, int field, float v) {
    put_tag(out, field, 5);
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    put_le(out, bits, 4);
}

}  // namespace

uint32_t crc32c(std::string_view data) {
    static const std::array<uint32_t, 256> table = make_crc_table();
    uint32_t c = 0xffffffffu;
    for (unsigned char b : data) c = table[(c ^ b) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

std::string tfrecord(std::string_view data) {
    std::string len;
    put_le(len, data.size(), 8);
    std::string out = len;
    put_le(out, masked_crc(len), 4);
    out.append(data);
    put_le(out, masked_crc(data), 4);
    return out;
}

std::string scalar_event(double wall_time, int64_t step, const std::string& tag, float value) {
    std::string v;  // Summary.Value
    put_bytes(v, 1, tag);
    put_float(v, 2, value);
    std::string summary;
    put_bytes(summary, 1, v);
    std::string event;
    put_double(event, 1, wall_time);
    put_tag(event, 2, 0);
    put_varint(event, static_cast<uint64_t>(step));
    put_bytes(event, 5, summary);
    return event;
}

std::string file_version_event(double wall_time) {
    std::string event;
    put_double(event, 1, wall_time);
    put_bytes(event, 3, "brain.Event:2");
    return event;
}

EventFileWriter::EventFileWriter(const std::filesystem::path& dir, double wall_time) {
    std::filesystem::create_directories(dir);
    char name[96];
    std::snprintf(name, sizeof name, "events.out.tfevents.%lld.crucible",
                  static_cast<long long>(wall_time));
    path_ = dir / name;
    buffer_ = tfrecord(file_version_event(wall_time));
}

EventFileWriter::~EventFileWriter() {
    try {
        close();
    } catch (const std::exception&) {
    }
}

void EventFileWriter::add_scalar(const std::string& tag, int64_t step, float value,
                                 double wall_time) {
    buffer_ += tfrecord(scalar_event(wall_time, step, tag, value));
}

void EventFileWriter::close() {
    if (closed_) return;
    closed_ = true;
    write_file_durable(path_, buffer_);
}

}  // namespace crucible
