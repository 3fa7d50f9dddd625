// The environment API (env/environment.h) and token-exact episodes (rl/episodes.h): the
// calculator environment's steps (calls, answers, malformed calls, the turn limit), episodes
// run by a scripted policy whose every request and result the test checks against id
// sequences it assembles itself (prompt + generated + observation ids, never re-tokenized
// text), the token budget and the per-turn limit, and a one-turn environment that samples
// exactly as a plain engine request.
#include "env/environment.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"
#include "env/calculator.h"
#include "env/calculator_env.h"
#include "model_util.h"
#include "rl/episodes.h"
#include "tokenizer/byte_tokenizer.h"

namespace crucible {
namespace {

using env::CalculatorEnvironment;
using env::CalculatorEnvOptions;
using env::StepResult;
using env::Turn;
using rl::Episode;
using rl::EpisodeGroup;
using rl::EpisodeLimits;
using rl::EpisodeSpan;

constexpr int32_t kEos = 256;
// An id the scripted policy emits that encode() never produces (as a BPE merge or an added
// token would be): it decodes to "<tool_call>", which encode() spells as 11 byte ids. A
// conversation re-tokenized from text would lose it.
constexpr int32_t kCallToken = 300;

// Bytes as ids, eos 256, and kCallToken; encode() is plain bytes.
TextTokenizer test_tokenizer() {
    TextTokenizer tok;
    tok.encode = [](std::string_view text) {
        std::vector<int32_t> ids;
        for (unsigned char c : text) ids.push_back(c);
        return ids;
    };
    tok.decode = [](const std::vector<int32_t>& ids) {
        std::string text;
        for (int32_t id : ids) {
            if (id == kCallToken) {
                text += "<tool_call>";
            } else if (id == kEos) {
                text += "<|endoftext|>";
            } else {
                text += static_cast<char>(id);
            }
        }
        return text;
    };
    tok.eos = kEos;
    tok.vocab_size = 301;
    return tok;
}

std::vector<int32_t> bytes(const std::string& s) {
    std::vector<int32_t> ids;
    for (unsigned char c : s) ids.push_back(c);
    return ids;
}

std::vector<int32_t> cat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

Turn turn_of(const std::string& text, bool eos = false, bool truncated = false) {
    Turn t;
    t.text = text;
    t.ids = bytes(text);
    if (eos) t.ids.push_back(kEos);
    t.eos = eos;
    t.truncated = truncated;
    return t;
}

// The calculator environment with a verdict that records the text it was given and pays 1
// for "<answer>5</answer>" anywhere in it.
struct Calc {
    std::string scored;
    std::shared_ptr<CalculatorEnvironment> env;
    explicit Calc(int max_turns = 4, std::vector<std::string> task_stops = {}) {
        env = std::make_shared<CalculatorEnvironment>(
            CalculatorEnvOptions{max_turns},
            [this](const std::string& text) {
                scored = text;
                return env::Verdict{
                    text.find("<answer>5</answer>") != std::string::npos ? 1.0 : 0.0, 0.0};
            },
            std::move(task_stops));
    }
};

std::string call(const std::string& expression) {
    return "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"" + expression +
           "\"}}</tool_call>";
}

env::Item item_of(const std::string& prompt) {
    env::Item item;
    item.id.assign(1, 'q');  // not = "q": GCC 12's -Wrestrict misfires
    item.prompt = prompt;
    item.prompt_ids = bytes(prompt);
    return item;
}

TEST(CalculatorEnvironment, RunsACallAndShowsItsResult) {
    Calc c;
    const env::Prompt p = c.env->reset(item_of("Q: 2+3?"));
    EXPECT_EQ(p.text, "Q: 2+3?");
    EXPECT_EQ(p.ids, bytes("Q: 2+3?"));
    const StepResult r = c.env->step(turn_of(std::string("Let me compute. ") += call("2+3")));
    EXPECT_FALSE(r.done);
    ASSERT_TRUE(r.observation.has_value());
    // The Hermes tool response, hand-written: newline, tag, the calculator's value, tag.
    EXPECT_EQ(*r.observation, "\n<tool_response>\n5\n</tool_response>\n");
    EXPECT_EQ(r.info["tool"], "calculator");
    EXPECT_EQ(r.info["expression"], "2+3");
    EXPECT_FALSE(r.info.contains("malformed"));
    // Exact arithmetic reaches the model: 1/3 + 1/6 = 1/2.
    EXPECT_EQ(*c.env->step(turn_of(call("1/3+1/6"))).observation,
              "\n<tool_response>\n1/2 (0.5)\n</tool_response>\n");
}

TEST(CalculatorEnvironment, AnAnswerEndsTheEpisodeAndIsScoredOnTheLastTurn) {
    Calc c;
    c.env->reset(item_of("Q"));
    c.env->step(turn_of(call("2+3")));
    const StepResult r = c.env->step(turn_of("so <answer>5</answer>"));
    EXPECT_TRUE(r.done);
    EXPECT_FALSE(r.observation.has_value());
    EXPECT_EQ(r.info["end"], "answer");
    EXPECT_EQ(c.env->score().correct, 1.0);
    EXPECT_EQ(c.scored, "so <answer>5</answer>");
    // An answer before a call ends the episode; a call before an answer runs.
    c.env->reset(item_of("Q"));
    EXPECT_TRUE(c.env->step(turn_of(std::string("<answer>5</answer> ") += call("1+1"))).done);
    c.env->reset(item_of("Q"));
    const StepResult later = c.env->step(turn_of(call("1+1") + " <answer>2</answer>"));
    EXPECT_FALSE(later.done);
    EXPECT_EQ(*later.observation, "\n<tool_response>\n2\n</tool_response>\n");
    // A turn with neither ends it too (the model's final word), as do eos and a cut turn.
    c.env->reset(item_of("Q"));
    const StepResult plain = c.env->step(turn_of("5"));
    EXPECT_TRUE(plain.done);
    EXPECT_EQ(plain.info["end"], "no_call");
    EXPECT_EQ(c.env->score().correct, 0.0);
    c.env->reset(item_of("Q"));
    EXPECT_EQ(c.env->step(turn_of(call("1+1"), true)).info["end"], "eos");
    c.env->reset(item_of("Q"));
    EXPECT_EQ(c.env->step(turn_of("<tool_call>{\"name\": \"calc", false, true)).info["end"],
              "truncated");
}

TEST(CalculatorEnvironment, MalformedCallsGetAnObservationNotACrash) {
    Calc c;
    c.env->reset(item_of("Q"));
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": }}</tool_call>",
         "bad JSON in <tool_call>"},
        {"<tool_call>{\"name\": \"python\", \"arguments\": {}}</tool_call>",
         "unknown tool \"python\" (tools: calculator)"},
        {"<tool_call>{\"name\": \"calculator\", \"arguments\": {}}</tool_call>",
         "missing \"expression\""},
        {"<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": 7}}</tool_call>",
         "\"expression\" must be a string"},
        {"</tool_call>", "</tool_call> without <tool_call>"},
        {"<tool_call><tool_call>{}</tool_call>", "nested <tool_call> tag"},
    };
    for (const auto& [text, reason] : cases) {
        const StepResult r = c.env->step(turn_of(text));
        EXPECT_FALSE(r.done) << text;
        ASSERT_TRUE(r.observation.has_value()) << text;
        EXPECT_EQ(r.observation->rfind("\n<tool_response>\nerror: malformed tool call: ", 0), 0u)
            << *r.observation;
        EXPECT_NE(r.observation->find(reason), std::string::npos) << *r.observation;
        ASSERT_TRUE(r.info.contains("malformed")) << text;
        EXPECT_NE(r.info["malformed"].get<std::string>().find(reason), std::string::npos);
        EXPECT_FALSE(r.info.contains("tool"));
        c.env->reset(item_of("Q"));
    }
    // A calculator error is a tool result, not a malformed call.
    const StepResult div = c.env->step(turn_of(call("1/0")));
    EXPECT_EQ(*div.observation, "\n<tool_response>\nerror: division by zero\n</tool_response>\n");
    EXPECT_FALSE(div.info.contains("malformed"));
}

