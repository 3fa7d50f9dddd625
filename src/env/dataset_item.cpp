#include "env/dataset_item.h"

#include "core/error.h"
#include "core/json_fields.h"

namespace crucible {

using nlohmann::json;

const json* DatasetItem::rubric() const {
    for (const char* key : {"rubric", "rubrics", "checklist"}) {
        auto it = fields.find(key);
        if (it != fields.end() && !it->is_null()) return &*it;
    }
    return nullptr;
}

void parse_item_conversation(const json& line, const std::string& where, DatasetItem* item) {
    if (auto m = line.find("messages"); m != line.end()) {
        if (!m->is_array()) throw Error(where + ": field 'messages' must be an array");
        item->chat = true;
        for (size_t i = 0; i < m->size(); i++) {
            const std::string at = where + ": messages[" + std::to_string(i) + "]";
            const json& msg = (*m)[i];
            if (!msg.is_object()) throw Error(at + ": must be an object");
            ChatMessage cm{string_field(msg, "role", at), string_field(msg, "content", at)};
            item->messages.push_back(std::move(cm));
        }
    } else if (line.contains("prompt")) {
        item->prompt = string_field(line, "prompt", where);
        item->has_prompt = true;
    }
}

DatasetItem parse_dataset_item(json line, const std::string& where, int line_no) {
    DatasetItem item;
    item.line = line_no;
    parse_item_conversation(line, where, &item);
    if (auto it = line.find("id"); it != line.end())
        item.id = it->is_string() ? it->get<std::string>() : it->dump();
    item.answer_key = line.contains("answer") ? "answer" : "gold";
    if (auto it = line.find(item.answer_key); it != line.end() && !it->is_null())
        item.answer = it->is_string() ? it->get<std::string>() : it->dump();
    if (auto it = line.find("verifier"); it != line.end())
        item.verifier = string_field(line, "verifier", where);
    item.fields = std::move(line);
    return item;
}

}  // namespace crucible
