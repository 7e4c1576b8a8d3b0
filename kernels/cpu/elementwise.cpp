// CPU elementwise kernels: unary, binary, binary-with-scalar and where over strided operands.
//
// The reference implementation. Each output element is computed independently from the
// per-element math of kernels/common/elementwise_math.h (shared with the CUDA kernels), so
// splitting big loops over threads changes nothing in the results.
#include <algorithm>
#include <thread>
#include <vector>

#include "core/parallel.h"
#include "kernels/common/elementwise_math.h"
#include "kernels/kernels.h"
#include "core/error.h"

namespace fg {

const char* unary_op_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::neg: return "neg";
    case UnaryOp::exp: return "exp";
    case UnaryOp::log: return "log";
    case UnaryOp::sqrt: return "sqrt";
    case UnaryOp::rsqrt: return "rsqrt";
    case UnaryOp::tanh: return "tanh";
    case UnaryOp::relu: return "relu";
    case UnaryOp::gelu: return "gelu";
    case UnaryOp::abs: return "abs";
    case UnaryOp::sigmoid: return "sigmoid";
    case UnaryOp::sin: return "sin";
    case UnaryOp::cos: return "cos";
    case UnaryOp::square: return "square";
    case UnaryOp::reciprocal: return "reciprocal";
    case UnaryOp::sign: return "sign";
  }
  return "unknown_unary";
}

const char* binary_op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    case BinaryOp::div: return "div";
    case BinaryOp::pow: return "pow";
    case BinaryOp::maximum: return "maximum";
    case BinaryOp::minimum: return "minimum";
    case BinaryOp::eq: return "eq";
    case BinaryOp::ne: return "ne";
    case BinaryOp::lt: return "lt";
    case BinaryOp::le: return "le";
    case BinaryOp::gt: return "gt";
    case BinaryOp::ge: return "ge";
    case BinaryOp::gelu_backward: return "gelu_backward";
    case BinaryOp::relu_backward: return "relu_backward";
    case BinaryOp::tanh_backward: return "tanh_backward";
    case BinaryOp::sigmoid_backward: return "sigmoid_backward";
  }
  return "unknown_binary";
}

namespace cpu {
namespace {


// The loops below walk stretches along the innermost dimension (for_each_run): the common
// cases (every operand contiguous, or the second operand broadcast along the stretch, as a
// bias is) get plain loops the compiler vectorises; any other strides a strided loop.
template <typename T, UnaryOp OP>
void unary_loop(int64_t n, const StridedIndexer<2>& idx, const T* in, T* out) {
  using C = compute_t<T>;
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    for_each_run(idx, begin, end, [&](const int64_t* off, const int64_t* st, int64_t len) {
      T* o = out + off[0];
      const T* x = in + off[1];
      if (st[0] == 1 && st[1] == 1) {
        for (int64_t j = 0; j < len; ++j) o[j] = store_as<T>(unary_apply<OP, C>(load_as<C>(x[j])));
      } else {
        for (int64_t j = 0; j < len; ++j)
          o[j * st[0]] = store_as<T>(unary_apply<OP, C>(load_as<C>(x[j * st[1]])));
      }
    });
  });
}

template <typename T, BinaryOp OP>
void binary_loop(int64_t n, const StridedIndexer<3>& idx, const T* a, const T* b, T* out) {
  using C = compute_t<T>;
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    for_each_run(idx, begin, end, [&](const int64_t* off, const int64_t* st, int64_t len) {
      T* o = out + off[0];
      const T* x = a + off[1];
      const T* y = b + off[2];
      if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
        for (int64_t j = 0; j < len; ++j)
          o[j] = store_as<T>(binary_apply<OP, C>(load_as<C>(x[j]), load_as<C>(y[j])));
      } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {
        const C yv = load_as<C>(y[0]);
        for (int64_t j = 0; j < len; ++j) o[j] = store_as<T>(binary_apply<OP, C>(load_as<C>(x[j]), yv));
      } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {
        const C xv = load_as<C>(x[0]);
        for (int64_t j = 0; j < len; ++j) o[j] = store_as<T>(binary_apply<OP, C>(xv, load_as<C>(y[j])));
      } else {
        for (int64_t j = 0; j < len; ++j)
          o[j * st[0]] = store_as<T>(
              binary_apply<OP, C>(load_as<C>(x[j * st[1]]), load_as<C>(y[j * st[2]])));
      }
    });
  });
}

