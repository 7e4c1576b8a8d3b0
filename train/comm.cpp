// The data-parallel communicator (train/comm.h): the NCCL group and the TCP hand-out of its id.
#include "train/comm.h"
#include "train/launch.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/error.h"

#if defined(FLASHGRAD_WITH_NCCL)
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace fg::train {

namespace {

using steady = std::chrono::steady_clock;

// The hand-out's protocol: a rank sends (magic, its rank) as two big-endian 32-bit words; rank
// 0 answers with the payload's length (32 bits) and the payload.
constexpr uint32_t kHelloMagic = 0x46474944u;  // "FGID"
constexpr uint32_t kMaxPayload = 1u << 20;
constexpr auto kHelloWait = std::chrono::seconds(5);

double seconds_left(steady::time_point deadline) {
  return std::chrono::duration<double>(deadline - steady::now()).count();
}

// Closes a socket when it goes out of scope.
struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// Waits until fd is readable, or the deadline; false on timeout.
bool wait_readable(int fd, steady::time_point deadline) {
  for (;;) {
    const double left = seconds_left(deadline);
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, int(std::min(left, 1.0) * 1000) + 1);
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

void send_all(int fd, const void* data, size_t n, const std::string& who) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    FG_CHECK(k > 0, who, ": sending failed (", std::strerror(errno), ")");
    p += k;
    n -= size_t(k);
  }
}

void recv_all(int fd, void* data, size_t n, steady::time_point deadline, const std::string& who) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    FG_CHECK(wait_readable(fd, deadline), who, ": timed out waiting for data");
    const ssize_t k = ::recv(fd, p, n, 0);
    if (k < 0 && errno == EINTR) continue;
    FG_CHECK(k > 0, who, ": the connection closed early",
             k < 0 ? std::string(" (") + std::strerror(errno) + ")" : std::string());
    p += k;
    n -= size_t(k);
  }
}

}  // namespace