TEST(CalculatorEnvironment, TheTurnLimitEndsTheEpisodeWithoutRunningTheCall) {
    Calc c(2);
    c.env->reset(item_of("Q"));
    EXPECT_FALSE(c.env->step(turn_of(call("1+1"))).done);
    const StepResult r = c.env->step(turn_of(call("2+2")));
    EXPECT_TRUE(r.done);
    EXPECT_FALSE(r.observation.has_value());
    EXPECT_EQ(r.info["end"], "max_turns");
    // reset starts the count again
    c.env->reset(item_of("Q"));
    EXPECT_FALSE(c.env->step(turn_of(call("1+1"))).done);
}

TEST(CalculatorEnvironment, StopStringsAreTheToolTagTheAnswerTagAndTheTasks) {
    Calc c(4, {"</answer>", "###"});
    EXPECT_EQ(c.env->stop_strings(),
              (std::vector<std::string>{"</tool_call>", "</answer>", "###"}));
}

TEST(OneTurnEnvironment, ThePromptThenOneStepScoredByTheTask) {
    std::string scored;
    env::OneTurnEnvironment e(
        [&](const std::string& text) {
            scored = text;
            return env::Verdict{1.0, 0.25};
        },
        {"</answer>"});
    const env::Item item = item_of("Q: 1+1=");
    const env::Prompt p = e.reset(item);
    EXPECT_EQ(p.ids, item.prompt_ids);
    const StepResult r = e.step(turn_of(call("1+1")));  // a call is just text here
    EXPECT_TRUE(r.done);
    EXPECT_FALSE(r.observation.has_value());
    const env::Verdict v = e.score();
    EXPECT_EQ(v.correct, 1.0);
    EXPECT_EQ(v.format, 0.25);
    EXPECT_EQ(scored, call("1+1"));
    EXPECT_EQ(e.stop_strings(), std::vector<std::string>{"</answer>"});
}

