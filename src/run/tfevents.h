// TensorBoard event files: scalars per step, written as TensorBoard reads them, so a training
// run's metrics open in the tool people have (`crucible report RUN --tensorboard DIR`).
//
// The format (TensorFlow's TFRecord of `Event` protocol buffers): each record is its length
// (uint64, little-endian), the masked CRC-32C of those 8 bytes, the data, and the masked
// CRC-32C of the data; masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8. The first event
// holds file_version "brain.Event:2"; each scalar is an Event {wall_time (1, double), step
// (2, int64), summary (5): Summary {value (1): Value {tag (1, string), simple_value (2,
// float)}}}.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace crucible {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord checks its records.
uint32_t crc32c(std::string_view data);

// One TFRecord: length, masked CRC of the length, data, masked CRC of the data.
std::string tfrecord(std::string_view data);

// The serialized Event of one scalar.
std::string scalar_event(double wall_time, int64_t step, const std::string& tag, float value);
// The serialized first Event of a file: file_version "brain.Event:2".
std::string file_version_event(double wall_time);

// Writes events to DIR/events.out.tfevents.<wall time>.crucible (TensorBoard's file name
// pattern): the version event on construction, then scalars. The file is complete after
// close() (called by the destructor); Error names the path when it cannot be written.
class EventFileWriter {
  public:
    EventFileWriter(const std::filesystem::path& dir, double wall_time);
    ~EventFileWriter();
    EventFileWriter(const EventFileWriter&) = delete;
    EventFileWriter& operator=(const EventFileWriter&) = delete;

    void add_scalar(const std::string& tag, int64_t step, float value, double wall_time);
    void close();
    const std::filesystem::path& path() const { return path_; }

  private:
    std::filesystem::path path_;
    std::string buffer_;
    bool closed_ = false;
};

}  // namespace crucible