std::string exchange_bytes(int64_t rank, int64_t world, const std::string& host, int port,
                           const std::string& payload, double timeout_s) {
  if (world <= 1) return payload;
  const auto deadline = steady::now() + std::chrono::duration_cast<steady::duration>(
                                            std::chrono::duration<double>(timeout_s));
  const std::string where = host + ":" + std::to_string(port);
  if (rank == 0) {
    const std::string who = "data parallel: rank 0 handing out the NCCL id on port " +
                            std::to_string(port);
    Fd s(::socket(AF_INET, SOCK_STREAM, 0));
    FG_CHECK(s.fd >= 0, who, ": socket() failed (", std::strerror(errno), ")");
    const int one = 1;
    ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(uint16_t(port));
    FG_CHECK(::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, who,
             ": cannot listen there (", std::strerror(errno), "); choose another port with "
             "FLASHGRAD_ID_PORT or MASTER_PORT");
    FG_CHECK(::listen(s.fd, int(world)) == 0, who, ": listen() failed (", std::strerror(errno),
             ")");
    const uint32_t n = htonl(uint32_t(payload.size()));
    std::vector<bool> served(size_t(world), false);
    for (int64_t count = 1; count < world;) {
      FG_CHECK(wait_readable(s.fd, deadline), who, ": only ", count - 1, " of ", world - 1,
               " other ranks connected within ", timeout_s, " s; check that every rank started "
               "and can reach this host");
      Fd c(::accept(s.fd, nullptr, nullptr));
      if (c.fd < 0 && (errno == EINTR || errno == ECONNABORTED)) continue;
      FG_CHECK(c.fd >= 0, who, ": accept() failed (", std::strerror(errno), ")");
      // A rank says who it is first; anything else that connects (a port scan, a health
      // check, a rank asking twice) is dropped and not counted.
      uint32_t hello[2] = {0, 0};
      try {
        recv_all(c.fd, hello, sizeof hello, std::min(deadline, steady::now() + kHelloWait), who);
      } catch (const Error&) {
        continue;
      }
      const uint32_t r = ntohl(hello[1]);
      if (ntohl(hello[0]) != kHelloMagic || r == 0 || r >= uint64_t(world) || served[r]) continue;
      send_all(c.fd, &n, sizeof n, who);
      send_all(c.fd, payload.data(), payload.size(), who);
      served[r] = true;
      ++count;
    }
    return payload;
  }
  const std::string who = "data parallel: rank " + std::to_string(rank) +
                          " fetching the NCCL id from rank 0 at " + where;
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  const int gai = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  FG_CHECK(gai == 0 && res, who, ": cannot resolve '", host, "' (", ::gai_strerror(gai),
           "); set MASTER_ADDR to rank 0's host name or address");
  std::string last_error = "no attempt";
  for (;;) {
    Fd s(::socket(AF_INET, SOCK_STREAM, 0));
    if (s.fd >= 0 && ::connect(s.fd, res->ai_addr, res->ai_addrlen) == 0) {
      try {
        const uint32_t hello[2] = {htonl(kHelloMagic), htonl(uint32_t(rank))};
        send_all(s.fd, hello, sizeof hello, who);
        uint32_t n = 0;
        recv_all(s.fd, &n, sizeof n, deadline, who);
        FG_CHECK(ntohl(n) <= kMaxPayload, who, ": the server there sent a length of ", ntohl(n),
                 " bytes, which is no NCCL id; is that port another service?");
        std::string out(size_t(ntohl(n)), '\0');
        recv_all(s.fd, out.data(), out.size(), deadline, who);
        ::freeaddrinfo(res);
        return out;
      } catch (const Error& e) {
        last_error = e.what();  // dropped by rank 0, or not rank 0 at all: try again
      }
    } else {
      last_error = std::strerror(errno);
    }
    if (seconds_left(deadline) <= 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::freeaddrinfo(res);
  throw Error(str(who, ": rank 0 could not be reached within ", timeout_s, " s (last attempt: ",
                  last_error, "); check MASTER_ADDR, the port (FLASHGRAD_ID_PORT, else "
                  "MASTER_PORT + 1) and that rank 0 started"));
}

int id_port(const DistEnv& env, const std::function<const char*(const char*)>& getenv) {
  if (const char* v = getenv("FLASHGRAD_ID_PORT")) {
    char* end = nullptr;
    const long p = std::strtol(v, &end, 10);
    FG_CHECK(*v && end && *end == '\0' && p >= 1 && p <= 65535, "data parallel: "
             "FLASHGRAD_ID_PORT=\"", v, "\" is not a TCP port (1 to 65535)");
    return int(p);
  }
  FG_CHECK(env.port >= 1 && env.port < 65535, "data parallel: MASTER_PORT=", env.port,
           " leaves no port above it for the NCCL id (MASTER_PORT + 1); set FLASHGRAD_ID_PORT");
  return env.port + 1;
}

// ---- NCCL ----

#if defined(FLASHGRAD_WITH_NCCL)

bool nccl_available() { return true; }

namespace {

void nccl_check(ncclResult_t r, const char* what) {
  FG_CHECK(r == ncclSuccess, "data parallel: ", what, " failed: ", ncclGetErrorString(r),
           " (NCCL_DEBUG=WARN in the environment shows NCCL's own account)");
}

ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::f16: return ncclFloat16;
    default: break;
  }
  throw Error(str("data parallel: NCCL cannot carry a ", dtype_name(d),
                  " tensor (f32, f64, bf16 or f16)"));
}

void cuda_check(cudaError_t e, const char* what) {
  FG_CHECK(e == cudaSuccess, "data parallel: ", what, " failed: ", cudaGetErrorString(e));
}

}  // namespace

// The NCCL communicator, and the stream and events of the overlapped averaging: the stream
// is its own (non-blocking), apart from the per-thread default stream the kernels run on, so
// NCCL runs beside the backward; events order the two where the data demands it.
struct Communicator::Nccl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t ready = nullptr, done = nullptr;
  bool pending = false;
  // bf16 reduction: (the f32 tensor, its bf16 copy on the wire) of the averagings started and
  // not yet finished; the copies live until NCCL is done with them.
  std::vector<std::pair<Tensor, Tensor>> pending_back;
  ~Nccl() {
    if (comm) ncclCommDestroy(comm);
    if (ready) cudaEventDestroy(ready);
    if (done) cudaEventDestroy(done);
    if (stream) cudaStreamDestroy(stream);
  }
};

namespace {

// Checks, before a group opens (so that nothing is left half-done), that NCCL can take
// `tensors` (and roots, one per tensor, when given).
void check_collective(const char* what, const std::vector<Tensor>& tensors,
                      const std::vector<int64_t>* roots, int64_t world) {
  FG_CHECK(!roots || roots->size() == tensors.size(), "data parallel: ", roots ? roots->size() : 0,
           " roots for ", tensors.size(), " tensors");
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    if (!t.defined()) continue;
    FG_CHECK(t.device().is_cuda() && t.is_contiguous(), "data parallel: ", what, " takes "
             "contiguous CUDA tensors, got one on ", t.device().str());
    nccl_type(t.dtype());
    if (roots)
      FG_CHECK((*roots)[i] >= 0 && (*roots)[i] < world, "data parallel: root ", (*roots)[i],
               " is outside the ", world, " ranks");
  }
}

