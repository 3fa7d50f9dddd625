// The math verifier against Math-Verify's rules (huggingface/Math-Verify, the checker most RL
// stacks use): a held-out set of (gold, prediction, verdict) rows written by hand from its
// documented rules, tests/fixtures/math_verify_agreement.tsv. Crucible must never say "equal"
// where Math-Verify says "different" (a false positive pays a wrong answer), and must agree
// on at least 95% of the rows. Rows marked '!' are documented, deliberate differences.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "reward/verify/verifiers.h"

namespace crucible::eval {
namespace {

struct Row {
    int line = 0;
    bool equal = false;   // Math-Verify's verdict
    bool policy = false;  // Crucible deliberately gives the other verdict
    std::string gold, pred, rule;
};

std::string unescape(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s.compare(i, 4, "<NL>") == 0) {
            out.push_back('\n');
            i += 3;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

std::vector<Row> load_rows() {
    const std::string path = std::string(CRUCIBLE_FIXTURE_DIR) + "/math_verify_agreement.tsv";
    std::ifstream in(path);
    EXPECT_TRUE(in.good()) << path;
    std::vector<Row> rows;
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
        if (line.empty() || line[0] == '#') continue;
        std::vector<std::string> f;
        for (size_t start = 0;;) {
            const size_t tab = line.find('\t', start);
            f.push_back(line.substr(start, tab - start));
            if (tab == std::string::npos) break;
            start = tab + 1;
        }
        EXPECT_EQ(f.size(), 4u) << path << ":" << n << ": expected verdict, gold, pred, rule";
        if (f.size() != 4) continue;
        Row r;
        r.line = n;
        r.policy = !f[0].empty() && f[0].back() == '!';
        const std::string verdict = r.policy ? f[0].substr(0, f[0].size() - 1) : f[0];
        EXPECT_TRUE(verdict == "equal" || verdict == "differ") << path << ":" << n;
        r.equal = verdict == "equal";
        r.gold = unescape(f[1]);
        r.pred = unescape(f[2]);
        r.rule = f[3];
        rows.push_back(std::move(r));
    }
    return rows;
}

TEST(MathVerifyAgreement, NoFalseEqualAndAtLeast95Percent) {
    const std::vector<Row> rows = load_rows();
    ASSERT_GE(rows.size(), 120u);
    int agree = 0, false_equal = 0, false_differ = 0, policy_rows = 0;
    for (const Row& r : rows) {
        const auto t0 = std::chrono::steady_clock::now();
        const bool got = verify_math(r.gold, r.pred);
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count();
        EXPECT_LT(ms, 1000.0) << "line " << r.line << " took " << ms << " ms";
        if (r.policy) {
            // A deliberate difference must be one, or its mark is stale.
            ++policy_rows;
            EXPECT_NE(got, r.equal)
                << "line " << r.line << " is marked '!' but agrees: " << r.gold << " | " << r.pred;
        }
        if (got == r.equal) {
            ++agree;
            continue;
        }
        if (r.policy) continue;
        (got ? false_equal : false_differ) += 1;
        ADD_FAILURE() << "line " << r.line << ": Crucible says " << (got ? "equal" : "different")
                      << ", Math-Verify's rule says " << (r.equal ? "equal" : "different") << " ("
                      << r.rule << ")\n  gold: " << r.gold << "\n  pred: " << r.pred;
    }
    const double pct = 100.0 * agree / static_cast<double>(rows.size());
    std::printf(
        "math verifier vs Math-Verify's rules: %d/%zu rows agree (%.1f%%); false equal %d, "
        "false different %d; %d deliberate differences (marked '!')\n",
        agree, rows.size(), pct, false_equal, false_differ, policy_rows);
    EXPECT_EQ(false_equal, 0);
    EXPECT_GE(pct, 95.0);
}

// Each family the set was written for holds both verdicts, so neither a checker that says
// "equal" to everything nor one that says "different" to everything could pass.
TEST(MathVerifyAgreement, SetCoversBothVerdicts) {
    const std::vector<Row> rows = load_rows();
    int equal = 0, differ = 0;
    for (const Row& r : rows) (r.equal ? equal : differ) += 1;
    EXPECT_GE(equal, 50);
    EXPECT_GE(differ, 50);
}

}  // namespace
}  // namespace crucible::eval
