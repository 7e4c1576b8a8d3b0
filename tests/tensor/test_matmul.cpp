// Tests of the matrix product: the raw gemm kernels (alpha/beta, padded row strides, poisoned
// outputs), ops::matmul (2-D, batched with broadcast batch dims, 1-D operands, transposed and
// non-contiguous views, K = 0, odd sizes) in f32, f64, bf16 and f16 against a plain double
// loop on the host, its errors, and gradchecks of the differentiable matmul.
#include <cmath>
#include <string>

#include "support/test_util.h"
#include "tensor/phase_timer.h"

using namespace fg;
using Catch::Matchers::Contains;
using test::poison;
using test::rel_err;
using test::tol;

namespace {

// Operands: fresh values uniform in [-1, 1).
Tensor rnd(const Shape& s, DType dt, Device d, uint64_t seed) {
  return test::rnd(s, dt, d, seed, -1, 1);
}

// The numpy matmul in double on the host, from the values the op saw (after any rounding to
// the operands' dtype). Batch dims broadcast, 1-D operands promoted and their dim dropped.
Tensor ref_matmul(const Tensor& a_in, const Tensor& b_in) {
  Shape as = a_in.shape(), bs = b_in.shape();
  bool a1 = as.size() == 1, b1 = bs.size() == 1;
  if (a1) as.insert(as.begin(), 1);
  if (b1) bs.push_back(1);
  std::vector<double> av = a_in.to_vector<double>(), bv = b_in.to_vector<double>();
  int64_t M = as[as.size() - 2], K = as.back(), N = bs.back();
  REQUIRE(bs[bs.size() - 2] == K);
  Shape ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
  size_t nb = std::max(ab.size(), bb.size());
  ab.insert(ab.begin(), nb - ab.size(), 1);
  bb.insert(bb.begin(), nb - bb.size(), 1);
  Shape batch(nb);
  for (size_t i = 0; i < nb; ++i) batch[i] = std::max(ab[i], bb[i]);
  int64_t nbatch = shape_numel(batch);
  std::vector<double> out(size_t(nbatch * M * N));
  for (int64_t b = 0; b < nbatch; ++b) {
    // Batch multi-index -> offsets into a and b (size-1 dims broadcast).
    int64_t rem = b, ao = 0, bo = 0, astr = 1, bstr = 1;
    for (int64_t d = int64_t(nb) - 1; d >= 0; --d) {
      int64_t i = rem % batch[size_t(d)];
      rem /= batch[size_t(d)];
      if (ab[size_t(d)] != 1) ao += i * astr;
      if (bb[size_t(d)] != 1) bo += i * bstr;
      astr *= ab[size_t(d)];
      bstr *= bb[size_t(d)];
    }
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k)
          s += av[size_t((ao * M + m) * K + k)] * bv[size_t((bo * K + k) * N + n)];
        out[size_t((b * M + m) * N + n)] = s;
      }
  }
  Shape final_shape = batch;
  if (!a1) final_shape.push_back(M);
  if (!b1) final_shape.push_back(N);
  return from_vector<double>(out, final_shape, TensorOptions(DType::f64));
}

void check_matmul(const Tensor& a, const Tensor& b, const char* what) {
  poison(a.device());
  Tensor y = ops::matmul(a, b);
  Tensor ref = ref_matmul(a, b);
  INFO(what << ": " << shape_str(a.shape()) << " @ " << shape_str(b.shape()) << " "
            << dtype_name(a.dtype()) << " on " << a.device().str());
  REQUIRE(y.shape() == ref.shape());
  REQUIRE(y.dtype() == a.dtype());
  REQUIRE(y.device() == a.device());
  REQUIRE(rel_err(y, ref) < tol(a.dtype()));
}

const DType kAllFloat[] = {DType::f32, DType::f64, DType::bf16, DType::f16};

// Calls the gemm kernel of d's device.
void call_gemm(Device d, DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
               double alpha, const Tensor& A, int64_t lda, int64_t sa, const Tensor& B,
               int64_t ldb, int64_t sb, double beta, Tensor& C, int64_t ldc, int64_t sc,
               int64_t batch) {
  if (d.is_cpu()) {
    cpu::gemm(dt, ta, tb, M, N, K, alpha, A.data_ptr(), lda, sa, B.data_ptr(), ldb, sb, beta,
              C.data_ptr(), ldc, sc, batch);
  } else {
#ifdef FLASHGRAD_WITH_CUDA
    cuda::gemm(dt, ta, tb, M, N, K, alpha, A.data_ptr(), lda, sa, B.data_ptr(), ldb, sb, beta,
               C.data_ptr(), ldc, sc, batch);
    synchronize(d);
#endif
  }
}

}  // namespace

