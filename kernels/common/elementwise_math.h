// The scalar math of the elementwise and reduction kernels, shared by the CPU and CUDA files.
//
// kernels/cpu/{elementwise,reduce}.cpp and kernels/cuda/{elementwise,reduce}.cu only differ in
// how they walk the elements; what happens to one element is defined once, here, so the two
// devices cannot drift apart. Everything is FG_HD (host and device) and templated on the
// compute type C: float for f32/bf16/f16, double for f64, int64_t for i32/i64 (integers
// compute in 64 bits so that i32 add/mul cannot hit signed-overflow UB before the store).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/half.h"
#include "kernels/kernels.h"
#include "core/error.h"

namespace fg {

// ---- compute type and conversions ----
template <typename T> struct compute_type { using type = T; };
template <> struct compute_type<bfloat16> { using type = float; };
template <> struct compute_type<float16> { using type = float; };
template <> struct compute_type<int32_t> { using type = int64_t; };
template <typename T> using compute_t = typename compute_type<T>::type;

// Loads a stored element into the compute type C.
template <typename C, typename T> FG_HD C load_as(T v) { return C(v); }
template <typename C> FG_HD C load_as(bfloat16 v) { return C(float(v)); }
template <typename C> FG_HD C load_as(float16 v) { return C(float(v)); }

// Stores a compute value as element type T (16-bit types round to nearest even).
template <typename T, typename C> FG_HD T store_as(C v) { return T(v); }
template <> FG_HD bfloat16 store_as<bfloat16, float>(float v) { return bfloat16(v); }
template <> FG_HD float16 store_as<float16, float>(float v) { return float16(v); }

// ---- which ops integers support ----
// Integer tensors get the ops with an exact integer meaning; the rest are float-only and the
// launchers reject integer dtypes with an error naming the op.
constexpr bool unary_supports_int(UnaryOp op) {
  return op == UnaryOp::neg || op == UnaryOp::abs || op == UnaryOp::relu ||
         op == UnaryOp::square || op == UnaryOp::sign;
}
constexpr bool binary_supports_int(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: case BinaryOp::sub: case BinaryOp::mul:
    case BinaryOp::maximum: case BinaryOp::minimum:
    case BinaryOp::eq: case BinaryOp::ne: case BinaryOp::lt:
    case BinaryOp::le: case BinaryOp::gt: case BinaryOp::ge:
      return true;
    default:
      return false;
  }
}

// The kernels' entry check (the same on both devices): `what` is "unary", "binary" or
// "binary_scalar", `name` the op's name.
inline void check_elementwise_dtype(const char* what, const char* name, bool supports_int,
                                    DType dtype) {
  FG_CHECK(is_floating(dtype) || supports_int, what, " ", name, ": dtype ", dtype_name(dtype),
           " is not supported (floating only); convert with .to(f32)");
}
// Whether op has a kernel for element type T (the CUDA files instantiate only these).
template <typename T>
constexpr bool unary_has_kernel(UnaryOp op) {
  return !std::is_integral_v<T> || unary_supports_int(op);
}
template <typename T>
constexpr bool binary_has_kernel(BinaryOp op) {
  return !std::is_integral_v<T> || binary_supports_int(op);
}

// ---- unary ----
constexpr double kGeluK = 0.7978845608028654;  // sqrt(2 / pi)
constexpr double kGeluC = 0.044715;

template <UnaryOp OP, typename C>
FG_HD C unary_apply(C x) {
  if constexpr (OP == UnaryOp::neg) return -x;
  else if constexpr (OP == UnaryOp::abs) return x < C(0) ? -x : x;
  else if constexpr (OP == UnaryOp::relu) return x > C(0) ? x : C(0);
  else if constexpr (OP == UnaryOp::square) return x * x;
  else if constexpr (OP == UnaryOp::sign) return C((x > C(0)) - (x < C(0)));
  else if constexpr (!std::is_floating_point<C>::value) {
    return C(0);  // float-only op on an integer type: rejected before any launch
  } else if constexpr (OP == UnaryOp::exp) return std::exp(x);
  else if constexpr (OP == UnaryOp::log) return std::log(x);
  else if constexpr (OP == UnaryOp::sqrt) return std::sqrt(x);
  else if constexpr (OP == UnaryOp::rsqrt) return C(1) / std::sqrt(x);
  else if constexpr (OP == UnaryOp::tanh) return std::tanh(x);
  else if constexpr (OP == UnaryOp::sin) return std::sin(x);
  else if constexpr (OP == UnaryOp::cos) return std::cos(x);
  else if constexpr (OP == UnaryOp::reciprocal) return C(1) / x;
  else if constexpr (OP == UnaryOp::sigmoid) {
    // Two branches so that exp never overflows: for x < 0 use e^x / (1 + e^x).
    if (x >= C(0)) return C(1) / (C(1) + std::exp(-x));
    C e = std::exp(x);
    return e / (C(1) + e);
  } else if constexpr (OP == UnaryOp::gelu) {
    // 0.5 x (1 + tanh u) = x sigmoid(2u) = x / (1 + e^(-2u)): one exp instead of a tanh (a
    // libm tanhf costs several expf on the CPU), and no cancellation in 1 + tanh u for x < 0.
    // e^(-2u) overflows to inf for large negative x, giving x / inf = -0, the limit.
    C u = C(kGeluK) * (x + C(kGeluC) * x * x * x);
    return x / (C(1) + std::exp(C(-2) * u));
  } else {
    static_assert(OP == UnaryOp::neg, "unhandled UnaryOp");
    return x;
  }
}

