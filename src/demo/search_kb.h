// The knowledge base of `crucible demo search`, generated from a seed: fictional entities
// (names of 2-3 syllables that no model has seen) with a color, a city and a number each, one
// short document per entity, and questions about one attribute of one entity. The entities
// are split three ways: SFT demonstrations use the first part, RL the second, and the held-out
// questions the third, so a held-out answer can only come from the documents (closed-book
// accuracy is chance: 1 in 10 colors, 20 cities or 99 numbers).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace crucible::rl {

struct KbEntity {
    std::string id;    // "e0042": the id of its document in the index
    std::string name;  // "Raquoka"
    std::string color, city;
    int number = 0;  // 1..99
};

struct KbQuestion {
    std::string id;         // "e0042:city"
    std::string entity_id;  // the document that answers it
    std::string prompt;     // "Q: city of Raquoka?\n"
    std::string answer;     // "Thafe"
};

struct SearchKb {
    std::vector<KbEntity> entities;
    size_t sft_end = 0, rl_end = 0;  // [0, sft_end) SFT, [sft_end, rl_end) RL, the rest held out
};

inline constexpr const char* kKbAttributes[] = {"color", "city", "number"};

// `entities` entities (unique names, none equal to a color or city) from `seed`, split
// `sft_share` / `rl_share` / the rest in that order. REQUIRES: 3 <= entities <= 20000.
SearchKb make_search_kb(int entities, uint64_t seed, double sft_share = 0.5,
                        double rl_share = 0.25);

// The entity's document, as the index's JSONL line: {"id", "title": name, "text"}, the text
// "color teal, city Thafe, number 17.".
std::string kb_document_jsonl(const KbEntity& e);

// The question about `attribute` (one of kKbAttributes) of `e`.
KbQuestion kb_question(const KbEntity& e, const std::string& attribute);

// The share of held-out answers a closed-book guess gets right in expectation when it guesses
// uniformly: the mean of 1 / (number of values) over `questions`.
double kb_chance(const std::vector<KbQuestion>& questions);

}  // namespace crucible::rl
