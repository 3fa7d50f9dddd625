#include "dist/world.h"

#include <cblas.h>
#include <mpi.h>
#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/strings.h"

namespace crucible::dist {

namespace {

bool g_mpi = false;  // MPI was initialized by init()
int g_rank = 0, g_size = 1;
int g_world_size = 1;
// The ranks every call acts within: MPI_COMM_WORLD, or this rank's group while a RankGroups
// lives.
MPI_Comm g_comm = MPI_COMM_WORLD;
CommStats g_stats;

// Values per message of the chain: 1 MiB of floats, so the ranks work on different chunks at
// once instead of each waiting for the whole buffer.
constexpr size_t kChunkBytes = 1 << 20;

class Timed {
  public:
    Timed() : t0_(std::chrono::steady_clock::now()) {}
    ~Timed() {
        g_stats.seconds +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    }

  private:
    std::chrono::steady_clock::time_point t0_;
};

template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
    return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
    return MPI_DOUBLE;
}

template <class T>
void chain_sum(T* x, size_t n) {
    if (g_size == 1 || n == 0) return;
    Timed timed;
    const size_t chunk = kChunkBytes / sizeof(T);
    std::vector<T> partial(std::min(chunk, n));
    for (size_t at = 0; at < n; at += chunk) {
        const int len = (int)std::min(chunk, n - at);
        if (g_rank > 0) {
            MPI_Recv(partial.data(), len, mpi_type<T>(), g_rank - 1, 0, g_comm, MPI_STATUS_IGNORE);
            // The partial sum of the ranks before, then this rank's values: ((x0 + x1) + x2)...
            for (int i = 0; i < len; i++) x[at + i] = partial[i] + x[at + i];
        }
        if (g_rank + 1 < g_size) {
            MPI_Send(x + at, len, mpi_type<T>(), g_rank + 1, 0, g_comm);
            g_stats.bytes_sent += (double)len * sizeof(T);
        }
    }
    // The last rank holds the sums; everyone gets its bits.
    for (size_t at = 0; at < n; at += chunk) {
        const int len = (int)std::min(chunk, n - at);
        MPI_Bcast(x + at, len, mpi_type<T>(), g_size - 1, g_comm);
        if (g_rank == g_size - 1) g_stats.bytes_sent += (double)len * sizeof(T) * (g_size - 1);
    }
}

int affinity_cores() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    return std::max(1, CPU_COUNT(&set));
}

}  // namespace

bool launched_by_mpirun() {
    return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr;
}

std::string init(int* argc, char*** argv) {
    if (g_mpi || !launched_by_mpirun()) return "";
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
        throw Error("mpirun started this process but MPI_Init failed");
    }
    g_mpi = true;  // from here an error aborts the job (abort_job) instead of leaving it waiting
    if (provided < MPI_THREAD_SERIALIZED) {
        throw Error(
            "this MPI library cannot take calls from several threads one at a time "
            "(MPI_THREAD_SERIALIZED), which the eval's generators need");
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_world_size = g_size;
    if (g_size == 1) return "";
    // Ranks × threads must not oversubscribe the cores.
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &local);
    int local_size = 1;
    MPI_Comm_size(local, &local_size);
    MPI_Comm_free(&local);
    const int host_cores = (int)std::max(1u, std::thread::hardware_concurrency());
    const int mine = affinity_cores();
    int threads = 0;
    std::string why;
    if (const char* env = std::getenv("OMP_NUM_THREADS"); env != nullptr && std::atoi(env) > 0) {
        threads = std::atoi(env);
        why = "OMP_NUM_THREADS";
    } else if (mine < host_cores) {
        threads = mine;
        why = "the " + std::to_string(mine) + " core(s) mpirun bound this rank to";
    } else {
        threads = std::max(1, mine / local_size);
        why = std::to_string(mine) + " cores shared by " + std::to_string(local_size) +
              " ranks on this host";
    }
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    return "crucible: rank " + std::to_string(g_rank) + " of " + std::to_string(g_size) +
           " (mpirun), " + std::to_string(threads) + " OpenMP thread" + (threads == 1 ? "" : "s") +
           " per rank (" + why + ")";
}

void finalize() {
    if (!g_mpi) return;
    MPI_Finalize();
    g_mpi = false;
}

int rank() {
    return g_rank;
}
int size() {
    return g_size;
}

void sum_in_rank_order(float* x, size_t n) {
    chain_sum(x, n);
}
void sum_in_rank_order(double* x, size_t n) {
    chain_sum(x, n);
}

int64_t sum(int64_t value) {
    if (g_size == 1) return value;
    Timed timed;
    int64_t out = 0;
    MPI_Allreduce(&value, &out, 1, MPI_INT64_T, MPI_SUM, g_comm);
    return out;
}

void broadcast(std::string& s) {
    if (g_size == 1) return;
    Timed timed;
    int64_t len = (int64_t)s.size();
    MPI_Bcast(&len, 1, MPI_INT64_T, 0, g_comm);
    s.resize((size_t)len);
    MPI_Bcast(s.data(), (int)len, MPI_CHAR, 0, g_comm);
}