// One grouped NCCL launch averaging `tensors` in place on `stream`: on every rank, or on
// roots[i] only for tensor i when roots are given.
void mean_in_place(ncclComm_t comm, const std::vector<Tensor>& tensors, cudaStream_t stream,
                   const std::vector<int64_t>* roots, int64_t world) {
  check_collective("averaging", tensors, roots, world);
  nccl_check(ncclGroupStart(), "ncclGroupStart");
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    if (!t.defined()) continue;
    if (roots)
      nccl_check(ncclReduce(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_type(t.dtype()),
                            ncclAvg, int((*roots)[i]), comm, stream),
                 "ncclReduce");
    else
      nccl_check(ncclAllReduce(t.data_ptr(), t.data_ptr(), size_t(t.numel()),
                               nccl_type(t.dtype()), ncclAvg, comm, stream),
                 "ncclAllReduce");
  }
  nccl_check(ncclGroupEnd(), "ncclGroupEnd");
}

// The tensors NCCL reduces in place of `tensors`: the tensors themselves, or copies in the
// reduction dtype `wire` of those of another dtype (queued on the calling thread's default
// stream), listed in `back` with the tensor each must be converted back into.
std::vector<Tensor> on_the_wire(const std::vector<Tensor>& tensors, std::optional<DType> wire,
                                std::vector<std::pair<Tensor, Tensor>>& back) {
  std::vector<Tensor> out;
  for (const Tensor& t : tensors) {
    if (wire && t.defined() && t.dtype() != *wire && t.dtype() != DType::f64) {
      Tensor c = t.to(*wire);
      back.emplace_back(t, c);
      out.push_back(c);
    } else {
      out.push_back(t);
    }
  }
  return out;
}

void convert_back(std::vector<std::pair<Tensor, Tensor>>& back) {
  for (auto& [dst, wire] : back) {
    Tensor d = dst;
    d.copy_(wire);
  }
  back.clear();
}

}  // namespace

std::unique_ptr<Communicator> Communicator::create(const DistEnv& env, double timeout_s) {
  std::unique_ptr<Communicator> c(new Communicator(env.rank, env.world));
  if (env.world == 1) return c;
  ncclUniqueId id{};
  if (env.rank == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  const int port = id_port(env, [](const char* n) { return std::getenv(n); });
  const std::string got =
      exchange_bytes(env.rank, env.world, env.master_addr, port,
                     std::string(reinterpret_cast<const char*>(&id), sizeof id), timeout_s);
  FG_CHECK(got.size() == sizeof id, "data parallel: the NCCL id from rank 0 has ", got.size(),
           " bytes, not ", sizeof id, " (flashgrad builds with different NCCL versions?)");
  std::memcpy(&id, got.data(), sizeof id);
  c->nccl_ = std::make_unique<Nccl>();
  nccl_check(ncclCommInitRank(&c->nccl_->comm, int(env.world), id, int(env.rank)),
             "ncclCommInitRank");
  cuda_check(cudaStreamCreateWithFlags(&c->nccl_->stream, cudaStreamNonBlocking),
             "cudaStreamCreateWithFlags");
  cuda_check(cudaEventCreateWithFlags(&c->nccl_->ready, cudaEventDisableTiming), "cudaEventCreate");
  cuda_check(cudaEventCreateWithFlags(&c->nccl_->done, cudaEventDisableTiming), "cudaEventCreate");
  return c;
}

void Communicator::all_reduce_mean(const std::vector<Tensor>& tensors,
                                   const std::vector<int64_t>* roots) {
  if (world_ == 1) return;
  // NCCL is a library of its own: stream 0 would be the legacy stream to it, so the calling
  // thread's default stream (where the gradients were made) is named explicitly.
  std::vector<std::pair<Tensor, Tensor>> back;
  mean_in_place(nccl_->comm, on_the_wire(tensors, reduce_dtype_, back), cudaStreamPerThread, roots,
                world_);
  convert_back(back);  // behind the reduction, on the same stream
}

void Communicator::start_mean(const std::vector<Tensor>& tensors,
                              const std::vector<int64_t>* roots) {
  if (world_ == 1) return;
  // The averaging starts once the default stream has produced the tensors.
  const std::vector<Tensor> wire = on_the_wire(tensors, reduce_dtype_, nccl_->pending_back);
  cuda_check(cudaEventRecord(nccl_->ready, cudaStreamPerThread), "cudaEventRecord");
  cuda_check(cudaStreamWaitEvent(nccl_->stream, nccl_->ready, 0), "cudaStreamWaitEvent");
  mean_in_place(nccl_->comm, wire, nccl_->stream, roots, world_);
  nccl_->pending = true;
}

void Communicator::finish_means() {
  if (world_ == 1 || !nccl_->pending) return;
  cuda_check(cudaEventRecord(nccl_->done, nccl_->stream), "cudaEventRecord");
  cuda_check(cudaStreamWaitEvent(cudaStreamPerThread, nccl_->done, 0), "cudaStreamWaitEvent");
  nccl_->pending = false;
  convert_back(nccl_->pending_back);  // after the wait: the averaged copies are final
}

void Communicator::broadcast(const std::vector<Tensor>& tensors,
                             const std::vector<int64_t>& roots) {
  if (world_ == 1) return;
  check_collective("broadcast", tensors, &roots, world_);
  nccl_check(ncclGroupStart(), "ncclGroupStart");
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    if (!t.defined()) continue;
    nccl_check(ncclBroadcast(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_type(t.dtype()),
                             int(roots[i]), nccl_->comm, cudaStreamPerThread),
               "ncclBroadcast");
  }
  nccl_check(ncclGroupEnd(), "ncclGroupEnd");
}

