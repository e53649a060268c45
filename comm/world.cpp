#include "comm/world.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "comm/abort.h"
#include "kernels/core/check.h"

namespace tfm::comm {

namespace {

// Process-wide mirror of MPI's state (see detail:: in world.h).
std::atomic<bool> g_mpi_active{false};
std::atomic<int> g_thread_level{int(ThreadLevel::multiple)};
std::atomic<int> g_world_rank{0};
std::atomic<bool> g_world_alive{false};
std::mutex g_serial_mutex;  // held around MPI calls under MPI_THREAD_SERIALIZED

std::string& host_storage() {
  static std::string host = [] {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return std::string("?");
    return std::string(buf);
  }();
  return host;
}

int to_mpi_level(ThreadLevel level) {
  switch (level) {
    case ThreadLevel::single: return MPI_THREAD_SINGLE;
    case ThreadLevel::funneled: return MPI_THREAD_FUNNELED;
    case ThreadLevel::serialized: return MPI_THREAD_SERIALIZED;
    case ThreadLevel::multiple: return MPI_THREAD_MULTIPLE;
  }
  return MPI_THREAD_SINGLE;
}

ThreadLevel from_mpi_level(int level) {
  if (level >= MPI_THREAD_MULTIPLE) return ThreadLevel::multiple;
  if (level >= MPI_THREAD_SERIALIZED) return ThreadLevel::serialized;
  if (level >= MPI_THREAD_FUNNELED) return ThreadLevel::funneled;
  return ThreadLevel::single;
}

// Parses a non-negative integer variable; -1 if unset, an error naming it if malformed.
int env_int(const GetEnv& getenv, const char* name) {
  const char* v = getenv(name);
  if (!v || !*v) return -1;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  TFM_CHECK(end && *end == '\0' && x >= 0 && x < (1L << 30), "launcher variable ", name, "='", v,
            "' is not a rank or size");
  return int(x);
}

void mpi_check(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(code, text, &len);
  fail(cat(call, " failed during start-up: ", text));
}

}  // namespace

const char* thread_level_name(ThreadLevel level) {
  switch (level) {
    case ThreadLevel::single: return "single";
    case ThreadLevel::funneled: return "funneled";
    case ThreadLevel::serialized: return "serialized";
    case ThreadLevel::multiple: return "multiple";
  }
  return "?";
}

ThreadLevel parse_thread_level(const std::string& name) {
  for (ThreadLevel l :
       {ThreadLevel::single, ThreadLevel::funneled, ThreadLevel::serialized, ThreadLevel::multiple})
    if (name == thread_level_name(l)) return l;
  fail(cat("unknown MPI thread level '", name,
           "' (expected single, funneled, serialized or multiple)"));
}

LaunchInfo detect_launch(const GetEnv& getenv) {
  LaunchInfo info;
  if (const char* no = getenv("TFM_NO_MPI"); no && *no && std::string(no) != "0") return info;

  auto take = [&](const char* launcher, const char* rank_var, const char* size_var,
                  const char* local_var) {
    info.launcher = launcher;
    info.rank = rank_var ? env_int(getenv, rank_var) : -1;
    info.size = size_var ? env_int(getenv, size_var) : -1;
    info.local_rank = local_var ? env_int(getenv, local_var) : -1;
    return info;
  };
  if (getenv("OMPI_COMM_WORLD_SIZE"))
    return take("Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_RANK");
  if (getenv("PMIX_RANK")) {
    take("PMIx", "PMIX_RANK", nullptr, nullptr);
    if (getenv("SLURM_LOCALID")) info.local_rank = env_int(getenv, "SLURM_LOCALID");
    return info;
  }
  if (getenv("PMI_RANK") || getenv("PMI_SIZE")) {
    take("PMI", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID");
    if (info.local_rank < 0 && getenv("SLURM_LOCALID"))
      info.local_rank = env_int(getenv, "SLURM_LOCALID");
    return info;
  }
  if (getenv("MV2_COMM_WORLD_SIZE"))
    return take("MVAPICH", "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE",
                "MV2_COMM_WORLD_LOCAL_RANK");
  if (getenv("SLURM_STEP_NUM_TASKS") && getenv("SLURM_PROCID"))
    return take("srun", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID");
  return info;
}

LaunchInfo detect_launch() {
  return detect_launch([](const char* name) -> const char* { return std::getenv(name); });
}

World::World(int* argc, char*** argv, WorldOptions options) {
  bool expected = false;
  TFM_CHECK(g_world_alive.compare_exchange_strong(expected, true),
            "a tfm::comm::World already exists in this process; create exactly one, in main()");
  try {
    host_ = host_storage();
    launch_ = detect_launch();
    if (!options.allow_mpi) launch_ = LaunchInfo{};
    if (const char* lvl = std::getenv("TFM_MPI_THREAD_LEVEL"); lvl && *lvl)
      options.thread_level = parse_thread_level(lvl);

    int finalized = 0, initialized = 0;
    MPI_Finalized(&finalized);
    TFM_CHECK(!finalized, "MPI was already finalised in this process; a World cannot restart it");
    MPI_Initialized(&initialized);

    if (!launch_.launched() && !initialized) {
      // A world of one: no MPI at all, so no daemon and no launcher is needed.
      return;
    }
    int provided = MPI_THREAD_SINGLE;
    if (initialized) {
      MPI_Query_thread(&provided);  // someone else started MPI: adopt it, never finalise it
    } else {
      mpi_check(MPI_Init_thread(argc, argv, to_mpi_level(options.thread_level), &provided),
                "MPI_Init_thread");
      owns_mpi_ = true;
    }
    uses_mpi_ = true;
    thread_level_ = from_mpi_level(provided);
    g_thread_level = int(thread_level_);
    g_mpi_active = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    g_world_rank = rank_;

    // Processes sharing this node's memory: the local size always, and the local rank where the
    // launcher did not say.
    MPI_Comm node = MPI_COMM_NULL;
    mpi_check(
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
        "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)");
    int node_rank = 0;
    MPI_Comm_rank(node, &node_rank);
    MPI_Comm_size(node, &local_size_);
    MPI_Comm_free(&node);
    local_rank_ = launch_.local_rank >= 0 ? launch_.local_rank : node_rank;
    if (launch_.size >= 0 && launch_.size != size_)
      std::fprintf(stderr,
                   "tfm: rank %d: the launcher (%s) announced %d processes but MPI_COMM_WORLD "
                   "has %d; using MPI's\n",
                   rank_, launch_.launcher.c_str(), launch_.size, size_);
  } catch (...) {
    g_world_alive = false;
    throw;
  }
}

World::~World() {
  if (attached_ > 0) {
    detail::abort_job(detail::kCommErrorExitCode,
                      cat("World destroyed while ", attached_,
                          " ParallelContext(s) still use it; destroy them before the World"));
  }
  if (owns_mpi_) {
    g_mpi_active = false;
    MPI_Finalize();
  }
  g_world_alive = false;
}

std::string World::describe() const {
  return cat("rank ", rank_, " of ", size_, " (local ", local_rank_, " of ", local_size_,
             ") on host ", host_,
             uses_mpi_ ? cat(", launched by ", launch_.launcher, ", MPI thread level ",
                             thread_level_name(thread_level_))
                       : std::string(", world of one without MPI"));
}

void World::abort(int exit_code, const std::string& message) const {
  detail::abort_job(exit_code, message);
}

void World::attach() const { ++attached_; }
void World::detach() const { --attached_; }

namespace detail {

bool mpi_active() { return g_mpi_active.load(); }
ThreadLevel mpi_thread_level() {
  return g_mpi_active ? ThreadLevel(g_thread_level.load()) : ThreadLevel::multiple;
}
int world_rank() { return g_world_rank.load(); }
const std::string& host_name() { return host_storage(); }

MpiCallGuard::MpiCallGuard() {
  if (mpi_thread_level() == ThreadLevel::serialized) {
    g_serial_mutex.lock();
    locked_ = true;
  }
}
MpiCallGuard::~MpiCallGuard() {
  if (locked_) g_serial_mutex.unlock();
}

}  // namespace detail

}  // namespace tfm::comm