FG_TEST_ALL_DEVICES("gemm kernel: alpha, beta, transposes, padded strides", "[matmul]") {
  for (DType dt : kAllFloat) {
    for (int variant = 0; variant < 4; ++variant) {
      bool ta = variant & 1, tb = variant & 2;
      const int64_t M = 13, N = 7, K = 19, batch = 3, pad = 5;
      // Stored shapes with padded rows: A is (ta ? K x M : M x K), etc.
      int64_t a_rows = ta ? K : M, a_cols = ta ? M : K;
      int64_t b_rows = tb ? N : K, b_cols = tb ? K : N;
      int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = N + pad;
      Tensor A = rnd({batch, a_rows, lda}, dt, device, 10 + variant);
      Tensor B = rnd({batch, b_rows, ldb}, dt, device, 20 + variant);
      Tensor C0 = rnd({batch, M, ldc}, dt, device, 30 + variant);
      for (double beta : {0.0, 0.5}) {
        Tensor C = ops::clone(C0);
        if (beta == 0.0) C.fill_(NAN);  // beta == 0 must not read C
        call_gemm(device, dt, ta, tb, M, N, K, 1.5, A, lda, a_rows * lda, B, ldb, b_rows * ldb,
                  beta, C, ldc, M * ldc, batch);
        auto av = A.to_vector<double>(), bv = B.to_vector<double>(), c0 = C0.to_vector<double>();
        auto cv = C.to_vector<double>();
        double num = 0, den = 0;
        for (int64_t b = 0; b < batch; ++b)
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < ldc; ++n) {
              size_t ci = size_t((b * M + m) * ldc + n);
              if (n >= N) {
                // Padding columns of C are not part of the product: left untouched.
                if (beta == 0.0)
                  REQUIRE(std::isnan(cv[ci]));
                else
                  REQUIRE(cv[ci] == c0[ci]);
                continue;
              }
              double s = 0;
              for (int64_t k = 0; k < K; ++k) {
                double a = ta ? av[size_t((b * a_rows + k) * lda + m)]
                              : av[size_t((b * a_rows + m) * lda + k)];
                double bb = tb ? bv[size_t((b * b_rows + n) * ldb + k)]
                               : bv[size_t((b * b_rows + k) * ldb + n)];
                s += a * bb;
              }
              double ref = 1.5 * s + (beta == 0.0 ? 0.0 : beta * c0[ci]);
              num += (cv[ci] - ref) * (cv[ci] - ref);
              den += ref * ref;
            }
        INFO(dtype_name(dt) << " ta=" << ta << " tb=" << tb << " beta=" << beta);
        REQUIRE(std::sqrt(num / den) < tol(dt));
      }
    }
  }
}

FG_TEST_ALL_DEVICES("gemm kernel: K == 0 gives beta * C, batch stride 0 broadcasts", "[matmul]") {
  Tensor A = rnd({4, 1}, DType::f32, device, 1);
  Tensor B = rnd({1, 5}, DType::f32, device, 2);
  Tensor C = full({2, 4, 5}, NAN, TensorOptions(DType::f32).device(device));
  call_gemm(device, DType::f32, false, false, 4, 5, 0, 1.0, A, 1, 0, B, 5, 0, 0.0, C, 5, 20, 2);
  for (double v : C.to_vector<double>()) REQUIRE(v == 0.0);
  // The same A and B (batch stride 0) for both batch entries.
  Tensor A2 = rnd({4, 3}, DType::f64, device, 3);
  Tensor B2 = rnd({3, 5}, DType::f64, device, 4);
  Tensor C2 = empty({2, 4, 5}, TensorOptions(DType::f64).device(device));
  call_gemm(device, DType::f64, false, false, 4, 5, 3, 1.0, A2, 3, 0, B2, 5, 0, 0.0, C2, 5, 20, 2);
  Tensor ref = ref_matmul(A2, B2);
  REQUIRE(rel_err(ops::select(C2, 0, 0), ref) < 1e-12);
  REQUIRE(rel_err(ops::select(C2, 0, 1), ref) < 1e-12);
}

