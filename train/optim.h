// AdamW, the learning-rate schedule and gradient-norm clipping.
//
// AdamW (Loshchilov & Hutter; torch.optim.AdamW): decoupled weight decay, applied only to
// tensors of two or more dims (weights, embeddings), never to 1-D ones (biases, LayerNorm), as
// GPT-2/nanoGPT do. Each step is one fused op per parameter (ops::adamw_, tensor/ops.h) on the
// parameter's device. Parameters in bf16/f16 get an fp32 master copy that the optimizer
// updates and rounds back into the parameter (mixed precision: the model computes in 16 bits,
// the updates accumulate in 32).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace fg::train {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct AdamWOptions {
  double lr_ = 1e-3, beta1_ = 0.9, beta2_ = 0.999, eps_ = 1e-8, weight_decay_ = 0.01;
  AdamWOptions& lr(double v) { lr_ = v; return *this; }
  AdamWOptions& betas(double b1, double b2) { beta1_ = b1; beta2_ = b2; return *this; }
  AdamWOptions& eps(double v) { eps_ = v; return *this; }
  AdamWOptions& weight_decay(double v) { weight_decay_ = v; return *this; }
};

class AdamW {
 public:
  // owned (empty: all): ZeRO-1's share of this rank, as set_owned() below; the state of the
  // other parameters is never allocated.
  AdamW(const NamedTensors& params, const AdamWOptions& options,
        const std::vector<bool>& owned = {});

  // One update of every parameter that has a gradient; grad_scale multiplies the gradients
  // first (clip_coefficient()). Increments step_count().
  void step(double grad_scale = 1.0);
  void zero_grad();
  void set_lr(double lr) { options_.lr_ = lr; }
  const AdamWOptions& options() const { return options_; }
  int64_t step_count() const { return step_; }

  struct ParamState {
    std::string name;
    Tensor param;
    Tensor exp_avg, exp_avg_sq;  // fp32, the parameter's shape and device
    Tensor master;               // fp32 copy for 16-bit parameters; undefined for fp32 ones
    bool decay = false;          // weight decay applies (dim >= 2)
    bool owned = true;           // this rank updates it (set_owned); else no moments, no master
  };
  const std::vector<ParamState>& states() const { return states_; }

  // The fp32 value of every parameter (the master copy where there is one): what a checkpoint
  // stores as the model's weights.
  NamedTensors fp32_weights() const;
  // The moments as "exp_avg.<name>" / "exp_avg_sq.<name>".
  NamedTensors state_tensors() const;
  // Restores the moments and the step count, and (when given) the fp32 weights into the master
  // copies and the parameters. Throws naming any missing or mis-shaped entry.
  void load_state(const std::map<std::string, Tensor>& moments, int64_t step,
                  const std::map<std::string, Tensor>* fp32_weights = nullptr);
  // Sets the master copies (and the parameters, rounded) from fp32 values, e.g. the exact
  // fp32 initialisation of a model that was then cast to bf16.
  void load_fp32_weights(const std::map<std::string, Tensor>& fp32_weights);

  // ZeRO stage 1 (Rajbhandari et al., 2020) at the granularity of whole parameters, as
  // PyTorch's ZeroRedundancyOptimizer: owned[i] says whether this rank updates parameter i
  // (states() order). The moments and master copy of the others are freed, and step()
  // updates owned parameters only; the caller brings the others' new values from their
  // owners. Parameters that become owned get their state back, zeroed (the moments) or from
  // the parameter (the master copy), to be filled from their owner (state_of). All true: the
  // unsharded optimizer.
  void set_owned(const std::vector<bool>& owned);
  bool owns(size_t i) const { return states_.at(i).owned; }
  // Parameter i's state as its owner holds it: exp_avg, exp_avg_sq and the fp32 weights (the
  // master copy, or the parameter itself when it is fp32). Only for owned parameters.
  std::vector<Tensor> state_of(size_t i) const;
  // Bytes of optimizer state held here (moments and master copies), and what holding every
  // parameter's would take.
  size_t state_bytes() const;
  size_t whole_state_bytes() const;

 private:
  // Gives s its moments (zero) and, for a 16-bit parameter, its master copy (from the parameter).
  static void allocate_state(ParamState& s);
  std::vector<ParamState> states_;
  AdamWOptions options_;
  int64_t step_ = 0;
};

// Linear warm-up from 0 to max_lr over `warmup` steps, then a cosine from max_lr down to
// min_lr at step `total`, and min_lr after. step counts from 0.
struct LRSchedule {
  double max_lr = 1e-3, min_lr = 1e-4;
  int64_t warmup = 0, total = 1;
  double at(int64_t step) const;
};

// The L2 norm of all gradients together (parameters without a gradient are skipped).
double grad_norm(const std::vector<Tensor>& params);
// The factor that brings a gradient norm down to max_norm: min(1, max_norm / (norm + 1e-6));
// 1 when max_norm <= 0 (no clipping).
double clip_coefficient(double norm, double max_norm);
// torch.nn.utils.clip_grad_norm_: scales the gradients in place; returns the norm before.
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm);

}  // namespace fg::train
