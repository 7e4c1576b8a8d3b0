// The split-KV decode kernel ("splitkv", kernels/attention/decode/): a few query rows against a
// long key cache, against the fp64 reference. Odd cache lengths (one key, lengths that are not
// a multiple of anything the kernel steps by), MHA, GQA and MQA (more query rows per kv head
// than one block serves), several new tokens under bottom-right causal masking (rows that see
// no key included), every dtype it takes and every head dim, split and unsplit. The KV
// cache's strided views reach it through the model (tests/train/test_generate.cpp, whose CUDA
// cases decode through it). Also: which calls it takes, and how the keys are split.
#include <catch2/catch.hpp>

#include "kernels/attention/decode/splits.h"
#include "kernels/attention_testing.h"

using namespace fg;
using namespace fg::attention_test;

#ifdef FLASHGRAD_WITH_CUDA
namespace {

// Runs "splitkv" split and unsplit on case c: both within the SIMT bounds, each bit-identical
// from run to run, and it is the kernel the dispatcher chooses.
template <typename T> void check_decode(const Case& c) {
  Problem<T> pr(c);
  DeviceProblem<T> dev(pr);
  INFO(describe(c));
  REQUIRE(std::string(flash_attention_forward_kernel(dev.p)) == "splitkv");
  const DType t = pr.p.dtype;
  for (bool split : {true, false}) {
    INFO("split workspace given: " << split);
    const Values a = dev.forward("splitkv", split);
    check_errors(split ? "cuda-forward:splitkv:split" : "cuda-forward:splitkv:unsplit", t, c,
                 forward_errors(a, pr.ref), cuda_forward_bounds("splitkv", t));
    const Values b = dev.forward("splitkv", split);
    CHECK(a.o == b.o);
    CHECK(std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(double)) == 0);
  }
}

template <typename F> void for_decode_dtypes(F f) {
  f(bfloat16{});
  f(float16{});
  f(float{});
}

}  // namespace

TEST_CASE("attention decode: one new token against caches of odd lengths", "[cuda][attention]") {
  require_cuda_device();
  for_decode_dtypes([](auto t) {
    using T = decltype(t);
    for (int64_t D : {32, 64, 128, 256})
      for (int64_t Nk : {1, 17, 1000, 4097}) {
        if (D == 256 && std::is_same_v<T, float>) continue;  // 256: bf16 and f16 only
        Case c;
        c.B = 2, c.Nq = 1, c.Nk = Nk, c.Hq = c.Hkv = 3, c.D = D, c.causal = true;
        check_decode<T>(c);
      }
  });
}

// A small case for racecheck: one row per kv head (the cluster form on Hopper, split into a
// cluster at 4097 keys, unsplit at 100), at D 64 (a four-stage ring) and 256 (two stages).
TEST_CASE("attention decode: one row per kv head under racecheck", "[cuda][attention][racecheck]") {
  require_cuda_device();
  for (int64_t D : {64, 256})
    for (int64_t Nk : {100, 4097}) {
      Case c;
      c.B = 1, c.Nq = 1, c.Nk = Nk, c.Hq = c.Hkv = 2, c.D = D, c.causal = true;
      check_decode<bfloat16>(c);
    }
}

// (No commas in the name: scripts/gpu-check.sh passes each [racecheck] name as a Catch filter.)
TEST_CASE("attention decode: GQA and MQA groups and several new tokens",
          "[cuda][attention][racecheck]") {
  require_cuda_device();
  for_decode_dtypes([](auto t) {
    using T = decltype(t);
    for (int64_t D : {64, 128, 256}) {
      if (D == 256 && std::is_same_v<T, float>) continue;  // 256: bf16 and f16 only
      Case c;
      c.D = D, c.B = 3, c.Nq = 1, c.Nk = 2049, c.Hq = 8, c.Hkv = 2, c.causal = true;
      check_decode<T>(c);  // 4 query rows per kv head
      c.Hq = 12, c.Hkv = 1, c.Nk = 777;
      check_decode<T>(c);  // 12 rows: two blocks of rows per kv head
      c.Hq = 4, c.Hkv = 2, c.Nq = 3, c.Nk = 300;
      check_decode<T>(c);  // three new tokens, each seeing one key more than the last
      c.causal = false;
      check_decode<T>(c);
      c.causal = true, c.Nq = 4, c.Nk = 2;
      check_decode<T>(c);  // rows 0 and 1 see no key: O = 0, LSE = -inf
    }
  });
}