// ---- episodes -----------------------------------------------------------------------------

// A scripted policy: `script(prompt_ids, sample)` gives the ids a sample would write next; the
// generator cuts them as the engine does (a stop id, a stop string in the decoded output, then
// max_tokens) and records every request.
struct Scripted {
    TextTokenizer tok = test_tokenizer();
    std::function<std::vector<int32_t>(const std::vector<int32_t>&, int)> script;
    std::vector<GenerationRequest> requests;

    GeneratedSequence cut(const std::vector<int32_t>& want, const SamplingParams& p) const {
        GeneratedSequence g;
        g.finish_reason = "length";
        for (int32_t id : want) {
            if ((int)g.tokens.size() >= p.max_tokens) return g;
            g.tokens.push_back(id);
            bool stop = std::find(p.stop_ids.begin(), p.stop_ids.end(), id) != p.stop_ids.end();
            const std::string text = tok.decode(g.tokens);
            for (const std::string& s : p.stop_strings)
                stop = stop || text.find(s) != std::string::npos;
            if (stop) {
                g.finish_reason = "stop";
                return g;
            }
        }
        if ((int)g.tokens.size() < p.max_tokens) ADD_FAILURE() << "the script ran out of ids";
        return g;
    }

    rl::Generator generator() {
        return
            [this](
                const std::vector<GenerationRequest>& reqs,
                const std::function<void(size_t, const std::vector<GeneratedSequence>&)>& on_done) {
                std::vector<std::vector<GeneratedSequence>> out;
                for (size_t r = 0; r < reqs.size(); r++) {
                    requests.push_back(reqs[r]);
                    std::vector<GeneratedSequence> samples;
                    for (int s = 0; s < reqs[r].n; s++)
                        samples.push_back(cut(script(reqs[r].prompt, s), reqs[r].params));
                    if (on_done) on_done(r, samples);
                    out.push_back(std::move(samples));
                }
                return out;
            };
    }
};

