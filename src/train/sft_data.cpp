#include "train/sft_data.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_fields.h"
#include "core/jsonl.h"
#include "env/builtin.h"
#include "env/dataset_item.h"
#include "tokenizer/chat_template.h"

namespace crucible {

using nlohmann::json;

SftExample make_prompt_completion(const TextTokenizer& tok, const std::string& prompt,
                                  const std::string& completion) {
    SftExample ex;
    ex.prompt = prompt;
    ex.completion = completion;
    for (int32_t id : tok.encode(prompt)) {
        ex.tokens.push_back(id);
        ex.target.push_back(0);
    }
    for (int32_t id : tok.encode(completion)) {
        ex.tokens.push_back(id);
        ex.target.push_back(1);
    }
    ex.tokens.push_back(tok.eos);
    ex.target.push_back(1);
    return ex;
}

namespace {

SftExample make_chat(const TextTokenizer& tok, const std::vector<ChatMessage>& chat,
                     const std::string& where) {
    if (chat.empty()) throw Error(where + ": field 'messages' must be a non-empty array");
    bool has_assistant = false;
    for (const ChatMessage& m : chat) has_assistant |= m.role == "assistant";
    if (!has_assistant) throw Error(where + ": 'messages' has no assistant turn to train on");
    SftExample ex;
    for (const TextSegment& seg : render_chat(tok.chat, chat, false)) {
        for (int32_t id : tok.encode(seg.text)) {
            ex.tokens.push_back(id);
            ex.target.push_back(seg.train ? 1 : 0);
        }
    }
    return ex;
}

// "completion" as an array of pieces, each tokenized on its own (as an episode's turns and
// observations are): a string is trained on; {"text": str, "train": bool} says so itself (a
// tool's output in a multi-turn demonstration: in the sequence, not trained on).
SftExample make_segmented(const TextTokenizer& tok, const std::string& prompt, const json& pieces,
                          const std::string& where) {
    SftExample ex;
    ex.prompt = prompt;
    for (int32_t id : tok.encode(prompt)) {
        ex.tokens.push_back(id);
        ex.target.push_back(0);
    }
    for (size_t i = 0; i < pieces.size(); i++) {
        const std::string at = where + ": completion[" + std::to_string(i) + "]";
        const json& piece = pieces[i];
        std::string text;
        bool train = true;
        if (piece.is_string()) {
            text = piece.get<std::string>();
        } else if (piece.is_object()) {
            text = string_field(piece, "text", at);
            const auto t = piece.find("train");
            if (t == piece.end() || !t->is_boolean())
                throw Error(at + ": field 'train' must be true or false");
            train = t->get<bool>();
        } else {
            throw Error(at + ": must be a string or {\"text\": str, \"train\": bool}");
        }
        ex.completion += text;
        for (int32_t id : tok.encode(text)) {
            ex.tokens.push_back(id);
            ex.target.push_back(train ? 1 : 0);
        }
    }
    ex.tokens.push_back(tok.eos);
    ex.target.push_back(1);
    return ex;
}

}  // namespace

SftDataset load_sft_jsonl(const std::string& path, const TextTokenizer& tok, int max_seq_len) {
    SftDataset ds;
    for_each_jsonl_line(path, "dataset", [&](const JsonlLine& line) {
        const std::string where = line.where();
        const json j = parse_jsonl_object(line);
        DatasetItem item;  // the conversation only: SFT reads no answer or verifier
        parse_item_conversation(j, where, &item);
        SftExample ex;
        if (item.chat) {
            ex = make_chat(tok, item.messages, where);
        } else if (const auto c = j.find("completion"); c != j.end() && c->is_array()) {
            ex = make_segmented(tok, string_field(j, "prompt", where), *c, where);
        } else if (item.has_prompt || j.contains("completion")) {
            ex = make_prompt_completion(tok, string_field(j, "prompt", where),
                                        string_field(j, "completion", where));
        } else {
            throw Error(where + ": needs 'prompt' and 'completion', or 'messages'");
        }
        if ((int)ex.tokens.size() > max_seq_len + 1) {
            ex.tokens.resize(max_seq_len + 1);
            ex.target.resize(max_seq_len + 1);
            ds.truncated++;
        }
        if (count_targets(ex) == 0) {
            throw Error(where + ": nothing to train on (empty completion after truncation to " +
                        std::to_string(max_seq_len) + " tokens)");
        }
        ds.examples.push_back(std::move(ex));
    });
    if (ds.examples.empty()) throw Error(path + ": dataset has no examples");
    return ds;
}

SftDataset builtin_sft_dataset(const std::string& spec, bool eval_split, int n_train, int n_eval,
                               uint64_t seed, const TextTokenizer& tok) {
    SftDataset ds;
    std::string name;  // the built-in task (env/builtin.h) behind the spec
    // The names are RL's task.name values (env/builtin.h); builtin:countdown is the old name
    // of builtin:countdown_lite, kept for one release (RL's `countdown` is TinyZero's task).
    if (spec == "builtin:countdown_lite" || spec == "builtin:countdown") {
        name = "countdown_lite";
        ds.task = "countdown";
    } else if (spec == "builtin:addition") {
        name = "addition";
        ds.task = "addition";
    } else {
        throw Error("unknown built-in dataset '" + spec +
                    "' (known: builtin:countdown_lite, builtin:addition)");
    }
    const BuiltinSplits splits = builtin_task_items(name, n_train, n_eval, 3, seed);
    for (const DatasetItem& item : eval_split ? splits.eval : splits.train) {
        ds.examples.push_back(make_prompt_completion(tok, item.prompt, *item.answer));
    }
    return ds;
}

int64_t count_targets(const SftExample& ex) {
    int64_t n = 0;
    for (size_t i = 1; i < ex.target.size(); i++) n += ex.target[i];
    return n;
}

void pack_example(const SftExample& ex, float weight, PackedBatch* batch) {
    const size_t n = ex.tokens.size() - 1;
    std::vector<int32_t> inputs(ex.tokens.begin(), ex.tokens.begin() + n);
    std::vector<int32_t> next(ex.tokens.begin() + 1, ex.tokens.end());
    std::vector<float> w(n);
    for (size_t i = 0; i < n; i++) w[i] = ex.target[i + 1] ? weight : 0.0f;
    batch->add_sequence(inputs, next, w);
}

}  // namespace crucible