FG_TEST_ALL_DEVICES("matmul 2-D, odd and round sizes, every float dtype", "[matmul]") {
  const int64_t sizes[][3] = {{17, 33, 9}, {64, 64, 64}, {1, 5, 1}, {3, 1, 4}, {1, 1, 1},
                              {130, 37, 300}};
  for (DType dt : kAllFloat)
    for (auto& s : sizes) {
      Tensor a = rnd({s[0], s[1]}, dt, device, uint64_t(s[0] * 100 + s[1]));
      Tensor b = rnd({s[1], s[2]}, dt, device, uint64_t(s[2] * 100 + s[1] + 7));
      check_matmul(a, b, "2-D");
    }
}

FG_TEST_ALL_DEVICES("matmul f32 with a long inner dim stays fp32-accurate (no TF32)",
                    "[matmul]") {
  // TF32 keeps 10 mantissa bits: relative errors ~1e-3, far above the f32 bound checked here.
  Tensor a = rnd({64, 1024}, DType::f32, device, 5);
  Tensor b = rnd({1024, 48}, DType::f32, device, 6);
  check_matmul(a, b, "long K");
}

FG_TEST_ALL_DEVICES("matmul with transposed and non-contiguous operands", "[matmul]") {
  for (DType dt : kAllFloat) {
    // Transposed views (no copy needed) in either or both operands.
    Tensor at = ops::transpose(rnd({33, 17}, dt, device, 1), 0, 1);  // [17, 33]
    Tensor bt = ops::transpose(rnd({9, 33}, dt, device, 2), 0, 1);   // [33, 9]
    Tensor a = rnd({17, 33}, dt, device, 3), b = rnd({33, 9}, dt, device, 4);
    check_matmul(at, b, "a transposed");
    check_matmul(a, bt, "b transposed");
    check_matmul(at, bt, "both transposed");
    // Batched transposes, as in attention's q @ k^T.
    Tensor q = rnd({2, 3, 11, 8}, dt, device, 5), k = rnd({2, 3, 13, 8}, dt, device, 6);
    check_matmul(q, ops::transpose(k, -1, -2), "batched b transposed");
    check_matmul(ops::transpose(rnd({2, 3, 8, 11}, dt, device, 7), -1, -2),
                 ops::transpose(k, -1, -2), "batched both transposed");
    // Strided slices and permuted batch dims (need a copy or a non-dense batch walk).
    Tensor wide = rnd({17, 66}, dt, device, 8);
    check_matmul(ops::slice(wide, 1, 0, 66, 2), b, "column slice step 2");
    Tensor rows = rnd({20, 33}, dt, device, 9);
    check_matmul(ops::slice(rows, 0, 3, 20), b, "row slice (offset storage)");
    Tensor perm = ops::permute(rnd({5, 2, 4, 6}, dt, device, 10), {1, 0, 2, 3});  // [2,5,4,6]
    check_matmul(perm, rnd({2, 5, 6, 3}, dt, device, 11), "permuted batch dims");
    // A head-split view [B, N, H, D] -> [B, H, N, D] like attention's reshapes.
    Tensor bnhd = rnd({2, 7, 3, 8}, dt, device, 12);
    Tensor bhnd = ops::permute(bnhd, {0, 2, 1, 3});
    check_matmul(bhnd, ops::transpose(bhnd, -1, -2), "head-split views");
  }
}