template <typename T, BinaryOp OP>
void binary_scalar_loop(int64_t n, const StridedIndexer<2>& idx, const T* a, double s,
                        bool scalar_first, T* out) {
  using C = compute_t<T>;
  const C sc = C(s);
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    for_each_run(idx, begin, end, [&](const int64_t* off, const int64_t* st, int64_t len) {
      T* o = out + off[0];
      const T* x = a + off[1];
      if (st[0] == 1 && st[1] == 1 && !scalar_first) {
        for (int64_t j = 0; j < len; ++j) o[j] = store_as<T>(binary_apply<OP, C>(load_as<C>(x[j]), sc));
      } else {
        for (int64_t j = 0; j < len; ++j) {
          const C v = load_as<C>(x[j * st[1]]);
          o[j * st[0]] = store_as<T>(scalar_first ? binary_apply<OP, C>(sc, v) : binary_apply<OP, C>(v, sc));
        }
      }
    });
  });
}

template <typename T, typename CondT>
void where_loop(int64_t n, const StridedIndexer<4>& idx, const CondT* cond, const T* a,
                const T* b, T* out) {
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    int64_t off[4];
    for (int64_t i = begin; i < end; ++i) {
      idx.offsets(i, off);
      bool take_a = load_as<compute_t<CondT>>(cond[off[1]]) != compute_t<CondT>(0);
      out[off[0]] = take_a ? a[off[2]] : b[off[3]];
    }
  });
}

}  // namespace

void unary(UnaryOp op, DType dtype, int64_t n, const StridedIndexer<2>& idx, const void* in,
           void* out) {
  check_elementwise_dtype("unary", unary_op_name(op), unary_supports_int(op), dtype);
  if (n == 0) return;
  FG_DISPATCH_ALL(dtype, "unary", [&] {
    FG_DISPATCH_UNARY_OP(op, [&] {
      unary_loop<scalar_t, kOp>(n, idx, static_cast<const scalar_t*>(in),
                                static_cast<scalar_t*>(out));
    });
  });
}

void binary(BinaryOp op, DType dtype, int64_t n, const StridedIndexer<3>& idx, const void* a,
            const void* b, void* out) {
  check_elementwise_dtype("binary", binary_op_name(op), binary_supports_int(op), dtype);
  if (n == 0) return;
  FG_DISPATCH_ALL(dtype, "binary", [&] {
    FG_DISPATCH_BINARY_OP(op, [&] {
      binary_loop<scalar_t, kOp>(n, idx, static_cast<const scalar_t*>(a),
                                 static_cast<const scalar_t*>(b), static_cast<scalar_t*>(out));
    });
  });
}

void binary_scalar(BinaryOp op, DType dtype, int64_t n, const StridedIndexer<2>& idx,
                   const void* a, double s, bool scalar_first, void* out) {
  check_elementwise_dtype("binary_scalar", binary_op_name(op), binary_supports_int(op), dtype);
  if (n == 0) return;
  FG_DISPATCH_ALL(dtype, "binary_scalar", [&] {
    FG_DISPATCH_BINARY_OP(op, [&] {
      binary_scalar_loop<scalar_t, kOp>(n, idx, static_cast<const scalar_t*>(a), s,
                                        scalar_first, static_cast<scalar_t*>(out));
    });
  });
}

void where(DType dtype, DType cond_dtype, int64_t n, const StridedIndexer<4>& idx,
           const void* cond, const void* a, const void* b, void* out) {
  if (n == 0) return;
  FG_DISPATCH_ALL(dtype, "where", [&] {
    using value_t = scalar_t;
    FG_DISPATCH_ALL(cond_dtype, "where (condition)", [&] {
      where_loop<value_t, scalar_t>(n, idx, static_cast<const scalar_t*>(cond),
                                    static_cast<const value_t*>(a), static_cast<const value_t*>(b),
                                    static_cast<value_t*>(out));
    });
  });
}

}  // namespace cpu
}  // namespace fg