bool ends_with(const std::vector<int32_t>& ids, const std::string& suffix) {
    const std::vector<int32_t> s = bytes(suffix);
    return ids.size() >= s.size() && std::equal(s.rbegin(), s.rend(), ids.rbegin());
}

EpisodeGroup calc_group(const env::Item& item, int n, int max_turns, std::vector<Calc>* keep) {
    EpisodeGroup g;
    g.item = &item;
    for (int s = 0; s < n; s++) {
        keep->emplace_back(max_turns);
        g.envs.push_back(keep->back().env);
    }
    g.params.seed = 77;
    g.params.stop_ids = {kEos};
    return g;
}

TEST(Episodes, TheSequenceIsPromptPlusGeneratedPlusObservationIdsExactly) {
    Scripted policy;
    // Turn 1: the call token (which re-tokenizing its text would split), then the call's bytes.
    const std::vector<int32_t> turn1 = cat(
        {kCallToken},
        bytes("{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2+3\"}}</tool_call>"));
    // Turn 2 stops at "</answer>" (a stop string): the eos and what follows are never taken.
    const std::vector<int32_t> turn2 = bytes("<answer>5</answer>");
    policy.script = [&](const std::vector<int32_t>& prompt, int) {
        return ends_with(prompt, "</tool_response>\n") ? cat(cat(turn2, {kEos}), bytes("junk"))
                                                       : cat(turn1, bytes("junk"));
    };
    const env::Item item = item_of("Q: 2+3?\n");
    std::vector<Calc> calcs;
    calcs.reserve(2);
    std::vector<EpisodeGroup> groups = {calc_group(item, 2, 4, &calcs)};
    const auto episodes =
        rl::run_episodes(groups, policy.generator(), policy.tok, EpisodeLimits{200, 0});
    const std::vector<int32_t> obs = bytes("\n<tool_response>\n5\n</tool_response>\n");
    const std::vector<int32_t> expected_completion = cat(cat(turn1, obs), turn2);
    ASSERT_EQ(episodes.size(), 1u);
    ASSERT_EQ(episodes[0].size(), 2u);
    for (const Episode& e : episodes[0]) {
        EXPECT_EQ(e.completion, expected_completion);
        EXPECT_EQ(cat(item.prompt_ids, e.completion),
                  cat(cat(cat(bytes("Q: 2+3?\n"), turn1), obs), turn2));
        ASSERT_EQ(e.spans.size(), 3u);
        EXPECT_EQ(e.spans[0].kind, EpisodeSpan::Kind::model);
        EXPECT_EQ(e.spans[0].end, turn1.size());
        EXPECT_EQ(e.spans[1].kind, EpisodeSpan::Kind::tool);
        EXPECT_EQ(e.spans[1].end, turn1.size() + obs.size());
        EXPECT_EQ(e.spans[2].kind, EpisodeSpan::Kind::model);
        EXPECT_EQ(e.spans[2].end, expected_completion.size());
        std::vector<uint8_t> mask(expected_completion.size(), 1);
        std::fill(mask.begin() + turn1.size(), mask.begin() + turn1.size() + obs.size(), 0);
        EXPECT_EQ(e.model_mask(), mask);
        EXPECT_EQ(e.turns, 2);
        EXPECT_EQ(e.tool_calls, 1);
        EXPECT_EQ(e.malformed_calls, 0);
        EXPECT_FALSE(e.truncated);
        EXPECT_EQ(e.end, "answer");
        EXPECT_EQ(e.env->score().correct, 1.0);
    }
    // The requests: one for the group's first turns (n = 2, from the prompt's ids), then one per
    // episode continuing from prompt + turn 1 + observation ids, with its own seed.
    ASSERT_EQ(policy.requests.size(), 3u);
    EXPECT_EQ(policy.requests[0].prompt, item.prompt_ids);
    EXPECT_EQ(policy.requests[0].n, 2);
    EXPECT_EQ(policy.requests[0].params.seed, 77u);
    EXPECT_EQ(policy.requests[0].params.stop_strings,
              (std::vector<std::string>{"</tool_call>", "</answer>"}));
    for (int s = 0; s < 2; s++) {
        const GenerationRequest& r = policy.requests[1 + s];
        EXPECT_EQ(r.prompt, cat(cat(item.prompt_ids, turn1), obs));
        EXPECT_EQ(r.n, 1);
        EXPECT_EQ(r.params.seed, Rng::mix(Rng::mix(77, s), 1));
        EXPECT_EQ(r.params.max_tokens, 200 - (int)(turn1.size() + obs.size()));
    }
}