void Communicator::gather_to_lead(const std::vector<Tensor>& tensors,
                                  const std::vector<int64_t>& from) {
  if (world_ == 1) return;
  FG_CHECK(from.size() == tensors.size(), "data parallel: ", from.size(), " sources for ",
           tensors.size(), " tensors");
  std::vector<Tensor> mine;  // what this rank sends or receives, checked before the group
  std::vector<int64_t> peer;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (from[i] == 0 || (rank_ != 0 && from[i] != rank_)) continue;
    FG_CHECK(from[i] > 0 && from[i] < world_, "data parallel: source rank ", from[i],
             " is outside the ", world_, " ranks");
    mine.push_back(tensors[i]);
    peer.push_back(rank_ == 0 ? from[i] : 0);
  }
  check_collective("gathering", mine, nullptr, world_);
  nccl_check(ncclGroupStart(), "ncclGroupStart");
  for (size_t i = 0; i < mine.size(); ++i) {
    const Tensor& t = mine[i];
    if (rank_ == 0)
      nccl_check(ncclRecv(t.data_ptr(), size_t(t.numel()), nccl_type(t.dtype()), int(peer[i]),
                          nccl_->comm, cudaStreamPerThread),
                 "ncclRecv");
    else
      nccl_check(ncclSend(t.data_ptr(), size_t(t.numel()), nccl_type(t.dtype()), int(peer[i]),
                          nccl_->comm, cudaStreamPerThread),
                 "ncclSend");
  }
  nccl_check(ncclGroupEnd(), "ncclGroupEnd");
}

double Communicator::all_reduce_sum(double x) {
  if (world_ == 1) return x;
  // Waiting for the other ranks from here (this is where a rank stops when another hangs: the
  // copy below already waits for the collectives queued before it): the launcher's watchdog is
  // told (train/launch.h).
  heartbeat(true);
  Tensor t = from_vector<double>({x}, {1}, TensorOptions(DType::f64).device(Device::cuda()));
  nccl_check(ncclAllReduce(t.data_ptr(), t.data_ptr(), 1, ncclFloat64, ncclSum, nccl_->comm,
                           cudaStreamPerThread),
             "ncclAllReduce");
  const double sum = t.item();
  heartbeat(false);
  return sum;
}

#else  // no NCCL in this build

bool nccl_available() { return false; }

struct Communicator::Nccl {};

std::unique_ptr<Communicator> Communicator::create(const DistEnv& env, double) {
  FG_CHECK(env.world == 1, "data-parallel training over ", env.world, " processes needs NCCL, "
           "and this flashgrad was built without it: install NCCL (Debian/Ubuntu: libnccl-dev; "
           "the CUDA container images ship it) and rebuild");
  return std::unique_ptr<Communicator>(new Communicator(0, 1));
}

void Communicator::all_reduce_mean(const std::vector<Tensor>&, const std::vector<int64_t>*) {}
void Communicator::start_mean(const std::vector<Tensor>&, const std::vector<int64_t>*) {}
void Communicator::broadcast(const std::vector<Tensor>&, const std::vector<int64_t>&) {}
void Communicator::gather_to_lead(const std::vector<Tensor>&, const std::vector<int64_t>&) {}
void Communicator::finish_means() {}
double Communicator::all_reduce_sum(double x) { return x; }

#endif

Communicator::Communicator(int64_t rank, int64_t world) : rank_(rank), world_(world) {}

void Communicator::set_reduce_dtype(std::optional<DType> dtype) {
  FG_CHECK(!dtype || *dtype == DType::f32 || *dtype == DType::bf16, "data parallel: gradients "
           "are reduced in their own dtype, fp32 or bf16, not ", dtype_name(*dtype));
  reduce_dtype_ = dtype;
}
Communicator::~Communicator() = default;

}  // namespace fg::train