// ---- binary ----
template <BinaryOp OP, typename C>
FG_HD C binary_apply(C a, C b) {
  if constexpr (OP == BinaryOp::add) return a + b;
  else if constexpr (OP == BinaryOp::sub) return a - b;
  else if constexpr (OP == BinaryOp::mul) return a * b;
  // NaN propagates through maximum/minimum (a != a is true only for NaN).
  else if constexpr (OP == BinaryOp::maximum) return (a > b || a != a) ? a : b;
  else if constexpr (OP == BinaryOp::minimum) return (a < b || a != a) ? a : b;
  else if constexpr (OP == BinaryOp::eq) return C(a == b);
  else if constexpr (OP == BinaryOp::ne) return C(a != b);
  else if constexpr (OP == BinaryOp::lt) return C(a < b);
  else if constexpr (OP == BinaryOp::le) return C(a <= b);
  else if constexpr (OP == BinaryOp::gt) return C(a > b);
  else if constexpr (OP == BinaryOp::ge) return C(a >= b);
  else if constexpr (!std::is_floating_point<C>::value) {
    return C(0);  // float-only op on an integer type: rejected before any launch
  } else if constexpr (OP == BinaryOp::div) return a / b;
  else if constexpr (OP == BinaryOp::pow) return std::pow(a, b);
  else if constexpr (OP == BinaryOp::relu_backward) return b > C(0) ? a : C(0);
  else if constexpr (OP == BinaryOp::tanh_backward) return a * (C(1) - b * b);
  else if constexpr (OP == BinaryOp::sigmoid_backward) return a * b * (C(1) - b);
  else if constexpr (OP == BinaryOp::gelu_backward) {
    // d/dx [0.5 x (1 + tanh(u))], u = k (x + c x^3):
    //   0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) k (1 + 3 c x^2)
    // With s = sigmoid(2u) = 0.5 (1 + tanh u), 1 - tanh^2 u = 4 s (1 - s):
    //   s (1 + 2 x (1 - s) u'),  u' = k (1 + 3 c x^2).
    C x = b;
    C s = C(1) / (C(1) + std::exp(C(-2) * C(kGeluK) * (x + C(kGeluC) * x * x * x)));
    // s rounds to 0 or 1 far out on either side, where the second term would be 0 * inf for
    // |x| past about 1e13 (x^2 overflows); there the derivative is exactly 0 or 1.
    if (s == C(0)) return a * C(0);
    if (s == C(1)) return a;
    C du = C(kGeluK) * (C(1) + C(3 * kGeluC) * x * x);
    return a * s * (C(1) + C(2) * x * (C(1) - s) * du);
  } else {
    static_assert(OP == BinaryOp::add, "unhandled BinaryOp");
    return a;
  }
}

// ---- reductions ----
// The identity of each reduction in compute type C. Max/min start from -inf/+inf (or the
// integer limits), so an all-NaN-free row reduces to its true extreme; NaN wins (see combine).
template <ReduceOp OP, typename C>
FG_HD C reduce_identity() {
  if constexpr (OP == ReduceOp::sum) return C(0);
  else if constexpr (OP == ReduceOp::max) {
    if constexpr (std::is_floating_point<C>::value) return -C(INFINITY);
    else return std::numeric_limits<C>::lowest();
  } else {
    if constexpr (std::is_floating_point<C>::value) return C(INFINITY);
    else return std::numeric_limits<C>::max();
  }
}

template <ReduceOp OP, typename C>
FG_HD C reduce_combine(C acc, C v) {
  if constexpr (OP == ReduceOp::sum) return acc + v;
  else if constexpr (OP == ReduceOp::max) return (v > acc || v != v) ? v : acc;
  else return (v < acc || v != v) ? v : acc;
}