std::vector<std::string> allgather(const std::string& s) {
    if (g_size == 1) return {s};
    Timed timed;
    const int len = (int)s.size();
    std::vector<int> lens(g_size), offsets(g_size);
    MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, g_comm);
    int total = 0;
    for (int r = 0; r < g_size; r++) {
        offsets[r] = total;
        total += lens[r];
    }
    std::string all((size_t)total, '\0');
    MPI_Allgatherv(s.data(), len, MPI_CHAR, all.data(), lens.data(), offsets.data(), MPI_CHAR,
                   g_comm);
    g_stats.bytes_sent += (double)len * (g_size - 1);
    std::vector<std::string> out;
    for (int r = 0; r < g_size; r++) out.push_back(all.substr((size_t)offsets[r], (size_t)lens[r]));
    return out;
}

void barrier() {
    if (g_size == 1) return;
    Timed timed;
    MPI_Barrier(g_comm);
}

void wait_for_all() {
    if (g_size == 1) return;
    Timed timed;
    MPI_Request request;
    MPI_Ibarrier(g_comm, &request);
    for (int done = 0;;) {
        MPI_Test(&request, &done, MPI_STATUS_IGNORE);
        if (done) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

void check_same(const std::string& bytes, const std::string& what) {
    if (g_size == 1) return;
    const uint64_t h = std::stoull(fnv1a64_hex(bytes), nullptr, 16);
    std::vector<uint64_t> all(g_size);
    MPI_Allgather(&h, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, g_comm);
    for (int r = 1; r < g_size; r++) {
        if (all[r] != all[0]) {
            throw Error(what + " differs between the ranks (rank " + std::to_string(r) +
                        "'s is not rank 0's): every rank must run the same binary and config");
        }
    }
}

namespace {
constexpr int kMessageTag = 10, kDoneTag = 11;
int g_done_ranks = 0;  // rank 0: ranks that called done_sending()

// Receives one message that MPI_Probe/Iprobe found.
void receive(const MPI_Status& st, const std::function<void(const std::string&)>& handle) {
    int len = 0;
    MPI_Get_count(&st, MPI_CHAR, &len);
    std::string msg((size_t)len, '\0');
    MPI_Recv(msg.data(), len, MPI_CHAR, st.MPI_SOURCE, st.MPI_TAG, g_comm, MPI_STATUS_IGNORE);
    if (st.MPI_TAG == kDoneTag) {
        ++g_done_ranks;
    } else {
        handle(msg);
    }
}
}  // namespace

void send_to_root(const std::string& message) {
    Timed timed;
    MPI_Send(message.data(), (int)message.size(), MPI_CHAR, 0, kMessageTag, g_comm);
    g_stats.bytes_sent += (double)message.size();
}

void done_sending() {
    if (g_size == 1 || g_rank == 0) return;
    MPI_Send(nullptr, 0, MPI_CHAR, 0, kDoneTag, g_comm);
}

int poll_messages(const std::function<void(const std::string&)>& handle) {
    if (g_size == 1) return 0;
    int handled = 0;
    for (;;) {
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, g_comm, &flag, &st);
        if (!flag) return handled;
        receive(st, handle);
        ++handled;
    }
}

void drain_messages(const std::function<void(const std::string&)>& handle) {
    while (g_size > 1 && g_done_ranks < g_size - 1) {
        MPI_Status st;
        MPI_Probe(MPI_ANY_SOURCE, MPI_ANY_TAG, g_comm, &st);
        receive(st, handle);
    }
    g_done_ranks = 0;
}

CommStats comm_stats() {
    return g_stats;
}
void reset_comm_stats() {
    g_stats = {};
}

RankGroups::RankGroups(int ranks_per_group) {
    if (ranks_per_group < 1 || g_size % ranks_per_group != 0) {
        throw Error("cannot split " + std::to_string(g_size) + " rank(s) into groups of " +
                    std::to_string(ranks_per_group) + ": the ranks must be a multiple of it");
    }
    if (g_comm != MPI_COMM_WORLD) throw Error("RankGroups: the ranks are already split");
    group_ = g_rank / ranks_per_group;
    groups_ = g_size / ranks_per_group;
    if (g_size == 1) return;  // a world of one (maybe without MPI) is its own group
    world_rank_ = g_rank;
    world_size_ = g_size;
    uncaught_at_split_ = std::uncaught_exceptions();
    MPI_Comm group;
    MPI_Comm_split(MPI_COMM_WORLD, group_, g_rank, &group);
    g_comm = group;
    MPI_Comm_rank(g_comm, &g_rank);
    MPI_Comm_size(g_comm, &g_size);
}

RankGroups::~RankGroups() {
    if (world_size_ == 0) return;
    // Unwinding an error: the job is about to end (abort_job), and freeing the group's
    // communicator, a collective, could wait forever on ranks busy elsewhere. Left to the abort.
    if (std::uncaught_exceptions() <= uncaught_at_split_) MPI_Comm_free(&g_comm);
    g_comm = MPI_COMM_WORLD;
    g_rank = world_rank_;
    g_size = world_size_;
}

void abort_job(int code) {
    if (g_mpi && g_world_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

}  // namespace crucible::dist
