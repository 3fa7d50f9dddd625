#include "demo/search_kb.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/rng.h"

namespace crucible::rl {

namespace {

const char* const kSyllables[] = {"ra", "quo", "ka", "mi", "be",  "lo",  "su",  "ta",  "ne",  "thi",
                                  "va", "ko",  "zu", "pe", "lan", "dor", "fi",  "ga",  "ri",  "mo",
                                  "xe", "tu",  "sa", "no", "we",  "ya",  "bri", "cal", "den", "jo"};
const char* const kColors[] = {"red",  "blue", "green", "teal", "amber",
                               "plum", "gray", "gold",  "pink", "white"};
const char* const kCities[] = {"Thafe",  "Quorin", "Vasko", "Melor",  "Drune",  "Ostra", "Palim",
                               "Kesh",   "Ulvar",  "Brisk", "Zoltan", "Ferun",  "Hobbe", "Irvak",
                               "Jastel", "Lumen",  "Nessa", "Rovan",  "Sorrel", "Tavik"};
constexpr int kMaxNumber = 99;

template <size_t N>
const char* pick(const char* const (&values)[N], Rng& rng) {
    return values[rng.below(N)];
}

}  // namespace

SearchKb make_search_kb(int entities, uint64_t seed, double sft_share, double rl_share) {
    if (entities < 3 || entities > 20000)
        throw Error("search demo: entities must be in [3, 20000], got " + std::to_string(entities));
    Rng rng(Rng::mix(seed, 0x5EA7C4));
    std::set<std::string> taken(std::begin(kCities), std::end(kCities));
    for (const char* c : kColors) taken.insert(c);
    SearchKb kb;
    while (static_cast<int>(kb.entities.size()) < entities) {
        const int syllables = 2 + static_cast<int>(rng.below(2));
        std::string name;
        for (int s = 0; s < syllables; s++) name += pick(kSyllables, rng);
        name[0] = static_cast<char>(name[0] - 'a' + 'A');
        if (!taken.insert(name).second) continue;
        KbEntity e;
        char id[16];
        std::snprintf(id, sizeof id, "e%04d", static_cast<int>(kb.entities.size()));
        e.id = id;
        e.name = std::move(name);
        e.color = pick(kColors, rng);
        e.city = pick(kCities, rng);
        e.number = 1 + static_cast<int>(rng.below(kMaxNumber));
        kb.entities.push_back(std::move(e));
    }
    const auto n = static_cast<double>(entities);
    kb.sft_end = std::clamp<size_t>(static_cast<size_t>(n * sft_share), 1, kb.entities.size() - 2);
    kb.rl_end = std::clamp<size_t>(kb.sft_end + static_cast<size_t>(n * rl_share), kb.sft_end + 1,
                                   kb.entities.size() - 1);
    return kb;
}

std::string kb_document_jsonl(const KbEntity& e) {
    const std::string text =
        "color " + e.color + ", city " + e.city + ", number " + std::to_string(e.number) + ".";
    return nlohmann::json{{"id", e.id}, {"title", e.name}, {"text", text}}.dump() + "\n";
}

KbQuestion kb_question(const KbEntity& e, const std::string& attribute) {
    KbQuestion q;
    q.id = e.id + ":" + attribute;
    q.entity_id = e.id;
    q.prompt = "Q: " + attribute + " of " + e.name + "?\n";
    if (attribute == "color") {
        q.answer = e.color;
    } else if (attribute == "city") {
        q.answer = e.city;
    } else if (attribute == "number") {
        q.answer = std::to_string(e.number);
    } else {
        throw Error("search demo: unknown attribute '" + attribute + "'");
    }
    return q;
}

double kb_chance(const std::vector<KbQuestion>& questions) {
    if (questions.empty()) return 0.0;
    double total = 0.0;
    for (const KbQuestion& q : questions) {
        const std::string attribute = q.id.substr(q.id.find(':') + 1);
        total += attribute == "color"  ? 1.0 / static_cast<double>(std::size(kColors))
                 : attribute == "city" ? 1.0 / static_cast<double>(std::size(kCities))
                                       : 1.0 / kMaxNumber;
    }
    return total / static_cast<double>(questions.size());
}

}  // namespace crucible::rl
