// `crucible tokenize`: text to ids (and back) with a tokenizer.json, one line at a time.
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "tokenizer/bpe_tokenizer.h"

namespace crucible::cli {

using nlohmann::json;

std::function<int()> add_tokenize(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand(
        "tokenize",
        "Encode stdin lines to JSON arrays of ids (or decode them) with a tokenizer.json");
    struct Options {
        std::string tokenizer;
        bool jsonl = false;
        bool decode = false;
    };
    auto opt = std::make_shared<Options>();
    cmd->add_option("--tokenizer", opt->tokenizer, "tokenizer.json or a folder holding one")
        ->required();
    cmd->add_flag("--jsonl", opt->jsonl,
                  "each input line is a JSON string (texts may hold newlines)");
    cmd->add_flag("--decode", opt->decode,
                  "read JSON arrays of ids, print each text as a JSON string");
    return [opt]() {
        const BpeTokenizer tok(opt->tokenizer);
        std::ios::sync_with_stdio(false);
        // stdin line by line, not core/jsonl (which reads a named file): the input is a
        // stream, and without --jsonl a line is plain text (blank lines count), not a record.
        std::string line;
        size_t line_no = 0;
        while (std::getline(std::cin, line)) {
            line_no++;
            const auto bad = [&](const std::string& expected, const std::string& why) {
                return Error("stdin line " + std::to_string(line_no) + ": expected " + expected +
                             (why.empty() ? "" : " (" + why + ")"));
            };
            if (opt->decode) {
                std::vector<int32_t> ids;
                try {
                    ids = json::parse(line).get<std::vector<int32_t>>();
                } catch (const json::exception& e) {
                    throw bad("a JSON array of integer ids", e.what());
                }
                std::cout
                    << json(tok.decode(ids)).dump(-1, ' ', false, json::error_handler_t::replace)
                    << '\n';
                continue;
            }
            std::string text;
            if (opt->jsonl) {
                try {
                    text = json::parse(line).get<std::string>();
                } catch (const json::exception& e) {
                    throw bad("a JSON string", e.what());
                }
            } else {
                text = std::move(line);
            }
            std::cout << json(tok.encode(text)).dump() << '\n';
        }
        std::cout.flush();
        return 0;
    };
}

}  // namespace crucible::cli
