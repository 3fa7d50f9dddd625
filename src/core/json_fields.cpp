#include "core/json_fields.h"

#include <cmath>

#include "core/error.h"

namespace crucible {

const std::string& string_field(const nlohmann::json& obj, const char* key,
                                const std::string& where) {
    const auto it = obj.find(key);
    if (it == obj.end()) throw Error(where + ": missing field '" + key + "'");
    if (!it->is_string())
        throw Error(where + ": field '" + key + "' must be a string, got " + it->type_name());
    return it->get_ref<const std::string&>();
}

std::string string_or(const nlohmann::json& j, const char* key, const std::string& fallback) {
    if (!j.is_object()) return fallback;
    const auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

nlohmann::json number_or_null(double x) {
    return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr);
}

}  // namespace crucible
