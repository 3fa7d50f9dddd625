// The server's answers as OpenAI's API writes them: error bodies, the model list, a whole
// completion, and the server-sent-event chunks of a stream, with usage and logprobs. The text
// of a sample ends before its first stop string; a stream holds back what may still change.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "serve/request_parse.h"

namespace crucible {

// The error body {"error": {message, type, param, code}} of `e`.
std::string format_error(const ApiError& e);
// The error body of an answer the HTTP layer gives (a 404, a 413, ...): its type from the
// status (429 rate_limit_exceeded, 5xx server_error, else invalid_request_error).
std::string format_http_error(int status, const std::string& message);
// GET /v1/models: the one served model.
std::string format_model_list(const ServedModel& model, int64_t created);
// GET /v1/models/{id}: the model object alone.
std::string format_model(const ServedModel& model, int64_t created);
// The answer to a request that did not stream: every sample's text (and logprobs when asked
// for) and usage. `id` is the response's id ("cmpl-…", "chatcmpl-…"). With return_token_ids,
// the token ids as vLLM gives them (chat: `prompt_token_ids` beside `choices`, each choice's
// `token_ids`; completions: both in each choice); a policy_version >= 0 (an RL run's server)
// is written as `policy_version`: the weights the answer was generated with.
std::string format_completion(const ServedModel& model, const ParsedRequest& request,
                              const std::vector<GeneratedSequence>& results, const std::string& id,
                              int64_t policy_version = -1);

// SSE lines that carry no chunk: a comment that keeps a quiet stream alive, and the end.
inline constexpr std::string_view kSseKeepAlive = ": keep-alive\n\n";
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// The text of one sample as its tokens arrive (response_write.cpp).
class SampleText;

// The chunks of one streamed response, each a whole "data: {...}\n\n" event. Holds the text
// of every sample so far; one writer per response, used by one thread. `model` and `request`
// must outlive it.
class SseWriter {
  public:
    // The response's "created" time is now.
    SseWriter(const ServedModel& model, const ParsedRequest& request, std::string id);
    ~SseWriter();
    SseWriter(const SseWriter&) = delete;
    SseWriter& operator=(const SseWriter&) = delete;

    // A chat stream's first chunk: every sample's assistant role and empty content.
    std::string format_role_chunk() const;
    // Sample `sample`'s next token as the engine drew it (`finish` non-empty on its last):
    // the chunk of the text that became safe to send, or "" when there is none to send. With
    // tools, the last token's chunks carry the sample's tool calls, one delta each, and
    // finish_reason "tool_calls" when the text held calls.
    std::string format_token_chunk(int sample, int32_t token, const std::string& finish);
    // Token `t` of a finished, re-scored sample, with its logprobs (a stream that asked for
    // logprobs sends its tokens only once every sample is done).
    std::string format_scored_chunk(int sample, const GeneratedSequence& g, size_t t);
    // The last chunk of a stream that asked for usage: no choices, the token counts.
    std::string format_usage_chunk(const std::vector<GeneratedSequence>& results) const;
    // An error event in place of the rest of the stream (the engine failed the request).
    static std::string format_failure(const std::string& message);

  private:
    using json_value = nlohmann::json;
    // The chunks of a sample's last piece: the piece and the finish, or with tool calls the
    // piece, each call, and the finish "tool_calls".
    std::string format_last(int sample, const std::string& piece, const std::string& finish,
                            json_value logprobs);

    const ServedModel& model_;
    const ParsedRequest& request_;
    std::string id_;
    int64_t created_;
    std::vector<SampleText> texts_;  // one per sample
};

}  // namespace crucible
