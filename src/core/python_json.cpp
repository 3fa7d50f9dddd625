#include "core/python_json.h"

namespace crucible {

namespace {

void dump_into(const nlohmann::ordered_json& j, std::string& out) {
    if (j.is_object()) {
        out += '{';
        bool first = true;
        for (auto it = j.begin(); it != j.end(); ++it) {
            if (!first) out += ", ";
            first = false;
            out += nlohmann::ordered_json(it.key()).dump(-1, ' ', false,
                                                         nlohmann::json::error_handler_t::replace);
            out += ": ";
            dump_into(it.value(), out);
        }
        out += '}';
    } else if (j.is_array()) {
        out += '[';
        for (size_t i = 0; i < j.size(); i++) {
            if (i) out += ", ";
            dump_into(j[i], out);
        }
        out += ']';
    } else {
        // Scalars print as Python prints them: strings with the same escapes (\" \\ \n \r \t
        // \b \f, other control characters as \u00XX), true/false/null, integers as written.
        out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
}

}  // namespace

std::string python_json_dumps(const nlohmann::ordered_json& j) {
    std::string out;
    dump_into(j, out);
    return out;
}

}  // namespace crucible