TEST(Episodes, MalformedCallsAreObservedAndCounted) {
    Scripted policy;
    policy.script = [&](const std::vector<int32_t>& prompt, int) {
        const std::string text = policy.tok.decode(prompt);
        if (text.find("malformed") == std::string::npos)
            return bytes("<tool_call>{oops}</tool_call>");
        return cat(bytes("<answer>5</answer>"), {kEos});
    };
    const env::Item item = item_of("Q\n");
    std::vector<Calc> calcs;
    calcs.reserve(1);
    std::vector<EpisodeGroup> groups = {calc_group(item, 1, 4, &calcs)};
    const auto episodes =
        rl::run_episodes(groups, policy.generator(), policy.tok, EpisodeLimits{400, 0});
    const Episode& e = episodes[0][0];
    EXPECT_EQ(e.malformed_calls, 1);
    EXPECT_EQ(e.tool_calls, 0);
    EXPECT_EQ(e.turns, 2);
    const std::string obs = policy.tok.decode(std::vector<int32_t>(
        e.completion.begin() + e.spans[1].begin, e.completion.begin() + e.spans[1].end));
    EXPECT_EQ(obs.rfind("\n<tool_response>\nerror: malformed tool call: bad JSON", 0), 0u) << obs;
}

TEST(Episodes, TheTurnLimitEndsTheEpisodeUntruncated) {
    Scripted policy;
    policy.script = [&](const std::vector<int32_t>&, int) { return bytes(call("1+1")); };
    const env::Item item = item_of("Q\n");
    std::vector<Calc> calcs;
    calcs.reserve(1);
    std::vector<EpisodeGroup> groups = {calc_group(item, 1, 3, &calcs)};
    const auto episodes =
        rl::run_episodes(groups, policy.generator(), policy.tok, EpisodeLimits{1000, 0});
    const Episode& e = episodes[0][0];
    EXPECT_EQ(e.turns, 3);
    EXPECT_EQ(e.tool_calls, 2);
    EXPECT_EQ(e.end, "max_turns");
    EXPECT_FALSE(e.truncated);
    const std::vector<int32_t> c = bytes(call("1+1"));
    const std::vector<int32_t> obs = bytes("\n<tool_response>\n2\n</tool_response>\n");
    EXPECT_EQ(e.completion, cat(cat(cat(cat(c, obs), c), obs), c));
    EXPECT_EQ(policy.requests.size(), 3u);
}

