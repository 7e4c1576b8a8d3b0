// `flashgrad train --gpus N` on one host: the launcher starts N copies of the same command as
// worker processes, one per GPU, with the environment torchrun would give them, waits for
// them, and stops them all together.
//
//   worker r:  RANK=r WORLD_SIZE=N LOCAL_RANK=r LOCAL_WORLD_SIZE=N MASTER_ADDR=127.0.0.1
//              MASTER_PORT=P FLASHGRAD_ID_PORT=P FLASHGRAD_WORKER=1
//              CUDA_VISIBLE_DEVICES=<entry r of the launcher's list, or r>
//
// so that every worker sees its one GPU as cuda:0. When a worker fails (a non-zero exit or a
// signal), the launcher sends the others SIGTERM, then SIGKILL after a grace period, reaps
// them all (no orphans) and returns the failed worker's code. Ctrl-C reaches every process of
// the terminal's group: the workers stop after the current step (together: see
// Communicator::any) and the launcher waits for them.
#pragma once
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

namespace fg::train {

// A TCP port that was free on 127.0.0.1 a moment ago (bound to port 0, read back, released).
int free_tcp_port();

// The environment of worker `rank` of `world` on this host, as listed above. `visible`: the
// launcher's CUDA_VISIBLE_DEVICES ("" when unset). Throws when `visible` lists fewer than
// `world` devices.
std::vector<std::pair<std::string, std::string>> worker_env(int64_t rank, int64_t world, int port,
                                                            const std::string& visible);

// Runs `argv` (argv[0] a path to the program) as `world` workers with worker_env, and returns
// 0 when all exit 0; the first failing worker's exit code (128 + signal for a signal) after
// stopping and reaping the rest, with a line on `err` naming its rank; 130 when the workers
// stopped for Ctrl-C (those still running 3 grace_s later are stopped); 143 when the launcher
// itself got SIGTERM (passed on to the workers). Workers die with a launcher that dies.
//
// The hang watchdog (hang_s > 0): each worker gets a socket in FLASHGRAD_HEARTBEAT_FD on which
// it says when it starts and stops waiting for the others (heartbeat()). When some worker has
// waited hang_s seconds and no worker has said anything in that time, the workers that are
// not waiting have hung (a worker frozen in its own work leaves the others waiting in a
// collective for ever): the launcher names them on `err`, stops every worker and returns 124.
// When all of them wait, the collective itself is stuck, and that is said instead.
int run_workers(const std::vector<std::string>& argv, int64_t world, int port,
                std::ostream& err, double grace_s = 10, double hang_s = 0);

// A worker's word to the watchdog of run_workers: true when it starts waiting for the other
// ranks (a blocking collective), false when it is back at its own work. Nothing when the
// process was not started by run_workers with a watchdog; never blocks, never fails.
void heartbeat(bool waiting);

// Whether this process is a worker that run_workers started (worker_env's FLASHGRAD_WORKER):
// then it trains, and does not launch workers itself.
bool launched_worker();

// Under torchrun or Slurm (RANK / LOCAL_RANK set, more than one process, not started by
// run_workers): narrows CUDA_VISIBLE_DEVICES to this process's LOCAL_RANK entry before CUDA
// starts, so that the worker's GPU is cuda:0 as it is under `--gpus`; a list of one entry is
// left alone (the scheduler bound the task to its GPU). Returns whether it changed it.
bool select_local_gpu(const std::function<const char*(const char*)>& getenv,
                      const std::function<void(const char*, const char*)>& setenv);

}  // namespace fg::train
