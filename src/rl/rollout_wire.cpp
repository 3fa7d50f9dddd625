#include "rl/rollout_wire.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace crucible::rl {

using nlohmann::json;

std::string rollouts_to_message(const std::vector<Rollout>& rollouts) {
    json all = json::array();
    for (const Rollout& r : rollouts) {
        json spans = json::array();
        for (const EpisodeSpan& s : r.spans) {
            spans.push_back({s.kind == EpisodeSpan::Kind::tool ? 1 : 0, s.begin, s.end});
        }
        json components = json::array();
        for (const auto& [name, v] : r.components) components.push_back({name, v});
        all.push_back({{"group", r.group},
                       {"item", r.item},
                       {"sample", r.sample},
                       {"prompt", r.prompt},
                       {"completion", r.completion},
                       {"text", r.text},
                       {"truncated", r.truncated},
                       {"model_mask", r.model_mask},
                       {"spans", spans},
                       {"turns", r.turns},
                       {"tool_calls", r.tool_calls},
                       {"malformed_calls", r.malformed_calls},
                       {"tool_errors", r.tool_errors},
                       {"end", r.end},
                       {"python", r.python},
                       {"python_error", r.python_error},
                       {"step_reward", r.step_reward},
                       {"has_step_reward", r.has_step_reward},
                       {"correct", r.correct ? json(*r.correct) : json(nullptr)},
                       {"components", components},
                       {"rubric", r.rubric},
                       {"rubric_error", r.rubric_error},
                       {"reward", r.reward},
                       {"valid", r.valid},
                       {"error", r.error}});
    }
    const std::vector<uint8_t> bytes = json::to_cbor(all);
    return std::string(bytes.begin(), bytes.end());
}

std::vector<Rollout> rollouts_from_message(const std::string& message) {
    std::vector<Rollout> out;
    try {
        for (const json& j : json::from_cbor(message)) {
            Rollout r;
            r.group = j.at("group").get<int>();
            r.item = j.at("item").get<size_t>();
            r.sample = j.at("sample").get<int>();
            r.prompt = j.at("prompt").get<std::vector<int32_t>>();
            r.completion = j.at("completion").get<std::vector<int32_t>>();
            r.text = j.at("text").get<std::string>();
            r.truncated = j.at("truncated").get<bool>();
            r.model_mask = j.at("model_mask").get<std::vector<uint8_t>>();
            for (const json& s : j.at("spans")) {
                r.spans.push_back(
                    {s[0].get<int>() == 1 ? EpisodeSpan::Kind::tool : EpisodeSpan::Kind::model,
                     s[1].get<size_t>(), s[2].get<size_t>()});
            }
            r.turns = j.at("turns").get<int>();
            r.tool_calls = j.at("tool_calls").get<int>();
            r.malformed_calls = j.at("malformed_calls").get<int>();
            r.tool_errors = j.at("tool_errors").get<int>();
            r.end = j.at("end").get<std::string>();
            r.python = j.at("python").get<double>();
            r.python_error = j.at("python_error").get<std::string>();
            r.step_reward = j.at("step_reward").get<double>();
            r.has_step_reward = j.at("has_step_reward").get<bool>();
            if (!j.at("correct").is_null()) r.correct = j.at("correct").get<double>();
            for (const json& c : j.at("components")) {
                r.components.emplace_back(c[0].get<std::string>(), c[1].get<double>());
            }
            r.rubric = j.at("rubric").get<double>();
            r.rubric_error = j.at("rubric_error").get<std::string>();
            r.reward = j.at("reward").get<double>();
            r.valid = j.at("valid").get<bool>();
            r.error = j.at("error").get<std::string>();
            out.push_back(std::move(r));
        }
    } catch (const json::exception& e) {
        throw Error(std::string("rl: a rollout message from another rank is malformed: ") +
                    e.what());
    }
    return out;
}

}  // namespace crucible::rl