TEST_CASE("attention decode: which calls the split-KV kernel takes", "[cuda][attention]") {
  require_cuda_device();
  Case c;
  c.B = 1, c.Nq = 1, c.Nk = 8192, c.Hq = c.Hkv = 12, c.D = 64, c.causal = true;
  Problem<bfloat16> pr(c);
  DeviceProblem<bfloat16> dev(pr);
  AttentionParams p = dev.p;
  const bool hopper = device_major() == 9;
  CHECK(std::string(flash_attention_forward_kernel(p)) == "splitkv");
  // Batch 1, 12 heads, 8k keys: split, so the workspace is non-empty and covers the parts.
  const attn::decode::Split sp = attn::decode::decode_split(p, 132, true);
  CHECK(sp.splits > 1);
  CHECK(sp.splits * sp.keys_per_split >= p.Nk);
  CHECK((sp.splits - 1) * sp.keys_per_split < p.Nk);
  CHECK(flash_attention_forward_workspace_bytes(p) > 0);
  // Not for: dropout, block masks, many query rows, f64, misaligned rows.
  AttentionParams q = p;
  q.dropout_p = 0.1;
  CHECK(std::string(flash_attention_forward_kernel(q)) != "splitkv");
  CHECK(flash_attention_forward_workspace_bytes(q) == 0);
  q = p, q.Nq = 64;
  CHECK(std::string(flash_attention_forward_kernel(q)) == (hopper ? "tma" : "mma"));
  q = p, q.Hkv = 1, q.Nq = 4;  // 48 rows per kv head
  CHECK(std::string(flash_attention_forward_kernel(q)) != "splitkv");
  q = p, q.k_seq_stride += 1;
  CHECK(std::string(flash_attention_forward_kernel(q)) == "simt");
  q = p, q.dtype = DType::f64;
  CHECK(std::string(flash_attention_forward_kernel(q)) == "simt");
  // Without a workspace it still computes the call, unsplit (checked in check_decode).
  CHECK(attn::decode::decode_split(p, 132, false).splits == 1);
}
#endif  // FLASHGRAD_WITH_CUDA

// The split arithmetic is host code: CI checks it without a GPU.
TEST_CASE("attention decode: the key split covers every key once", "[attention]") {
  AttentionParams p;
  p.B = 1, p.Nq = 1, p.Hq = 12, p.Hkv = 12, p.D = 64;
  for (int64_t Nk : {1, 63, 64, 65, 1000, 8192, 32768, 1 << 20})
    for (int sms : {1, 78, 132})
      for (int64_t B : {1, 8, 64}) {
        p.Nk = Nk, p.B = B;
        const attn::decode::Split s = attn::decode::decode_split(p, sms, true);
        INFO("Nk=" << Nk << " sms=" << sms << " B=" << B);
        CHECK(s.splits >= 1);
        CHECK(s.splits <= attn::decode::kMaxSplits);
        CHECK(s.keys_per_split >= 1);
        CHECK(s.splits * s.keys_per_split >= Nk);          // every key in some split
        CHECK((s.splits - 1) * s.keys_per_split < Nk);     // and no split empty
        if (s.splits > 1) CHECK(s.keys_per_split >= attn::decode::kMinKeysPerSplit / 2);
        CHECK((s.splits > 1) == (attn::decode::decode_workspace_bytes(p, s) > 0));
      }
  // An empty cache (refused by the argument check, but the workspace is sized before it):
  // no split, and no division by zero.
  p.Nk = 0;
  CHECK(attn::decode::decode_split(p, 132, true).splits == 1);
  CHECK(attn::decode::decode_workspace_bytes(p, attn::decode::decode_split(p, 132, true)) == 0);
  if (attn::decode::decode_blocks_per_sm_override() != 0) return;  // the counts below are the rule's
  p.Nk = 8192, p.B = 1;
  CHECK(attn::decode::decode_split(p, 132, true).splits == 44);  // 4 x 132 blocks over 12 heads
  p.B = 64;
  CHECK(attn::decode::decode_split(p, 132, true).splits == 1);   // the batch fills the GPU
  // Batch 8, 32 query heads over 8 kv heads (one block of rows each): 64 blocks, so 4 per SM
  // would split 9 ways and 8 per SM 17, few enough to take (measured faster on an H100).
  p.B = 8, p.Hq = 32, p.Hkv = 8, p.D = 128;
  CHECK(attn::decode::decode_split(p, 132, true).splits == 17);
  p.Nk = 32768;
  CHECK(attn::decode::decode_split(p, 132, true).splits == 17);
}

