#include "evolve/diff.h"

#include "core/strings.h"
#include "evolve/problem.h"

namespace crucible::evolve {
namespace {

std::vector<std::string> split_lines(const std::string& s) {
    std::vector<std::string> out;
    size_t pos = 0;
    while (pos < s.size()) {
        size_t eol = s.find('\n', pos);
        if (eol == std::string::npos) eol = s.size();
        out.push_back(s.substr(pos, eol - pos));
        pos = eol + 1;
    }
    return out;
}

// Blanks and a CRLF line's '\r' are what whitespace-tolerant matching ignores on a line; a
// form feed or vertical tab in source is text.
std::string trim(std::string_view s) {
    return crucible::trim(s, " \t\r");
}

std::string leading_ws(const std::string& s) {
    return s.substr(0, std::min(s.size(), s.find_first_not_of(" \t")));
}

bool starts_with(const std::string& s, const std::string& p) {
    return s.rfind(p, 0) == 0;
}

// Count of occurrences of `needle` in `hay` within [lo, hi).
int count_in(const std::string& hay, const std::string& needle, size_t lo, size_t hi,
             size_t* first) {
    int n = 0;
    for (size_t p = hay.find(needle, lo); p != std::string::npos && p + needle.size() <= hi;
         p = hay.find(needle, p + 1)) {
        if (n == 0) *first = p;
        n++;
    }
    return n;
}

// Applies one block to `code` in place; returns an error text or "".
std::string apply_one(std::string& code, const SearchReplace& sr, int index, int* fuzzy) {
    std::string err;
    const auto blocks = evolve_blocks(code, &err);
    const std::string label = "SEARCH block " + std::to_string(index + 1);
    if (trim(sr.search).empty()) return label + " is empty";
    // Exact match, required to lie inside one evolve block.
    for (const auto& [lo, hi] : blocks) {
        size_t at = 0;
        const int n = count_in(code, sr.search, lo, hi, &at);
        if (n > 1) return label + " matches " + std::to_string(n) + " places; make it unique";
        if (n == 1) {
            code.replace(at, sr.search.size(), sr.replace);
            return "";
        }
    }
    // Whitespace-tolerant: compare trimmed lines, skipping blank lines in the SEARCH text.
    std::vector<std::string> want;
    for (const auto& l : split_lines(sr.search)) {
        if (!trim(l).empty()) want.push_back(l);
    }
    struct Hit {
        size_t begin, end;  // byte range of the matched lines (end after the last '\n')
        std::string indent;
    };
    std::vector<Hit> hits;
    for (const auto& [lo, hi] : blocks) {
        // Line starts within [lo, hi).
        std::vector<size_t> starts;
        for (size_t p = lo; p < hi; p = code.find('\n', p) + 1) {
            starts.push_back(p);
            if (code.find('\n', p) == std::string::npos) break;
        }
        const auto line_at = [&](size_t k) {
            const size_t b = starts[k];
            const size_t e = std::min(hi, code.find('\n', b));
            return code.substr(b, e - b);
        };
        for (size_t k = 0; k < starts.size(); k++) {
            size_t j = k, w = 0;
            while (j < starts.size() && w < want.size()) {
                const std::string l = line_at(j);
                if (trim(l).empty()) {
                    j++;
                    continue;
                }
                if (trim(l) != trim(want[w])) break;
                j++;
                w++;
            }
            if (w == want.size() && trim(line_at(k)) == trim(want[0])) {
                const size_t end = j < starts.size() ? starts[j] : hi;
                hits.push_back({starts[k], end, leading_ws(line_at(k))});
            }
        }
    }
    if (hits.empty()) {
        return label + " does not match the current program (not even ignoring whitespace); " +
               "copy the lines to replace exactly from the program";
    }
    if (hits.size() > 1) {
        return label + " matches " + std::to_string(hits.size()) + " places; make it unique";
    }
    // Re-indent the replacement by the difference between the program's and the SEARCH's
    // indentation of the first line.
    const std::string have = hits[0].indent, said = leading_ws(want[0]);
    std::string replacement;
    for (const auto& l : split_lines(sr.replace)) {
        std::string line = l;
        if (!trim(line).empty()) {
            if (starts_with(line, said)) {
                line = have + line.substr(said.size());
            } else if (said.empty()) {
                line = have + line;
            }
        }
        replacement += line + "\n";
    }
    code.replace(hits[0].begin, hits[0].end - hits[0].begin, replacement);
    (*fuzzy)++;
    return "";
}

}  // namespace

std::vector<SearchReplace> parse_diff(const std::string& text) {
    std::vector<SearchReplace> out;
    const auto lines = split_lines(text);
    size_t i = 0;
    while (i < lines.size()) {
        if (!starts_with(trim(lines[i]), "<<<<<<< SEARCH")) {
            i++;
            continue;
        }
        SearchReplace sr;
        size_t j = i + 1;
        std::string* into = &sr.search;
        bool done = false, divided = false;
        for (; j < lines.size(); j++) {
            const std::string t = trim(lines[j]);
            if (!divided && t == "=======") {
                divided = true;
                into = &sr.replace;
                continue;
            }
            if (divided && starts_with(t, ">>>>>>> REPLACE")) {
                done = true;
                break;
            }
            *into += lines[j] + "\n";
        }
        if (!done) break;  // an unterminated block is ignored
        out.push_back(sr);
        i = j + 1;
    }
    return out;
}

std::string parse_fenced_code(const std::string& text) {
    const auto lines = split_lines(text);
    std::string last, cur;
    bool in = false;
    for (const auto& l : lines) {
        if (starts_with(trim(l), "```")) {
            if (in) last = cur;
            in = !in;
            cur.clear();
            continue;
        }
        if (in) cur += l + "\n";
    }
    return last;
}

ApplyResult apply_reply(const std::string& parent, const std::string& reply) {
    ApplyResult r;
    const auto diffs = parse_diff(reply);
    std::string code = parent;
    if (!diffs.empty()) {
        for (size_t i = 0; i < diffs.size(); i++) {
            const std::string e = apply_one(code, diffs[i], static_cast<int>(i), &r.fuzzy_matches);
            if (!e.empty()) {
                r.error = e;
                return r;
            }
        }
    } else {
        const std::string fenced = parse_fenced_code(reply);
        if (fenced.empty()) {
            r.error =
                "no SEARCH/REPLACE block and no fenced code block found in the reply; answer "
                "with <<<<<<< SEARCH / ======= / >>>>>>> REPLACE blocks";
            return r;
        }
        r.full_rewrite = true;
        std::string err;
        const auto own = evolve_blocks(fenced, &err);
        if (fenced.find("EVOLVE-BLOCK-START") != std::string::npos ||
            fenced.find("EVOLVE-BLOCK-END") != std::string::npos) {
            if (own.empty()) {
                r.error = "the rewritten program's EVOLVE-BLOCK markers are broken: " + err;
                return r;
            }
            code = fenced;
        } else {
            const auto blocks = evolve_blocks(parent, &err);
            if (blocks.size() != 1) {
                r.error =
                    "a rewrite without markers is only accepted when the program has one "
                    "EVOLVE-BLOCK; return the whole program with its markers";
                return r;
            }
            code = parent.substr(0, blocks[0].first) + fenced + parent.substr(blocks[0].second);
        }
    }
    const std::string fixed = check_fixed_parts(parent, code);
    if (!fixed.empty()) {
        r.error = fixed;
        return r;
    }
    if (code == parent) {
        r.error = "the change leaves the program identical to its parent";
        return r;
    }
    r.ok = true;
    r.code = code;
    return r;
}

}  // namespace crucible::evolve
