// The single-host launcher of data-parallel workers (train/launch.h).
#include "train/launch.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <ostream>
#include <thread>
#include <vector>

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
volatile sig_atomic_t g_terminated = 0;  // the launcher got SIGTERM
volatile pid_t g_worker_pids[kMaxWorkers];

extern "C" void forward_sigterm(int) {
  const int saved = errno;
  g_terminated = 1;
  for (int i = 0; i < g_workers; ++i)
    if (g_worker_pids[i] > 0) ::kill(g_worker_pids[i], SIGTERM);
  errno = saved;
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

void heartbeat(bool waiting) {
  static const int fd = [] {
    const char* v = std::getenv("FLASHGRAD_HEARTBEAT_FD");
    return v && *v ? std::atoi(v) : -1;
  }();
  if (fd < 0) return;
  const char c = waiting ? 'W' : 'B';
  // Non-blocking, no SIGPIPE: a launcher that is gone or behind must never stop a worker.
  const ssize_t ignored = ::send(fd, &c, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
  (void)ignored;
}

int run_workers(const std::vector<std::string>& argv, int64_t world, int port,
                std::ostream& err, double grace_s, double hang_s) {
  FG_CHECK(!argv.empty() && world >= 1 && world <= kMaxWorkers,
           "run_workers: no command, or not 1 to ", kMaxWorkers, " workers");
  const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
  const std::string visible = v ? v : "";
  // The watchdog's sockets: [r][0] the launcher's end, [r][1] worker r's (close-on-exec
  // except in worker r itself).
  std::vector<std::array<int, 2>> beat(static_cast<size_t>(hang_s > 0 ? world : 0), {-1, -1});
  auto close_beats = [&] {
    for (auto& s : beat)
      for (int& fd : s)
        if (fd >= 0) ::close(fd), fd = -1;
  };
  for (auto& s : beat) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      const int e = errno;
      close_beats();
      throw Error(str("data parallel: no socket pair for the hang watchdog (",
                      std::strerror(e), ")"));
    }
    s = {fds[0], fds[1]};
    ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  }
  // Everything a child needs is built before fork: the child only calls async-signal-safe
  // functions (the launcher may have threads, e.g. the CUDA driver's, whose locks a child
  // must not wait for).
  std::vector<std::vector<std::string>> env_text(static_cast<size_t>(world));
  std::vector<std::vector<char*>> envp(static_cast<size_t>(world));
  struct CloseOnThrow {  // the sockets, should building an environment throw
    std::function<void()> f;
    bool armed = true;
    ~CloseOnThrow() { if (armed) f(); }
  } close_on_throw{close_beats};
  for (int64_t r = 0; r < world; ++r) {
    auto vars = worker_env(r, world, port, visible);
    if (hang_s > 0) vars.emplace_back("FLASHGRAD_HEARTBEAT_FD", std::to_string(beat[size_t(r)][1]));
    std::vector<std::string>& text = env_text[size_t(r)];
    for (char** e = environ; *e; ++e) {
      const std::string kv = *e;
      const std::string key = kv.substr(0, kv.find('='));
      bool replaced = false;
      for (const auto& [k, val] : vars) replaced = replaced || k == key;
      if (!replaced) text.push_back(kv);
    }
    for (const auto& [k, val] : vars) text.push_back(k + "=" + val);
    for (std::string& t : text) envp[size_t(r)].push_back(t.data());
    envp[size_t(r)].push_back(nullptr);
  }
  close_on_throw.armed = false;
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const std::string exec_failed = "error: a worker could not start '" + argv[0] + "'\n";

  // The launcher outlives its workers: Ctrl-C (sent to the whole group) is theirs to act on;
  // SIGTERM is passed on to them; SIGCHLD must not be ignored, or waitpid finds nobody.
  struct sigaction ignore {}, dfl {}, forward {}, old_int {}, old_term {}, old_chld {};
  ignore.sa_handler = SIG_IGN;
  dfl.sa_handler = SIG_DFL;
  forward.sa_handler = forward_sigterm;
  sigemptyset(&ignore.sa_mask);
  sigemptyset(&dfl.sa_mask);
  sigemptyset(&forward.sa_mask);
  g_workers = 0;
  g_terminated = 0;
  sigaction(SIGINT, &ignore, &old_int);
  sigaction(SIGTERM, &forward, &old_term);
  sigaction(SIGCHLD, &dfl, &old_chld);
  auto restore = [&] {
    g_workers = 0;
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    sigaction(SIGCHLD, &old_chld, nullptr);
  };

  const pid_t launcher = ::getpid();
  std::vector<pid_t> pids;
  for (int64_t r = 0; r < world; ++r) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      sigaction(SIGINT, &old_int, nullptr);
      sigaction(SIGTERM, &old_term, nullptr);
      sigaction(SIGCHLD, &old_chld, nullptr);
      // A launcher that dies (even by SIGKILL) takes its workers with it.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != launcher) ::_exit(1);
      if (hang_s > 0) ::fcntl(beat[size_t(r)][1], F_SETFD, 0);  // its own socket stays open
      ::execve(args[0], args.data(), envp[size_t(r)].data());
      const ssize_t ignored = ::write(STDERR_FILENO, exec_failed.data(), exec_failed.size());
      (void)ignored;
      ::_exit(127);
    }
    if (pid < 0) {
      const int e = errno;
      for (pid_t p : pids) ::kill(p, SIGKILL);
      for (pid_t p : pids) ::waitpid(p, nullptr, 0);
      restore();
      close_beats();
      throw Error(str("data parallel: could not start worker ", r, " (fork: ", std::strerror(e),
                      ")"));
    }
    pids.push_back(pid);
    g_worker_pids[r] = pid;
    g_workers = int(r + 1);
  }
  for (auto& s : beat) ::close(s[1]), s[1] = -1;  // the workers' ends are theirs alone

  // Wait. The first failure stops the rest at once (SIGTERM, then SIGKILL after grace_s); a
  // Ctrl-C exit (130) gives the others 3 grace_s to finish their step and stop themselves.
  using steady = std::chrono::steady_clock;
  auto after = [](double s) { return steady::now() + std::chrono::milliseconds(int64_t(s * 1000)); };
  int64_t running = world, failed_rank = -1;
  int failed_code = 0;
  bool interrupted = false, stopping = false, termed = false;
  steady::time_point term_at{}, kill_at{};
  auto stop_others = [&](double delay) {
    const steady::time_point t = after(delay);
    if (!stopping || t < term_at) term_at = t, kill_at = after(delay + grace_s);
    stopping = true;
  };
  // The watchdog's view: each worker's last word (waiting or not) and when it came.
  std::vector<bool> waiting(static_cast<size_t>(world), false);
  std::vector<steady::time_point> said(static_cast<size_t>(world), steady::now());
  steady::time_point last_word = steady::now();
  bool hang_fired = false;
  auto listen = [&] {  // reads what the workers said (100 ms at most)
    std::vector<pollfd> fds;
    for (const auto& s : beat) fds.push_back({s[0], POLLIN, 0});
    if (::poll(fds.data(), nfds_t(fds.size()), 100) <= 0) return;
    for (size_t r = 0; r < fds.size(); ++r) {
      if (fds[r].fd < 0) continue;
      char buf[64];
      ssize_t n;
      while ((n = ::read(fds[r].fd, buf, sizeof buf)) > 0) {
        waiting[r] = buf[n - 1] == 'W';
        said[r] = last_word = steady::now();
      }
      // The worker is gone (its end closed): stop listening, or poll would return at once
      // for ever.
      if (n == 0 || (fds[r].revents & (POLLHUP | POLLERR))) {
        ::close(beat[r][0]);
        beat[r][0] = -1;
      }
    }
  };
  auto hung = [&]() -> bool {  // fires the watchdog when its rule holds
    const steady::time_point now = steady::now();
    const auto secs = [&](steady::time_point t) { return std::chrono::duration<double>(now - t).count(); };
    if (secs(last_word) < hang_s) return false;  // somebody spoke lately
    bool someone_waits = false;
    for (int64_t r = 0; r < world; ++r)
      someone_waits = someone_waits || (pids[size_t(r)] > 0 && waiting[size_t(r)]);
    if (!someone_waits) return false;  // all at their own work: a long step, not a hang
    std::string names;
    for (int64_t r = 0; r < world; ++r)
      if (pids[size_t(r)] > 0 && !waiting[size_t(r)]) {
        names += (names.empty() ? "" : ", ") + std::to_string(r);
        if (failed_rank < 0) failed_rank = r;
      }
    if (names.empty()) {
      err << "error: data parallel: every worker has waited in a collective for "
          << int64_t(hang_s) << " s with none finishing (a stuck collective: NCCL or the "
          << "interconnect); stopping all " << world << " workers\n";
      failed_rank = 0;
    } else {
      err << "error: data parallel: worker rank " << names << " of " << world
          << " made no progress for " << int64_t(secs(said[size_t(failed_rank)]))
          << " s while the others waited for it in a collective (hung); stopping all "
          << world << " workers (--hang-timeout " << int64_t(hang_s) << " s)\n";
    }
    failed_code = 124;
    hang_fired = true;
    return true;
  };
  while (running > 0) {
    int status = 0;
    const bool watch = !beat.empty() && !stopping;
    const pid_t p = ::waitpid(-1, &status, stopping || watch ? WNOHANG : 0);
    if (p < 0) {
      if (errno == EINTR) continue;
      break;  // nobody left to wait for (running > 0 then: see below)
    }
    if (p == 0 && watch) {  // the watchdog's turn: nobody exited yet
      listen();
      if (hung()) stop_others(0);
      continue;
    }
    if (p == 0) {  // stopping, and nobody exited yet
      const steady::time_point now = steady::now();
      if (!termed && now >= term_at) {
        for (pid_t q : pids)
          if (q > 0) ::kill(q, SIGTERM);
        termed = true;
      }
      if (now >= kill_at)
        for (pid_t q : pids)
          if (q > 0) ::kill(q, SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    int64_t r = -1;
    for (size_t i = 0; i < pids.size(); ++i)
      if (pids[i] == p) r = int64_t(i);
    if (r < 0) continue;
    g_worker_pids[r] = -1;
    pids[size_t(r)] = -1;
    --running;
    const int code = exit_code(status);
    if (code == 0 || termed) continue;  // codes after our own SIGTERM are ours
    if (code == 130) {
      interrupted = true;
      if (running > 0) stop_others(3 * grace_s);
    } else {
      if (failed_rank < 0) failed_rank = r, failed_code = code;
      if (running > 0) stop_others(0);
    }
  }
  restore();
  close_beats();
  if (g_terminated) {
    err << "error: data parallel: the launcher got SIGTERM and stopped its " << world
        << " workers\n";
    return 128 + SIGTERM;
  }
  if (running > 0) {
    err << "error: data parallel: lost track of " << running << " worker(s) (waitpid: "
        << std::strerror(errno) << ")\n";
    return 1;
  }
  if (hang_fired) return failed_code;  // (its line is written)
  if (failed_rank >= 0) {
    err << "error: data parallel: worker rank " << failed_rank << " of " << world
        << " exited with code " << failed_code
        << (world > 1 ? "; the other workers were stopped" : "") << "\n";
    return failed_code;
  }
  return interrupted ? 130 : 0;
}

bool launched_worker() { return std::getenv("FLASHGRAD_WORKER") != nullptr; }

bool select_local_gpu(const std::function<const char*(const char*)>& getenv,
                      const std::function<void(const char*, const char*)>& setenv) {
  if (getenv("FLASHGRAD_WORKER")) return false;  // run_workers already chose
  const DistEnv env = dist_env_from(getenv);
  if (env.world <= 1) return false;
  const char* v = getenv("CUDA_VISIBLE_DEVICES");
  std::string device = std::to_string(env.local_rank);
  if (v && *v) {
    const std::vector<std::string> list = split_commas(v);
    // One entry: the scheduler already gave this task its GPU (Slurm's per-task binding).
    if (list.size() == 1) return false;
    FG_CHECK(env.local_rank < int64_t(list.size()), "data parallel: local rank ", env.local_rank,
             " but CUDA_VISIBLE_DEVICES=\"", v, "\" lists ", list.size(), " device(s)");
    device = list[size_t(env.local_rank)];
  }
  setenv("CUDA_VISIBLE_DEVICES", device.c_str());
  return true;
}

}  // namespace fg::train
