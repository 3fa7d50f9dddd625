#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "dist/world.h"

// libgomp's default waits spin for ~300,000 iterations at every barrier. When another process
// shares the cores (the normal case on a shared machine), the spinning thread holds up a
// descheduled one and a training step of hundreds of small parallel regions ran 3-4x slower;
// fully passive waits fix that but make single-sequence decode 5-18x slower (every region then
// pays a futex wake-up). A short spin (GOMP_SPINCOUNT=3000) measured within 12% of passive
// under contention and as fast as spinning for decode (docs/PERFORMANCE.md). libgomp reads the
// variable when it loads, before main, so the binary re-executes itself once with it unless the
// user chose a policy.
static void default_to_short_openmp_spins(char** argv) {
    if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr) {
        return;
    }
    setenv("GOMP_SPINCOUNT", "3000", 1);
    setenv("CRUCIBLE_DEFAULTED_GOMP_SPINCOUNT", "1", 1);
    execv("/proc/self/exe", argv);
    // exec failed: carry on with the default policy.
}

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); j++) row[j] = j;
    for (size_t i = 1; i <= a.size(); i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); j++) {
            const size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

// The closest of `names` to `word` when it is close enough to be a typo, else "".
std::string nearest(const std::string& word, const std::vector<std::string>& names) {
    std::string best;
    size_t best_d = std::max<size_t>(2, word.size() / 3) + 1;
    for (const std::string& n : names) {
        const size_t d = edit_distance(word, n);
        // One is the start of the other ("evaluate" for "eval", "gen" for "generate").
        const bool prefix = std::min(n.size(), word.size()) >= 3 &&
                            (n.rfind(word, 0) == 0 || word.rfind(n, 0) == 0);
        if (d < best_d || (prefix && best.empty())) {
            best = n;
            best_d = d;
        }
    }
    return best;
}

// One line for a command or option the parser will refuse, naming the nearest known one
// ("" when argv looks fine): CLI11's own messages for these are "A subcommand is required" and
// the unexpected arguments printed back in reverse.
std::string typo_message(CLI::App& app, int argc, char** argv) {
    CLI::App* cur = &app;
    std::string path = "crucible";
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "--") break;
        if (a.rfind("--", 0) == 0) {
            const std::string name = a.substr(0, a.find('='));
            std::vector<std::string> known;
            bool found = false;
            for (CLI::App* at = cur; at != nullptr; at = at->get_parent()) {
                for (const CLI::Option* opt : at->get_options()) {
                    for (const std::string& l : opt->get_lnames()) {
                        known.push_back("--" + l);
                        found = found || "--" + l == name;
                    }
                }
            }
            if (found) continue;
            const std::string near = nearest(name, known);
            return "unknown option " + name + " for '" + path + "'" +
                   (near.empty() ? std::string() : " (did you mean " + near + "?)") + "; see " +
                   path + " --help";
        }
        if (a[0] == '-') continue;
        std::vector<std::string> subs;
        CLI::App* next = nullptr;
        for (CLI::App* s : cur->get_subcommands([](CLI::App*) { return true; })) {
            subs.push_back(s->get_name());
            if (s->get_name() == a) next = s;
        }
        if (next != nullptr) {
            cur = next;
            path += " " + a;
            continue;
        }
        if (!subs.empty() && cur->get_require_subcommand_min() > 0) {
            const std::string near = nearest(a, subs);
            std::string list;
            for (const std::string& s : subs) list += (list.empty() ? "" : ", ") + s;
            return "unknown command '" + a + "' for '" + path + "'" +
                   (near.empty() ? std::string() : " (did you mean '" + near + "'?)") +
                   "; commands: " + list;
        }
    }
    return "";
}

}  // namespace

int main(int argc, char** argv) {
    default_to_short_openmp_spins(argv);
    CLI::App app{"crucible: train, run and evaluate reasoning language models on CPU"};
    app.require_subcommand(1);
    // Every option's default in --help (subcommands inherit this; flags show none).
    app.option_defaults()->always_capture_default();
    auto train = crucible::cli::add_train(app);
    auto demo = crucible::cli::add_demo(app);
    auto bench = crucible::cli::add_bench(app);
    auto tokenize = crucible::cli::add_tokenize(app);
    auto convert = crucible::cli::add_convert(app);
    auto generate = crucible::cli::add_generate(app);
    auto serve = crucible::cli::add_serve(app);
    auto sandbox = crucible::cli::add_sandbox(app);
    auto evolve = crucible::cli::add_evolve(app);
    auto eval = crucible::cli::add_eval(app);
    auto verify = crucible::cli::add_verify(app);
    auto compare = crucible::cli::add_compare(app);
    auto report = crucible::cli::add_report(app);
    auto rubric = crucible::cli::add_rubric(app);
    auto index = crucible::cli::add_index(app);
    auto experiment = crucible::cli::add_experiment(app);
    app.name("crucible");
    app.set_version_flag("--version", std::string("crucible ") + CRUCIBLE_VERSION);
    if (argc == 1) {  // no command: the help, not an error
        std::fputs(app.help().c_str(), stdout);
        return 0;
    }
    if (const std::string typo = typo_message(app, argc, argv); !typo.empty()) {
        std::fprintf(stderr, "error: %s\n", typo.c_str());
        return 2;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    // Under mpirun every rank runs this command; alone, no MPI at all (dist/world.h).
    std::string where;  // "rank R of N: " in front of an error when there are ranks
    int code = 0;
    try {
        const std::string ranks = crucible::dist::init(&argc, &argv);
        if (crucible::dist::size() > 1) {
            where = "rank " + std::to_string(crucible::dist::rank()) + " of " +
                    std::to_string(crucible::dist::size()) + ": ";
            if (crucible::dist::is_root()) std::printf("%s\n", ranks.c_str());
            std::fflush(stdout);
            if (!app.got_subcommand("train") && !app.got_subcommand("eval") &&
                !app.got_subcommand("experiment")) {
                throw crucible::Error(
                    "under mpirun only `crucible train`, `crucible eval` and `crucible "
                    "experiment run` run across "
                    "ranks for now; run this command without mpirun");
            }
        }
        if (app.got_subcommand("train")) code = train();
        if (app.got_subcommand("demo")) code = demo();
        if (app.got_subcommand("bench")) code = bench();
        if (app.got_subcommand("tokenize")) code = tokenize();
        if (app.got_subcommand("convert")) code = convert();
        if (app.got_subcommand("generate")) code = generate();
        if (app.got_subcommand("serve")) code = serve();
        if (app.got_subcommand("sandbox")) code = sandbox();
        if (app.got_subcommand("evolve")) code = evolve();
        if (app.got_subcommand("eval")) code = eval();
        if (app.got_subcommand("verify")) code = verify();
        if (app.got_subcommand("compare")) code = compare();
        if (app.got_subcommand("report")) code = report();
        if (app.got_subcommand("rubric")) code = rubric();
        if (app.got_subcommand("index")) code = index();
        if (app.got_subcommand("experiment")) code = experiment();
    } catch (const crucible::Error& e) {
        std::fprintf(stderr, "error: %s%s\n", where.c_str(), e.what());
        code = 1;
    } catch (const std::exception& e) {  // a bug, not bad input: still one readable line
        std::fprintf(stderr, "internal error: %s%s\n", where.c_str(), e.what());
        code = 2;
    }
    // A rank that failed takes the whole job down: the others would wait for it forever.
    if (code != 0) crucible::dist::abort_job(code);
    crucible::dist::finalize();
    return code;
}