FG_TEST_ALL_DEVICES("matmul broadcasts batch dims", "[matmul]") {
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    check_matmul(rnd({2, 1, 5, 7}, dt, device, 1), rnd({3, 7, 4}, dt, device, 2), "[2,1]x[3]");
    check_matmul(rnd({5, 7}, dt, device, 3), rnd({2, 3, 7, 4}, dt, device, 4), "2-D @ batched");
    check_matmul(rnd({2, 3, 5, 7}, dt, device, 5), rnd({7, 4}, dt, device, 6), "batched @ 2-D");
    check_matmul(rnd({4, 5, 7}, dt, device, 7), rnd({4, 7, 3}, dt, device, 8), "same batch");
    check_matmul(rnd({1, 5, 7}, dt, device, 9), rnd({4, 7, 3}, dt, device, 10), "batch 1 vs 4");
    // An expanded (stride-0) operand.
    Tensor e = ops::expand(rnd({1, 5, 7}, dt, device, 11), {3, 5, 7});
    check_matmul(e, rnd({3, 7, 2}, dt, device, 12), "expanded a");
    // Batched @ 2-D where the batched operand is transposed (fold path must copy).
    check_matmul(ops::transpose(rnd({2, 7, 5}, dt, device, 13), -1, -2),
                 rnd({7, 3}, dt, device, 14), "transposed batched @ 2-D");
  }
}

FG_TEST_ALL_DEVICES("matmul with 1-D operands follows numpy", "[matmul]") {
  for (DType dt : {DType::f32, DType::f64, DType::f16}) {
    Tensor v = rnd({7}, dt, device, 1), w = rnd({7}, dt, device, 2);
    Tensor y = ops::matmul(v, w);
    REQUIRE(y.dim() == 0);
    check_matmul(v, w, "dot");
    check_matmul(v, rnd({7, 4}, dt, device, 3), "vec @ mat");
    check_matmul(rnd({5, 7}, dt, device, 4), v, "mat @ vec");
    check_matmul(rnd({3, 5, 7}, dt, device, 5), v, "batched @ vec");
    check_matmul(v, rnd({3, 7, 4}, dt, device, 6), "vec @ batched");
  }
}

FG_TEST_ALL_DEVICES("matmul with an empty inner dim gives zeros", "[matmul]") {
  poison(device);
  Tensor y = ops::matmul(rnd({3, 0}, DType::f32, device, 1), rnd({0, 4}, DType::f32, device, 2));
  REQUIRE(y.shape() == Shape{3, 4});
  for (double v : y.to_vector<double>()) REQUIRE(v == 0.0);
  Tensor e = ops::matmul(rnd({0, 5}, DType::f32, device, 3), rnd({5, 4}, DType::f32, device, 4));
  REQUIRE(e.shape() == Shape{0, 4});
}

FG_TEST_ALL_DEVICES("matmul errors name the op and the shapes", "[matmul]") {
  Tensor a = rnd({3, 4}, DType::f32, device, 1), b = rnd({5, 2}, DType::f32, device, 2);
  REQUIRE_THROWS_AS(ops::matmul(a, b), Error);
  REQUIRE_THROWS_WITH(ops::matmul(a, b), Contains("matmul") && Contains("[3, 4]") &&
                                             Contains("[5, 2]") && Contains("inner"));
  REQUIRE_THROWS_WITH(ops::matmul(rnd({2, 3, 4}, DType::f32, device, 3),
                                  rnd({3, 4, 2}, DType::f32, device, 4)),
                      Contains("matmul") && Contains("broadcast"));
  REQUIRE_THROWS_WITH(ops::matmul(a, rnd({4, 2}, DType::f64, device, 5)),
                      Contains("matmul") && Contains("f32") && Contains("f64"));
  REQUIRE_THROWS_WITH(ops::matmul(scalar_tensor(2.0, TensorOptions().device(device)), a),
                      Contains("matmul"));
  Tensor ia = ops::to_dtype(a, DType::i64), ib = ops::to_dtype(rnd({4, 2}, DType::f32, device, 6),
                                                              DType::i64);
  REQUIRE_THROWS_WITH(ops::matmul(ia, ib), Contains("matmul") && Contains("i64"));
  REQUIRE_THROWS_WITH(fg::matmul(a, b), Contains("[3, 4]") && Contains("[5, 2]"));
  if (device.is_cuda()) {
    Tensor c = rnd({4, 2}, DType::f32, Device::cpu(), 7);
    REQUIRE_THROWS_WITH(ops::matmul(a, c), Contains("matmul") && Contains("cpu") &&
                                               Contains("cuda"));
  }
}