TEST(Episodes, TheBudgetCutsAnObservationAndEndsTruncated) {
    Scripted policy;
    policy.script = [&](const std::vector<int32_t>&, int) { return bytes(call("1+1")); };
    const std::vector<int32_t> c = bytes(call("1+1"));
    const std::vector<int32_t> obs = bytes("\n<tool_response>\n2\n</tool_response>\n");
    const env::Item item = item_of("Q\n");
    // Room for the call and 5 ids of its observation.
    {
        std::vector<Calc> calcs;
        calcs.reserve(1);
        std::vector<EpisodeGroup> groups = {calc_group(item, 1, 4, &calcs)};
        const int budget = static_cast<int>(c.size()) + 5;
        const auto episodes =
            rl::run_episodes(groups, policy.generator(), policy.tok, EpisodeLimits{budget, 0});
        const Episode& e = episodes[0][0];
        EXPECT_TRUE(e.truncated);
        EXPECT_EQ(e.end, "budget");
        EXPECT_EQ(e.completion, cat(c, std::vector<int32_t>(obs.begin(), obs.begin() + 5)));
        EXPECT_EQ(e.spans.back().kind, EpisodeSpan::Kind::tool);
    }
    // Room for the call, its observation and 7 more ids: the second call is cut at 7.
    {
        policy.requests.clear();
        std::vector<Calc> calcs;
        calcs.reserve(1);
        std::vector<EpisodeGroup> groups = {calc_group(item, 1, 4, &calcs)};
        const int budget = static_cast<int>(c.size() + obs.size()) + 7;
        const auto episodes =
            rl::run_episodes(groups, policy.generator(), policy.tok, EpisodeLimits{budget, 0});
        const Episode& e = episodes[0][0];
        EXPECT_TRUE(e.truncated);
        EXPECT_EQ(e.end, "truncated");
        EXPECT_EQ(e.completion, cat(cat(c, obs), std::vector<int32_t>(c.begin(), c.begin() + 7)));
        EXPECT_EQ((int)e.completion.size(), budget);
        ASSERT_EQ(policy.requests.size(), 2u);
        EXPECT_EQ(policy.requests[1].params.max_tokens, 7);
    }
}

TEST(Episodes, ALongObservationIsCutInTheMiddle) {
    const TextTokenizer tok = test_tokenizer();
    const std::vector<int32_t> ten = bytes("0123456789");
    EXPECT_EQ(rl::cut_observation(ten, 10, tok), ten);  // fits: unchanged
    EXPECT_EQ(rl::cut_observation(ten, 0, tok), ten);   // 0: not cut
    // 100 ids cut to 40: the marker "\n...[K tokens cut]...\n" is 23 bytes for a two-digit K
    // (1 + 3 + 1 + 2 + 11 + 1 + 3 + 1), so 17 ids are kept, 9 from the head and 8 from the tail,
    // and K = 83.
    std::string long_text;
    for (int i = 0; i < 100; i++) long_text += static_cast<char>('a' + i % 26);
    const std::vector<int32_t> cut = rl::cut_observation(bytes(long_text), 40, tok);
    EXPECT_EQ(cut,
              bytes(long_text.substr(0, 9) + "\n...[83 tokens cut]...\n" + long_text.substr(92)));
    EXPECT_EQ(cut.size(), 40u);
    // Too small for a marker: the head alone.
    EXPECT_EQ(rl::cut_observation(bytes(long_text), 5, tok), bytes(long_text.substr(0, 5)));
    // In an episode: the calculator's observation cut to 12 ids, the turn after it continues
    // from the cut ids.
    Scripted policy;
    int turn = 0;
    policy.script = [&](const std::vector<int32_t>&, int) {
        return bytes(turn++ == 0 ? call("123456789*987654321") : "<answer>1</answer>");
    };
    std::vector<Calc> calcs;
    calcs.reserve(1);
    const env::Item item = item_of("Q\n");
    std::vector<EpisodeGroup> groups = {calc_group(item, 1, 4, &calcs)};
    EpisodeLimits limits{400, 0};
    limits.max_observation_tokens = 40;
    const auto episodes = rl::run_episodes(groups, policy.generator(), policy.tok, limits);
    const Episode& e = episodes[0][0];
    ASSERT_EQ(e.spans.size(), 3u);
    const std::string full = "\n<tool_response>\n121932631112635269\n</tool_response>\n";
    const std::vector<int32_t> expected = rl::cut_observation(bytes(full), 40, policy.tok);
    EXPECT_EQ(std::vector<int32_t>(e.completion.begin() + e.spans[1].begin,
                                   e.completion.begin() + e.spans[1].end),
              expected);
    EXPECT_EQ(expected.size(), 40u);
    EXPECT_LT(expected.size(), full.size());
}

