// One item of a JSONL dataset, as eval, RL and SFT read it: the conversation (a "prompt" or
// chat "messages"), the gold answer ("answer", else "gold"), the verifier, and the whole line
// for what each caller reads on top (a rubric, which reward parses; a cluster column; SFT's
// "completion"). The fields are read here once; each caller keeps its own rules on top (which
// fields it requires, which it rejects) and its own errors for them.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/chat_message.h"

namespace crucible {

struct DatasetItem {
    int line = 0;  // 1-based line in its file; 0 for generated items
    // The "id" field: a string as it is, any other value as JSON writes it.
    std::optional<std::string> id;
    // The conversation: chat messages when the line has "messages" (which wins over a
    // "prompt"), else the raw "prompt" (has_prompt false when the line has neither).
    bool chat = false;
    std::vector<ChatMessage> messages;
    bool has_prompt = false;
    std::string prompt;
    // "answer", else "gold" (`answer_key` says which the line names, for errors): a string as
    // it is, any other value as JSON writes it; none when absent or null.
    std::string answer_key = "answer";
    std::optional<std::string> answer;
    std::optional<std::string> verifier;  // "verifier"
    nlohmann::json fields;                // the whole line: rubric, metadata, extra columns

    // The rubric under any of the names the rubric format accepts ("rubric", "rubrics",
    // "checklist"; the first that is not null), else null.
    const nlohmann::json* rubric() const;
};

// Reads the conversation of `line` into `item`. "messages" must be an array (it may be empty:
// callers that need a turn say so) whose entries are objects with string "role" and "content";
// else "prompt", when present, must be a string. Throws Error("WHERE: ...") naming the field
// ("WHERE: messages[2]: missing field 'role'").
void parse_item_conversation(const nlohmann::json& line, const std::string& where,
                             DatasetItem* item);

// The item of one JSON object line: its conversation (parse_item_conversation, whose errors
// it throws), id, answer and verifier, and `fields` = `line`. Throws
// Error("WHERE: field 'verifier' must be a string") for a verifier of another type.
DatasetItem parse_dataset_item(nlohmann::json line, const std::string& where, int line_no);

}  // namespace crucible
