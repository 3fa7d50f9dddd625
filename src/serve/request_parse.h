// The server's requests: an OpenAI /v1/completions or /v1/chat/completions JSON body turned
// into a typed generation request, every field checked with the message OpenAI's API gives
// (docs/SERVING.md lists the fields and the errors).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "tokenizer/text_tokenizer.h"

namespace crucible {

// An answer other than 200: OpenAI's error body {"error": {message, type, param, code}}.
struct ApiError {
    int status;
    std::string message;
    std::string param;  // the offending field; empty: null
    std::string type = "invalid_request_error";
    std::string code;  // empty: null
};

// What a request asks for, after validation.
struct ParsedRequest {
    bool chat = false;
    bool stream = false;
    bool include_usage = false;
    GenerationRequest gen;
    int top_logprobs = -1;  // -1: no logprobs; else alternatives per token
    // Tools (chat): the functions a completion's <tool_call> text may call, which then comes
    // back as `tool_calls` (serve/tool_calls.h); empty: no parsing (no tools, or tool_choice
    // "none"). tool_choice "required" or a named function ends the prompt with the opening
    // of a call, `tool_prefix`, which the completion's text continues.
    std::vector<std::string> tool_names;
    std::string tool_prefix;
    bool parallel_tool_calls = true;
    // OpenAI's end-user id; in an RL run it names the request's session when no X-Session-Id
    // header does (serve/rl_sessions.h).
    std::string user;
    // vLLM's extension: the answer carries the prompt's and each choice's token ids, so an
    // agent can continue a conversation token-exactly (not with stream).
    bool return_token_ids = false;
};

// The model a server serves, as requests are checked against it and answers are written.
struct ServedModel {
    std::string name;                    // the id clients send as "model"
    int vocab_size = 0;                  // config.json's: token ids in a prompt are below it
    int context = 0;                     // prompt + completion tokens fit in it
    std::vector<int32_t> stop_ids;       // end generation unless a request sets ignore_eos
    const TextTokenizer* tok = nullptr;  // encodes prompts and chats, decodes completions
    const Engine* engine = nullptr;      // its validate() has the last word on a request
};

// Parses and validates the body of a completions (`chat` false) or chat completions request
// for `model`. A request without a "seed" gets draw_seed()'s. Throws ApiError (400, naming
// the field) for a body that is not a JSON object, a missing or mistyped field, a value out
// of range, another model's name, a prompt that leaves no room in the context, and tools,
// tool messages or a response_format the server cannot honour.
ParsedRequest parse_request(const std::string& body, bool chat, const ServedModel& model,
                            const std::function<uint64_t()>& draw_seed);

}  // namespace crucible
