// The single-host launcher of data-parallel workers (train/launch.h).
#include "train/launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <thread>

#include "core/error.h"
#include "train/dist_env.h"

namespace fg::train {

namespace {

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const size_t end = comma == std::string::npos ? s.size() : comma;
    if (end > start) out.push_back(s.substr(start, end - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

// The workers, for the SIGTERM handler: a launcher told to stop passes it on to them.
constexpr int kMaxWorkers = 1024;
volatile sig_atomic_t g_workers = 0;
pid_t g_worker_pids[kMaxWorkers];

extern "C" void forward_sigterm(int) {
  for (int i = 0; i < g_workers; ++i)
    if (g_worker_pids[i] > 0) ::kill(g_worker_pids[i], SIGTERM);
}

// Exit code of a wait status: the code, or 128 + the signal.
int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int free_tcp_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  FG_CHECK(s >= 0, "data parallel: socket() failed (", std::strerror(errno), ")");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  const bool ok = ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  const int err = errno;
  ::close(s);
  FG_CHECK(ok, "data parallel: no free TCP port on 127.0.0.1 (", std::strerror(err), ")");
  return int(ntohs(a.sin_port));
}

std::vector<std::pair<std::string, std::string>> worker_env(int64_t rank, int64_t world, int port,
                                                            const std::string& visible) {
  std::string device = std::to_string(rank);
  if (!visible.empty()) {
    const std::vector<std::string> list = split_commas(visible);
    FG_CHECK(int64_t(list.size()) >= world, "--gpus ", world, ": CUDA_VISIBLE_DEVICES=\"",
             visible, "\" lists ", list.size(), " device(s); list at least ", world,
             " or lower --gpus");
    device = list[size_t(rank)];
  }
  const std::string w = std::to_string(world), p = std::to_string(port);
  return {{"RANK", std::to_string(rank)},
          {"WORLD_SIZE", w},
          {"LOCAL_RANK", std::to_string(rank)},
          {"LOCAL_WORLD_SIZE", w},
          {"MASTER_ADDR", "127.0.0.1"},
          {"MASTER_PORT", p},
          {"FLASHGRAD_ID_PORT", p},
          {"FLASHGRAD_WORKER", "1"},
          {"CUDA_VISIBLE_DEVICES", device}};
}

int run_workers(const std::vector<std::string>& argv, int64_t world, int port,
                std::ostream& err, double grace_s) {
  FG_CHECK(!argv.empty() && world >= 1 && world <= kMaxWorkers,
           "run_workers: no command, or not 1 to ", kMaxWorkers, " workers");
  const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
  const std::string visible = v ? v : "";
  std::vector<std::vector<std::pair<std::string, std::string>>> envs;
  for (int64_t r = 0; r < world; ++r) envs.push_back(worker_env(r, world, port, visible));
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  // The launcher outlives its workers: Ctrl-C (sent to the whole group) is theirs to act on.
  struct sigaction ignore {}, old_int {}, forward {}, old_term {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  sigaction(SIGINT, &ignore, &old_int);
  forward.sa_handler = forward_sigterm;
  sigemptyset(&forward.sa_mask);
  g_workers = 0;
  sigaction(SIGTERM, &forward, &old_term);
  auto restore = [&] {
    g_workers = 0;
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
  };

  std::vector<pid_t> pids;
  for (int64_t r = 0; r < world; ++r) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      sigaction(SIGINT, &old_int, nullptr);
      sigaction(SIGTERM, &old_term, nullptr);
      for (const auto& [k, val] : envs[size_t(r)]) ::setenv(k.c_str(), val.c_str(), 1);
      ::execv(args[0], args.data());
      std::fprintf(stderr, "error: worker %lld could not start '%s': %s\n", (long long)r, args[0],
                   std::strerror(errno));
      ::_exit(127);
    }
    if (pid < 0) {
      const int e = errno;
      for (pid_t p : pids) ::kill(p, SIGKILL);
      for (pid_t p : pids) ::waitpid(p, nullptr, 0);
      restore();
      throw Error(str("data parallel: could not start worker ", r, " (fork: ", std::strerror(e),
                      ")"));
    }
    pids.push_back(pid);
    g_worker_pids[r] = pid;
    g_workers = int(r + 1);
  }

  auto rank_of = [&](pid_t p) {
    for (size_t r = 0; r < pids.size(); ++r)
      if (pids[r] == p) return int64_t(r);
    return int64_t(-1);
  };
  int64_t running = world, failed_rank = -1;
  int result = 0;
  std::chrono::steady_clock::time_point kill_at{};
  bool terminating = false;
  while (running > 0) {
    int status = 0;
    const pid_t p = ::waitpid(-1, &status, terminating ? WNOHANG : 0);
    if (p < 0) {
      if (errno == EINTR) continue;
      break;  // no children left
    }
    if (p == 0) {  // terminating, nobody exited yet
      if (std::chrono::steady_clock::now() >= kill_at) {
        for (pid_t q : pids)
          if (q > 0) ::kill(q, SIGKILL);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    const int64_t r = rank_of(p);
    if (r < 0) continue;
    pids[size_t(r)] = -1;
    g_worker_pids[r] = -1;
    --running;
    const int code = exit_code(status);
    if (code != 0 && failed_rank < 0) {
      failed_rank = r;
      result = code;
      // 130: Ctrl-C, which every worker saw; they stop together after the current step.
      if (running > 0 && code != 130) {
        for (pid_t q : pids)
          if (q > 0) ::kill(q, SIGTERM);
        terminating = true;
        kill_at = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(int64_t(grace_s * 1000));
      }
    }
  }
  restore();
  if (failed_rank >= 0 && result != 130)
    err << "error: data parallel: worker rank " << failed_rank << " of " << world
        << " exited with code " << result
        << (world > 1 ? "; the other workers were stopped" : "") << "\n";
  return result;
}

bool select_local_gpu(const std::function<const char*(const char*)>& getenv,
                      const std::function<void(const char*, const char*)>& setenv) {
  if (getenv("FLASHGRAD_WORKER")) return false;  // run_workers already chose
  const DistEnv env = dist_env_from(getenv);
  if (env.world <= 1) return false;
  const char* v = getenv("CUDA_VISIBLE_DEVICES");
  std::string device = std::to_string(env.local_rank);
  if (v && *v) {
    const std::vector<std::string> list = split_commas(v);
    FG_CHECK(env.local_rank < int64_t(list.size()), "data parallel: local rank ", env.local_rank,
             " but CUDA_VISIBLE_DEVICES=\"", v, "\" lists ", list.size(), " device(s)");
    device = list[size_t(env.local_rank)];
  }
  setenv("CUDA_VISIBLE_DEVICES", device.c_str());
  return true;
}

}  // namespace fg::train