TEST(Episodes, TheContextLimitEndsAnEpisodeAsTheBudgetDoes) {
    Scripted policy;
    policy.script = [&](const std::vector<int32_t>&, int) { return bytes(call("1+1")); };
    const std::vector<int32_t> c = bytes(call("1+1"));
    const env::Item item = item_of("Q\n");  // 2 prompt ids
    std::vector<Calc> calcs;
    calcs.reserve(1);
    std::vector<EpisodeGroup> groups = {calc_group(item, 1, 4, &calcs)};
    EpisodeLimits limits{1000, 0};
    limits.max_context = 2 + static_cast<int>(c.size()) + 5;  // the call and 5 observation ids
    const auto episodes = rl::run_episodes(groups, policy.generator(), policy.tok, limits);
    const Episode& e = episodes[0][0];
    EXPECT_TRUE(e.truncated);
    EXPECT_EQ(e.end, "budget");
    EXPECT_EQ(static_cast<int>(e.completion.size()) + 2, limits.max_context);
    // A prompt that leaves no room is refused by name.
    limits.max_context = 2;
    std::vector<Calc> more;
    more.reserve(1);
    std::vector<EpisodeGroup> again = {calc_group(item, 1, 4, &more)};
    EXPECT_THROW(rl::run_episodes(again, policy.generator(), policy.tok, limits), Error);
}

TEST(Episodes, TheTurnLimitOfTokensCutsATurn) {
    Scripted policy;
    policy.script = [&](const std::vector<int32_t>&, int) { return bytes(call("1+1")); };
    const env::Item item = item_of("Q\n");
    std::vector<Calc> calcs;
    calcs.reserve(1);
    std::vector<EpisodeGroup> groups = {calc_group(item, 1, 4, &calcs)};
    const auto episodes =
        rl::run_episodes(groups, policy.generator(), policy.tok, EpisodeLimits{1000, 10});
    const Episode& e = episodes[0][0];
    const std::vector<int32_t> c = bytes(call("1+1"));
    EXPECT_TRUE(e.truncated);
    EXPECT_EQ(e.turns, 1);
    EXPECT_EQ(e.completion, std::vector<int32_t>(c.begin(), c.begin() + 10));
    EXPECT_EQ(policy.requests[0].params.max_tokens, 10);
}

std::string obs_text(int k) {
    std::string text = "\n[obs ";
    text += std::to_string(k);
    text += "]\n";
    return text;
}

// An environment that answers every turn with "\n[obs K]\n" and ends the episode at its third
// turn or at end-of-sequence.
class CountingEnvironment : public env::Environment {
  public:
    env::Prompt reset(const env::Item& item) override {
        turns_ = 0;
        return {item.prompt, item.prompt_ids};
    }
    StepResult step(const Turn& turn) override {
        StepResult r;
        r.done = ++turns_ == 3 || turn.eos;
        if (!r.done) r.observation = obs_text(turns_);
        return r;
    }
    env::Verdict score() override { return {}; }
    std::vector<std::string> stop_strings() const override { return {}; }

  private:
    int turns_ = 0;
};

