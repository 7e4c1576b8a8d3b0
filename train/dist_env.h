// Where a data-parallel worker learns its place: the environment that torchrun (RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or Slurm (SLURM_PROCID, SLURM_NTASKS,
// SLURM_LOCALID; the rendezvous address still from MASTER_ADDR / MASTER_PORT) sets for each
// process. torchrun's variables win when both are present.
//
// A pure function of the variables it is given, so it is tested on the CPU.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace fg::train {

struct DistEnv {
  std::string source = "none";  // "torchrun", "slurm", or "none" (a single process)
  int64_t rank = 0, world = 1, local_rank = 0;
  std::string master_addr;  // rank 0's host, where the others fetch the NCCL id
  int port = 0;             // MASTER_PORT, 0 when unset
};

// getenv: the variable's value or null when unset (std::getenv in the program). Throws naming
// the variable and its value when one is not a number, is out of range (a rank not below the
// world size, a port outside 1..65535), or when a multi-process world lacks MASTER_ADDR or
// MASTER_PORT, saying what to set.
DistEnv dist_env_from(const std::function<const char*(const char*)>& getenv);

}  // namespace fg::train
