// The benchmarks' `--json`: alone, one JSON object on stdout instead of the table (what the
// scripts under bench/ read); `--json FILE`, the table as usual and the object written to
// FILE, as `compare --json FILE` and `evolve export --json FILE` do (docs/CLI.md).
#pragma once

#include <CLI/CLI.hpp>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "core/file_io.h"

namespace crucible {

struct JsonOutput {
    bool to_stdout = false;                    // --json alone
    std::string file;                          // --json FILE
    bool table() const { return !to_stdout; }  // print the human-readable table
    void write(const nlohmann::json& j) const {
        if (to_stdout) std::cout << j.dump(2) << "\n";
        if (!file.empty()) write_file_durable(file, j.dump(2) + "\n");
    }
};

inline void add_json_option(CLI::App* cmd, JsonOutput* out) {
    cmd->add_option_function<std::string>(
           "--json",
           [out](const std::string& v) {
               if (v.empty()) {
                   out->to_stdout = true;
               } else {
                   out->file = v;
               }
           },
           "alone: print one JSON object instead of the table; with FILE: also write it there")
        ->expected(0, 1)
        ->type_name("[FILE]");
}

}  // namespace crucible