// With the real engine: each turn is sampled from the whole id sequence so far. The test
// replays every episode with plain engine requests it builds itself (the prompt with n = 2
// and the group's seed, then prompt + ids so far with the turn's seed), and the episodes
// must be exactly those ids.
TEST(Episodes, WithTheEngineEachTurnContinuesFromTheWholeIdSequence) {
    const ModelConfig c = testutil::tiny_gqa_config();
    Model model(c);
    model.init_random(8);
    const TextTokenizer tok = TextTokenizer(ByteTokenizer());
    const env::Item item = item_of("Q:");
    EpisodeGroup g;
    g.item = &item;
    for (int s = 0; s < 2; s++) g.envs.push_back(std::make_shared<CountingEnvironment>());
    g.params.seed = 4321;
    g.params.stop_ids = {tok.eos};
    std::vector<EpisodeGroup> groups = {g};
    const int budget = 60, per_turn = 5;
    const auto episodes = rl::run_episodes(groups, rl::engine_generator(model, tok), tok,
                                           EpisodeLimits{budget, per_turn});

    EngineOptions options;
    options.detokenize = tok.decode;
    GenerationRequest first;
    first.prompt = item.prompt_ids;
    first.params = g.params;
    first.params.max_tokens = per_turn;
    first.n = 2;
    const auto firsts = Engine(model, options).generate({first});
    int multi_turn = 0;
    for (int s = 0; s < 2; s++) {
        std::vector<int32_t> expected = firsts[0][s].tokens;
        for (int turn = 1; turn < 3 && expected.back() != tok.eos; turn++) {
            expected = cat(expected, bytes(obs_text(turn)));
            GenerationRequest next;
            next.prompt = cat(item.prompt_ids, expected);
            next.params = g.params;
            next.params.seed = Rng::mix(Rng::mix(4321, s), turn);
            next.params.max_tokens = std::min(per_turn, budget - (int)expected.size());
            expected = cat(expected, Engine(model, options).generate({next})[0][0].tokens);
            multi_turn++;
        }
        EXPECT_EQ(episodes[0][s].completion, expected) << "episode " << s;
    }
    EXPECT_GT(multi_turn, 0) << "no episode reached a second turn: the check checked nothing";
}

// A one-turn environment's episodes are the engine's samples of the plain request (the RL
// trainer's rollouts before environments): same prompt, seed, n, limits and stop strings.
TEST(Episodes, AOneTurnEnvironmentSamplesExactlyAsAPlainRequest) {
    const ModelConfig c = testutil::tiny_gqa_config();
    Model model(c);
    model.init_random(5);
    const TextTokenizer tok = TextTokenizer(ByteTokenizer());
    const env::Item item = item_of("Q: 12+7=");
    const std::vector<std::string> stops = {"9"};
    EpisodeGroup g;
    g.item = &item;
    for (int s = 0; s < 6; s++) {
        g.envs.push_back(std::make_shared<env::OneTurnEnvironment>(
            [](const std::string&) { return env::Verdict{}; }, stops));
    }
    g.params.temperature = 1.0f;
    g.params.seed = 1234;
    g.params.stop_ids = {tok.eos};
    std::vector<EpisodeGroup> groups = {g};
    const auto episodes =
        rl::run_episodes(groups, rl::engine_generator(model, tok), tok, EpisodeLimits{12, 0});

    GenerationRequest plain;
    plain.prompt = item.prompt_ids;
    plain.params = g.params;
    plain.params.max_tokens = 12;
    plain.params.stop_strings = stops;
    plain.n = 6;
    EngineOptions options;
    options.detokenize = tok.decode;
    Engine engine(model, options);
    const auto outs = engine.generate({plain});
    for (int s = 0; s < 6; s++) {
        EXPECT_EQ(episodes[0][s].completion, outs[0][s].tokens) << s;
        EXPECT_EQ(episodes[0][s].truncated, outs[0][s].finish_reason == "length") << s;
        EXPECT_TRUE(episodes[0][s].model_mask().empty());
        EXPECT_EQ(episodes[0][s].turns, 1);
    }
}

}  // namespace
}  // namespace crucible
