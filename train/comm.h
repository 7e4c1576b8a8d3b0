// The data-parallel group of one worker process: NCCL across GPUs, one process per GPU, as
// PyTorch DDP and llm.c do it.
//
//   DistEnv env = dist_env_from(getenv);              // train/dist_env.h
//   auto comm = Communicator::create(env);            // world 1: every call does nothing
//   ... backward ...
//   comm->all_reduce_mean(grads);                     // every rank now holds the mean
//
// How the ranks meet: rank 0 makes the NCCL unique id and hands it to the others over TCP
// (exchange_bytes below) at MASTER_ADDR, port FLASHGRAD_ID_PORT when set, else MASTER_PORT + 1
// (torchrun's own rendezvous store already listens on MASTER_PORT). `flashgrad train --gpus N`
// sets all of these for the workers it starts (train/launch.h).
//
// A world of one process is the single-GPU (or CPU) path through the same code: no NCCL, no
// sockets. A larger world needs a CUDA build with NCCL; without it create() says what to
// install. Every collective must be called by every rank, with the same tensors (shapes,
// dtypes, order): a rank that skips one leaves the others waiting.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tensor/tensor.h"
#include "train/dist_env.h"

namespace fg::train {

// Whether this build can run data-parallel over several GPUs (CUDA and NCCL found by CMake).
bool nccl_available();

class Communicator {
 public:
  // The group of `env` (its rank and world). Throws naming what is missing: NCCL in this
  // build, rank 0 at the rendezvous address within timeout_s, or NCCL's own error.
  static std::unique_ptr<Communicator> create(const DistEnv& env, double timeout_s = 300);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int64_t rank() const { return rank_; }
  int64_t world() const { return world_; }
  bool lead() const { return rank_ == 0; }  // the rank that prints and writes

  // The dtype tensors travel and are summed in when averaged: their own (nullopt, the
  // default), f32 or bf16. A tensor of another floating dtype (f32, bf16, f16) is converted
  // to it first, reduced (NCCL's sum), and converted back into the tensor. bf16 halves the
  // bytes of fp32 gradients (PyTorch DDP's bf16 compression hook); f32 sums bf16 gradients
  // without rounding at every hop of the ring. f64 tensors always go as they are.
  void set_reduce_dtype(std::optional<DType> dtype);
  std::optional<DType> reduce_dtype() const { return reduce_dtype_; }
  // Replaces each tensor (contiguous, on the GPU; f32, f64, bf16 or f16) by its mean over
  // the ranks, in place, all of them in one grouped NCCL launch. Undefined tensors are skipped
  // (on every rank alike: the list must match). With `roots` (one rank per tensor), tensor i's
  // mean is needed on rank roots[i] only (ZeRO-1: its owner): it is reduced there and the other
  // ranks' copies are left as they were, or nearly (bf16 reduction rounds them).
  void all_reduce_mean(const std::vector<Tensor>& tensors,
                       const std::vector<int64_t>* roots = nullptr);
  // The same, overlapped: start_mean queues the averaging of `tensors` on the communicator's
  // own CUDA stream, behind everything queued so far on the default stream (so call it once
  // the tensors are final), and returns at once; finish_means makes the default stream wait
  // for every averaging started. Between the two, nothing may write those tensors.
  void start_mean(const std::vector<Tensor>& tensors, const std::vector<int64_t>* roots = nullptr);
  void finish_means();
  // Copies tensor i from rank roots[i] to every other rank, in place (ZeRO-1: the updated
  // weights from their owners), in one grouped launch on the default stream.
  void broadcast(const std::vector<Tensor>& tensors, const std::vector<int64_t>& roots);
  // Copies tensor i from rank from[i] to rank 0 (ZeRO-1: the optimizer state, for a
  // checkpoint), in one grouped launch: rank from[i] sends tensors[i], rank 0 receives into
  // its tensors[i]; the other ranks' entries are not read (may be undefined), nor are those
  // with from[i] = 0.
  void gather_to_lead(const std::vector<Tensor>& tensors, const std::vector<int64_t>& from);
  // The sum of x over the ranks (a host value, through a one-element device buffer).
  double all_reduce_sum(double x);
  // Whether any rank passes true (Ctrl-C seen by one rank stops them all at the same step).
  bool any(bool flag) { return world_ > 1 ? all_reduce_sum(flag ? 1.0 : 0.0) > 0.5 : flag; }

 private:
  Communicator(int64_t rank, int64_t world);
  struct Nccl;
  int64_t rank_ = 0, world_ = 1;
  std::optional<DType> reduce_dtype_;
  std::unique_ptr<Nccl> nccl_;
};

// Rank 0 sends `payload` to every other rank over TCP and returns it; the other ranks connect
// to host:port (retrying until timeout_s, since rank 0 may start later) and return what they
// receive. Throws naming the address and the reason when rank 0 cannot be reached, or when
// rank 0 does not hear from every rank, within timeout_s.
std::string exchange_bytes(int64_t rank, int64_t world, const std::string& host, int port,
                           const std::string& payload, double timeout_s);

// The port rank 0 hands the NCCL id out on: FLASHGRAD_ID_PORT when set (1..65535), else
// env.port + 1. `getenv` as in dist_env_from.
int id_port(const DistEnv& env, const std::function<const char*(const char*)>& getenv);

}  // namespace fg::train