FG_TEST_ALL_DEVICES("matmul on CUDA matches the CPU path bit-for-bit in shape and closely in value",
                    "[matmul]") {
  // On the CPU this compares the CPU path with itself through a device round trip; on CUDA it
  // is the cross-device check of a larger batched product with a transposed operand.
  Tensor a = rnd({3, 45, 70}, DType::f32, device, 1);
  Tensor b = ops::transpose(rnd({3, 33, 70}, DType::f32, device, 2), -1, -2);
  Tensor y = ops::matmul(a, b);
  Tensor yc = ops::matmul(ops::to_device(a, Device::cpu()), ops::to_device(b, Device::cpu()));
  REQUIRE(rel_err(y, yc) < 1e-5);
}

FG_TEST_ALL_DEVICES("matmul gradcheck: 2-D, batched broadcast, 1-D, transposed", "[matmul][grad]") {
  using test::leaf;
  using test::require_gradcheck;
  auto mm = [](const std::vector<Tensor>& x) { return fg::matmul(x[0], x[1]); };
  require_gradcheck(mm, {leaf({3, 4}, device, DType::f64, 1), leaf({4, 5}, device, DType::f64, 2)});
  require_gradcheck(mm, {leaf({2, 1, 3, 4}, device, DType::f64, 3),
                         leaf({3, 4, 2}, device, DType::f64, 4)});
  require_gradcheck(mm, {leaf({2, 3, 4}, device, DType::f64, 5), leaf({4, 2}, device, DType::f64, 6)});
  require_gradcheck(mm, {leaf({3, 4}, device, DType::f64, 7), leaf({2, 4, 2}, device, DType::f64, 8)});
  require_gradcheck(mm, {leaf({4}, device, DType::f64, 9), leaf({4}, device, DType::f64, 10)});
  require_gradcheck(mm, {leaf({4}, device, DType::f64, 11), leaf({2, 4, 3}, device, DType::f64, 12)});
  require_gradcheck(mm, {leaf({2, 3, 4}, device, DType::f64, 13), leaf({4}, device, DType::f64, 14)});
  auto mm_t = [](const std::vector<Tensor>& x) {
    return fg::matmul(fg::transpose(x[0], -1, -2), fg::transpose(x[1], -1, -2));
  };
  require_gradcheck(mm_t, {leaf({2, 4, 3}, device, DType::f64, 15),
                           leaf({2, 5, 4}, device, DType::f64, 16)});
  // Only one operand requiring grad.
  Tensor c = rnd({4, 3}, DType::f64, device, 17);
  require_gradcheck([c](const std::vector<Tensor>& x) { return fg::matmul(x[0], c); },
                    {leaf({2, 4}, device, DType::f64, 18)});
}

FG_TEST_ALL_DEVICES("matmul backward matches the reference products", "[matmul][grad]") {
  // f32 gradients of a batched-by-2-D product (the Linear layer case) against double loops.
  Tensor a = test::leaf({2, 3, 5}, device, DType::f32, 1);
  Tensor b = test::leaf({5, 4}, device, DType::f32, 2);
  Tensor g = rnd({2, 3, 4}, DType::f32, device, 3);
  fg::matmul(a, b).backward(g);
  Tensor ga_ref = ref_matmul(g, ops::contiguous(ops::transpose(b, 0, 1)));
  Tensor a2 = ops::reshape(a, {6, 5}), g2 = ops::reshape(g, {6, 4});
  Tensor gb_ref = ref_matmul(ops::contiguous(ops::transpose(a2, 0, 1)), g2);
  REQUIRE(rel_err(a.grad(), ga_ref) < 1e-5);
  REQUIRE(rel_err(b.grad(), gb_ref) < 1e-5);
}

FG_TEST_ALL_DEVICES("the phase timer counts matrix products only while it is on", "[matmul]") {
  Tensor a = test::rnd({64, 32}, DType::f32, device, 1), b = test::rnd({32, 48}, DType::f32, device, 2);
  take_phase_times();
  ops::matmul(a, b);  // off: not counted
  set_phase_timing(true);
  ops::matmul(a, b);
  ops::matmul(ops::reshape(a, {2, 32, 32}), b);
  ops::add(a, a);  // not a phase
  set_phase_timing(false);
  const PhaseTimes t = take_phase_times();
  CHECK(t.calls[int(Phase::matmul)] == 2);
  CHECK(t.calls[int(Phase::attention)] == 0);
  CHECK(t.ms[int(Phase::matmul)] > 0);
  CHECK(take_phase_times().calls[int(Phase::matmul)] == 0);  // taken: starts over
}