// The one-launch (cluster) form's split, also host code.
TEST_CASE("attention decode: the cluster split covers every key once", "[attention]") {
  AttentionParams p;
  p.B = 1, p.Nq = 1, p.Hq = 12, p.Hkv = 12, p.D = 64;
  for (int64_t Nk : {1, 63, 64, 65, 1000, 8192, 32768, 1 << 20})
    for (int sms : {1, 78, 132})
      for (int64_t B : {1, 8, 64})
        for (int max_cluster : {1, 8, 16}) {
          p.Nk = Nk, p.B = B;
          const attn::decode::Split s = attn::decode::cluster_split(p, sms, 3, max_cluster);
          INFO("Nk=" << Nk << " sms=" << sms << " B=" << B << " max_cluster=" << max_cluster);
          CHECK(s.splits >= 1);
          CHECK(s.splits <= max_cluster);
          CHECK(s.keys_per_split % attn::decode::kStageKeys == 0);  // whole stages
          CHECK(s.splits * s.keys_per_split >= Nk);                 // every key in some split
          CHECK((s.splits - 1) * s.keys_per_split < Nk);            // and no split empty
          if (s.splits > 1) CHECK(Nk >= 2 * attn::decode::kStageKeys * s.splits);
        }
  p.Nk = 0;
  CHECK(attn::decode::cluster_split(p, 132, 3, 16).splits == 1);
  if (attn::decode::decode_blocks_per_sm_override() != 0) return;  // the counts below are the rule's
  // Batch 1, 12 heads, 8k keys, 3 blocks per SM: 396 resident blocks fit 33 splits a head; the
  // cluster caps that at 16 (512 keys each).
  p.Nk = 8192, p.B = 1;
  attn::decode::Split s = attn::decode::cluster_split(p, 132, 3, 16);
  CHECK(s.splits == 16);
  CHECK(s.keys_per_split == 512);
  CHECK(attn::decode::cluster_split(p, 132, 3, 8).splits == 8);
  p.B = 64;  // 768 blocks: the batch fills the GPU
  CHECK(attn::decode::cluster_split(p, 132, 3, 16).splits == 1);
  p.B = 8, p.Hq = 32, p.Hkv = 8, p.D = 128;  // 64 blocks, 2 per SM resident: 4 splits
  CHECK(attn::decode::cluster_split(p, 132, 2, 16).splits == 4);
  p.B = 1, p.Nk = 1024, p.Hq = p.Hkv = 12, p.D = 64;  // 1k keys: at most 8 splits of 2 stages
  CHECK(attn::decode::cluster_split(p, 132, 3, 16).splits == 8);
  p.Nk = 1000;  // 7 shares of 143 keys round up to 192: 6 blocks hold them all
  s = attn::decode::cluster_split(p, 132, 3, 16);
  CHECK(s.keys_per_split == 192);
  CHECK(s.splits == 6);
}