// Argmax order: is (v1 at i1) a better maximum than (v2 at i2)? Larger wins, ties go to the
// smaller index (the first maximum), and NaN counts as larger than everything (as in numpy).
template <typename C>
FG_HD bool argmax_better(C v1, int64_t i1, C v2, int64_t i2) {
  bool n1 = v1 != v1, n2 = v2 != v2;
  if (n1 || n2) return n1 && (!n2 || i1 < i2);
  if (v1 > v2) return true;
  if (v1 < v2) return false;
  return i1 < i2;
}

}  // namespace fg

// Turns a runtime op into a compile-time constant `kOp` for the body (a lambda).
#define FG_OP_CASE(ENUM, NAME, ...)        \
  case ENUM::NAME: {                       \
    constexpr ENUM kOp = ENUM::NAME;       \
    (void)kOp;                             \
    __VA_ARGS__();                         \
    break;                                 \
  }
#define FG_DISPATCH_UNARY_OP(OP, ...)                                                       \
  switch (OP) {                                                                             \
    FG_OP_CASE(::fg::UnaryOp, neg, __VA_ARGS__) FG_OP_CASE(::fg::UnaryOp, exp, __VA_ARGS__) \
    FG_OP_CASE(::fg::UnaryOp, log, __VA_ARGS__) FG_OP_CASE(::fg::UnaryOp, sqrt, __VA_ARGS__) \
    FG_OP_CASE(::fg::UnaryOp, rsqrt, __VA_ARGS__)                                           \
    FG_OP_CASE(::fg::UnaryOp, tanh, __VA_ARGS__)                                            \
    FG_OP_CASE(::fg::UnaryOp, relu, __VA_ARGS__)                                            \
    FG_OP_CASE(::fg::UnaryOp, gelu, __VA_ARGS__)                                            \
    FG_OP_CASE(::fg::UnaryOp, abs, __VA_ARGS__)                                             \
    FG_OP_CASE(::fg::UnaryOp, sigmoid, __VA_ARGS__)                                         \
    FG_OP_CASE(::fg::UnaryOp, sin, __VA_ARGS__) FG_OP_CASE(::fg::UnaryOp, cos, __VA_ARGS__) \
    FG_OP_CASE(::fg::UnaryOp, square, __VA_ARGS__)                                          \
    FG_OP_CASE(::fg::UnaryOp, reciprocal, __VA_ARGS__)                                      \
    FG_OP_CASE(::fg::UnaryOp, sign, __VA_ARGS__)                                            \
    default: throw ::fg::Error("unary: unknown UnaryOp");                                  \
  }
#define FG_DISPATCH_BINARY_OP(OP, ...)                                                        \
  switch (OP) {                                                                               \
    FG_OP_CASE(::fg::BinaryOp, add, __VA_ARGS__) FG_OP_CASE(::fg::BinaryOp, sub, __VA_ARGS__) \
    FG_OP_CASE(::fg::BinaryOp, mul, __VA_ARGS__) FG_OP_CASE(::fg::BinaryOp, div, __VA_ARGS__) \
    FG_OP_CASE(::fg::BinaryOp, pow, __VA_ARGS__)                                              \
    FG_OP_CASE(::fg::BinaryOp, maximum, __VA_ARGS__)                                          \
    FG_OP_CASE(::fg::BinaryOp, minimum, __VA_ARGS__)                                          \
    FG_OP_CASE(::fg::BinaryOp, eq, __VA_ARGS__) FG_OP_CASE(::fg::BinaryOp, ne, __VA_ARGS__)   \
    FG_OP_CASE(::fg::BinaryOp, lt, __VA_ARGS__) FG_OP_CASE(::fg::BinaryOp, le, __VA_ARGS__)   \
    FG_OP_CASE(::fg::BinaryOp, gt, __VA_ARGS__) FG_OP_CASE(::fg::BinaryOp, ge, __VA_ARGS__)   \
    FG_OP_CASE(::fg::BinaryOp, gelu_backward, __VA_ARGS__)                                    \
    FG_OP_CASE(::fg::BinaryOp, relu_backward, __VA_ARGS__)                                    \
    FG_OP_CASE(::fg::BinaryOp, tanh_backward, __VA_ARGS__)                                    \
    FG_OP_CASE(::fg::BinaryOp, sigmoid_backward, __VA_ARGS__)                                 \
    default: throw ::fg::Error("binary: unknown BinaryOp");                                  \
  }
#define FG_DISPATCH_REDUCE_OP(OP, ...)                                                        \
  switch (OP) {                                                                               \
    FG_OP_CASE(::fg::ReduceOp, sum, __VA_ARGS__) FG_OP_CASE(::fg::ReduceOp, max, __VA_ARGS__) \
    FG_OP_CASE(::fg::ReduceOp, min, __VA_ARGS__)                                              \
    default: throw ::fg::Error("reduce: unknown ReduceOp");                                  \
  }
