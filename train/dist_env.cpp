// The data-parallel environment (train/dist_env.h).
#include "train/dist_env.h"

#include <cerrno>
#include <cstdlib>

#include "core/error.h"

namespace fg::train {

namespace {

// The variable as a whole decimal integer in [lo, hi]; `fallback` when unset.
int64_t int_var(const std::function<const char*(const char*)>& getenv, const char* name,
                int64_t lo, int64_t hi, int64_t fallback) {
  const char* v = getenv(name);
  if (!v) return fallback;
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v, &end, 10);
  FG_CHECK(*v != '\0' && end && *end == '\0' && errno == 0,
           "data parallel: ", name, "=\"", v, "\" is not a whole number");
  FG_CHECK(x >= lo && x <= hi, "data parallel: ", name, "=", x, " is out of range [", lo, ", ",
           hi, "]");
  return int64_t(x);
}

}  // namespace

DistEnv dist_env_from(const std::function<const char*(const char*)>& getenv) {
  DistEnv e;
  const char *rank = "RANK", *world = "WORLD_SIZE", *local = "LOCAL_RANK";
  if (getenv("RANK") || getenv("WORLD_SIZE")) {
    e.source = "torchrun";
  } else if (getenv("SLURM_PROCID") || getenv("SLURM_NTASKS")) {
    e.source = "slurm";
    rank = "SLURM_PROCID";
    world = "SLURM_NTASKS";
    local = "SLURM_LOCALID";
  } else {
    return e;
  }
  FG_CHECK(getenv(rank) && getenv(world), "data parallel: ", getenv(rank) ? world : rank,
           " is unset while ", getenv(rank) ? rank : world, " is set; a ", e.source,
           " launch sets both");
  e.world = int_var(getenv, world, 1, int64_t(1) << 20, 1);
  e.rank = int_var(getenv, rank, 0, e.world - 1, 0);
  e.local_rank = int_var(getenv, local, 0, e.world - 1, 0);
  if (const char* a = getenv("MASTER_ADDR")) e.master_addr = a;
  e.port = int(int_var(getenv, "MASTER_PORT", 1, 65535, 0));
  if (e.world > 1) {
    FG_CHECK(!e.master_addr.empty(), "data parallel: ", e.world,
             " processes but MASTER_ADDR is unset; set it to rank 0's host name or address");
    FG_CHECK(e.port != 0, "data parallel: ", e.world,
             " processes but MASTER_PORT is unset; set it to a free TCP port on rank 0's host");
  }
  return e;
}

}  // namespace fg::train
