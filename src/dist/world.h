// The processes one job spans, on MPI (Open MPI from Debian): `mpirun -np N crucible train ...`
// runs N ranks of the same command. Started without mpirun the binary is a world of one and
// never touches MPI, so a single process needs no launcher and pays nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace crucible::dist {

// Whether mpirun (Open MPI's launcher, or any PMIx one) started this process.
bool launched_by_mpirun();

// Initializes MPI when launched_by_mpirun(), else a world of one; idempotent. With more than one
// rank it also picks the OpenMP threads of this rank (OMP_NUM_THREADS when set; else the cores
// mpirun bound it to, or the host's cores shared by the ranks on it) and returns the line that
// says so; "" in a world of one.
std::string init(int* argc, char*** argv);
// MPI_Finalize when init() started MPI.
void finalize();

int rank();
int size();
inline bool is_root() {
    return rank() == 0;
}

// x (n values, the same n on every rank) becomes ((x_0 + x_1) + x_2) + ... over the ranks in
// order, the same bits on every rank and in every run: a chain through the ranks in chunks (each
// adds its own values to the partial sum it receives and passes it on), then a broadcast from the
// last rank. A world of one leaves x as it is. Collective: every rank must call it.
void sum_in_rank_order(float* x, size_t n);
void sum_in_rank_order(double* x, size_t n);
int64_t sum(int64_t value);
// Every rank's `s`, in rank order, on every rank.
std::vector<std::string> allgather(const std::string& s);
// Rank 0's value of `s` on every rank.
void broadcast(std::string& s);
void barrier();
// barrier() for ranks that may wait long (an experiment's groups, one rank evaluating while the
// others wait): polls every millisecond instead of spinning a core, so waiting ranks leave the
// cores to the ranks still working.
void wait_for_all();

// Messages to rank 0 (a sharded eval's samples, stored by rank 0 alone). Ranks > 0 send_to_root
// each message and done_sending() once at the end; rank 0 handles what has arrived with
// poll_messages() while it works, then drain_messages() until every other rank is done. Calls
// may come from any thread, one at a time (MPI_THREAD_SERIALIZED).
void send_to_root(const std::string& message);
void done_sending();
// Rank 0: handle(message) for each message that has arrived; returns how many.
int poll_messages(const std::function<void(const std::string&)>& handle);
// Rank 0: handles messages until every other rank has called done_sending().
void drain_messages(const std::function<void(const std::string&)>& handle);

// Every rank must hold the same `bytes`: Error "WHAT differs between the ranks (rank R's is not
// rank 0's)" on the ranks that differ — one clear message before any work starts.
void check_same(const std::string& bytes, const std::string& what);

// Seconds spent in the calls above, and the bytes this rank sent in them, since the last reset:
// what docs/SCALING.md reports per step.
struct CommStats {
    double seconds = 0;
    double bytes_sent = 0;
};
CommStats comm_stats();
void reset_comm_stats();

// Splits the ranks into groups of `ranks_per_group` consecutive ranks (size() must be a multiple
// of it: Error otherwise) for as long as it lives: every call above then acts within this rank's
// group — rank() and size() are the group's, a collective waits only on the group — so groups run
// independent jobs side by side (an experiment's runs). Collective over all ranks, at creation
// and when it ends; one split at a time. abort_job still ends every rank.
class RankGroups {
  public:
    explicit RankGroups(int ranks_per_group);
    ~RankGroups();
    RankGroups(const RankGroups&) = delete;
    RankGroups& operator=(const RankGroups&) = delete;
    int group() const { return group_; }  // this rank's group, 0..groups()-1
    int groups() const { return groups_; }

  private:
    int group_ = 0, groups_ = 1;
    int world_rank_ = 0, world_size_ = 0;  // world_size_ 0: no split was made
    int uncaught_at_split_ = 0;
};

// Ends every rank of the job after this one's error was printed (MPI_Abort); returns in a world
// of one.
void abort_job(int code);

}  // namespace crucible::dist
