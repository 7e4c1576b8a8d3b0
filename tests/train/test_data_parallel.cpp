// Tests of the pieces of data-parallel training that need no GPU: the rank-aware batches (the
// ranks' batches side by side are one process's batch of world x B), the gradient bucket
// planner (grouping in gradient order, sizes, alignment, errors), the torchrun / Slurm
// environment a worker reads its place from, the `--gpus` launcher (worker environments,
// failures stopping the rest), the TCP hand-out of the NCCL id, and the one-process
// communicator that the single-GPU path runs through.
#include "support/test_util.h"

#include <arpa/inet.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "train/comm.h"
#include "train/data.h"
#include "train/dist_env.h"
#include "train/grad_buckets.h"
#include "train/launch.h"
#include "train/optim.h"
#include "train/trainer.h"

using namespace fg;
using namespace fg::train;
using Catch::Matchers::Contains;

TEST_CASE("rank batches put side by side are the single-process batch of world x B",
          "[train][data_parallel]") {
  std::vector<int32_t> tokens(5000);
  std::iota(tokens.begin(), tokens.end(), 0);
  const int64_t B = 3, T = 16;
  for (int64_t world : {1, 2, 4}) {
    Generator one(11);
    std::vector<Generator> ranks(size_t(world), Generator(11));
    for (int step = 0; step < 3; ++step) {  // consecutive steps stay in lockstep
      Batch all = get_batch(tokens, world * B, T, one, Device::cpu());
      auto ax = all.x.to_vector<int64_t>(), ay = all.y.to_vector<int64_t>();
      for (int64_t r = 0; r < world; ++r) {
        Batch mine = get_batch(tokens, B, T, ranks[size_t(r)], Device::cpu(), r, world);
        INFO("world " << world << " step " << step << " rank " << r);
        REQUIRE(mine.x.shape() == Shape{B, T});
        auto mx = mine.x.to_vector<int64_t>(), my = mine.y.to_vector<int64_t>();
        REQUIRE(std::equal(mx.begin(), mx.end(), ax.begin() + r * B * T));
        REQUIRE(std::equal(my.begin(), my.end(), ay.begin() + r * B * T));
        REQUIRE(ranks[size_t(r)].offset() == one.offset());
      }
    }
  }
  // Different ranks read different windows.
  Generator g0(3), g1(3);
  Batch b0 = get_batch(tokens, 8, T, g0, Device::cpu(), 0, 2);
  Batch b1 = get_batch(tokens, 8, T, g1, Device::cpu(), 1, 2);
  REQUIRE(b0.x.to_vector<int64_t>() != b1.x.to_vector<int64_t>());
  Generator g(3);
  REQUIRE_THROWS_WITH(get_batch(tokens, 8, T, g, Device::cpu(), 2, 2),
                      Contains("rank 2") && Contains("2 ranks"));
  REQUIRE_THROWS_WITH(get_batch(tokens, 8, T, g, Device::cpu(), 0, 0), Contains("get_batch"));
}

TEST_CASE("gradient buckets: gradient order, sizes, alignment", "[train][data_parallel]") {
  // Parameters of 1000, 10, 3000, 50, 50 and 7000 elements; gradients ready in reverse order.
  const std::vector<int64_t> numels = {1000, 10, 3000, 50, 50, 7000};
  const std::vector<int64_t> order = {5, 4, 3, 2, 1, 0};
  // fp32 buckets of 16 KB (4096 elements), entries aligned to 64 elements.
  std::vector<Bucket> b = plan_buckets(numels, order, 16384, 4, 64);
  REQUIRE(b.size() == 2);
  // Parameter 5 alone exceeds the size: a bucket of its own.
  REQUIRE(b[0].entries.size() == 1);
  REQUIRE(b[0].entries[0].param == 5);
  REQUIRE(b[0].numel == 7000);
  // Then 4, 3, 2 at 0, 64 and 128 (ending at 3128), 1 at 3136 and 0 at 3200: past 4096 only
  // with the last one, so all five share the second bucket.
  REQUIRE(b[1].entries.size() == 5);
  std::vector<int64_t> got;
  for (const BucketEntry& e : b[1].entries) {
    got.push_back(e.param);
    REQUIRE(e.offset % 64 == 0);
    REQUIRE(e.numel == numels[size_t(e.param)]);
  }
  REQUIRE(got == std::vector<int64_t>{4, 3, 2, 1, 0});
  REQUIRE(b[1].entries[1].offset == 64);
  REQUIRE(b[1].entries[2].offset == 128);
  REQUIRE(b[1].entries[3].offset == 3136);
  REQUIRE(b[1].entries[4].offset == 3200);
  REQUIRE(b[1].numel == 4200);
  // Entries never overlap, and every parameter is in exactly one bucket.
  std::set<int64_t> all;
  for (const Bucket& k : b)
    for (size_t i = 0; i < k.entries.size(); ++i) {
      all.insert(k.entries[i].param);
      if (i > 0)
        REQUIRE(k.entries[i].offset >= k.entries[i - 1].offset + k.entries[i - 1].numel);
    }
  REQUIRE(all.size() == numels.size());

  // bf16 buffers hold twice the elements per byte: a 16 KB bucket closes at 8192 elements.
  std::vector<Bucket> h = plan_buckets(numels, order, 16384, 2, 64);
  // Parameter 5's 7000 stay under that; 4, 3 and 2 join it (2 ends at 10168) and close it.
  REQUIRE(h.size() == 2);
  REQUIRE(h[0].entries.size() == 4);
  // A huge bucket: everything in one. A bucket of 1 byte: one parameter per bucket.
  REQUIRE(plan_buckets(numels, order, int64_t(1) << 40, 4).size() == 1);
  REQUIRE(plan_buckets(numels, order, 1, 4).size() == numels.size());
  // No parameters: no buckets.
  REQUIRE(plan_buckets({}, {}, 1024, 4).empty());
}

TEST_CASE("gradient buckets: a bad order or size is refused, naming it", "[train][data_parallel]") {
  const std::vector<int64_t> numels = {10, 20, 30};
  REQUIRE_THROWS_WITH(plan_buckets(numels, {0, 1, 3}, 1024, 4),
                      Contains("index 3") && Contains("3 parameters"));
  REQUIRE_THROWS_WITH(plan_buckets(numels, {0, 1, 1}, 1024, 4),
                      Contains("parameter 1 appears twice"));
  REQUIRE_THROWS_WITH(plan_buckets(numels, {0, 2}, 1024, 4),
                      Contains("parameter 1 is missing"));
  REQUIRE_THROWS_WITH(plan_buckets({10, -1}, {0, 1}, 1024, 4),
                      Contains("parameter 1 has a negative size"));
  REQUIRE_THROWS_WITH(plan_buckets(numels, {0, 1, 2}, 0, 4), Contains("bucket size"));
  REQUIRE_THROWS_WITH(plan_buckets(numels, {0, 1, 2}, 1024, 0), Contains("element size"));
}

namespace {
// A fake environment for dist_env_from.
struct Env {
  std::map<std::string, std::string> vars;
  std::function<const char*(const char*)> fn() const {
    return [this](const char* k) -> const char* {
      auto it = vars.find(k);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};
}  // namespace

TEST_CASE("the data-parallel environment of torchrun and Slurm", "[train][data_parallel]") {
  // Nothing set: one process.
  DistEnv none = dist_env_from(Env{}.fn());
  REQUIRE(none.source == "none");
  REQUIRE((none.rank == 0 && none.world == 1 && none.local_rank == 0));
  // torchrun.
  Env t{{{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "node0"},
         {"MASTER_PORT", "29500"}}};
  DistEnv te = dist_env_from(t.fn());
  REQUIRE(te.source == "torchrun");
  REQUIRE((te.rank == 5 && te.world == 8 && te.local_rank == 1));
  REQUIRE((te.master_addr == "node0" && te.port == 29500));
  // Slurm, and torchrun's variables winning over it.
  Env s{{{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "3"},
         {"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "1234"}}};
  DistEnv se = dist_env_from(s.fn());
  REQUIRE(se.source == "slurm");
  REQUIRE((se.rank == 3 && se.world == 4 && se.local_rank == 3));
  s.vars["RANK"] = "0";
  s.vars["WORLD_SIZE"] = "2";
  REQUIRE(dist_env_from(s.fn()).source == "torchrun");
  // A world of one needs no rendezvous address.
  REQUIRE(dist_env_from(Env{{{"RANK", "0"}, {"WORLD_SIZE", "1"}}}.fn()).world == 1);
}

TEST_CASE("a bad data-parallel environment is refused, naming the variable",
          "[train][data_parallel]") {
  auto err = [](std::map<std::string, std::string> v) {
    Env e{std::move(v)};
    return dist_env_from(e.fn());
  };
  const std::map<std::string, std::string> ok = {{"RANK", "1"}, {"WORLD_SIZE", "2"},
                                                 {"MASTER_ADDR", "h"}, {"MASTER_PORT", "29500"}};
  auto with = [&](const std::string& k, const std::string& v) {
    auto m = ok;
    m[k] = v;
    return m;
  };
  auto without = [&](const std::string& k) {
    auto m = ok;
    m.erase(k);
    return m;
  };
  REQUIRE_NOTHROW(err(ok));
  REQUIRE_THROWS_WITH(err(with("RANK", "2")), Contains("RANK=2") && Contains("out of range [0, 1]"));
  REQUIRE_THROWS_WITH(err(with("RANK", "x1")), Contains("RANK=\"x1\" is not a whole number"));
  REQUIRE_THROWS_WITH(err(with("WORLD_SIZE", "")), Contains("WORLD_SIZE"));
  REQUIRE_THROWS_WITH(err(with("WORLD_SIZE", "0")), Contains("WORLD_SIZE=0"));
  REQUIRE_THROWS_WITH(err(with("MASTER_PORT", "70000")), Contains("MASTER_PORT=70000"));
  REQUIRE_THROWS_WITH(err(without("MASTER_ADDR")), Contains("MASTER_ADDR is unset"));
  REQUIRE_THROWS_WITH(err(without("MASTER_PORT")), Contains("MASTER_PORT is unset"));
  REQUIRE_THROWS_WITH(err(without("WORLD_SIZE")), Contains("WORLD_SIZE is unset while RANK is set"));
  REQUIRE_THROWS_WITH(err({{"SLURM_PROCID", "4"}, {"SLURM_NTASKS", "4"}}),
                      Contains("SLURM_PROCID=4"));
}

// ---- the launcher, the id hand-out and the single-process communicator ----

TEST_CASE("worker environments: torchrun's variables, one GPU each", "[train][data_parallel]") {
  auto as_map = [](const std::vector<std::pair<std::string, std::string>>& v) {
    return std::map<std::string, std::string>(v.begin(), v.end());
  };
  auto e = as_map(worker_env(1, 4, 29511, ""));
  CHECK(e["RANK"] == "1");
  CHECK(e["WORLD_SIZE"] == "4");
  CHECK(e["LOCAL_RANK"] == "1");
  CHECK(e["MASTER_ADDR"] == "127.0.0.1");
  CHECK(e["MASTER_PORT"] == "29511");
  CHECK(e["FLASHGRAD_ID_PORT"] == "29511");
  CHECK(e["FLASHGRAD_WORKER"] == "1");
  CHECK(e["CUDA_VISIBLE_DEVICES"] == "1");
  // The launcher's own list is honoured: worker r takes its r-th entry.
  CHECK(as_map(worker_env(2, 3, 1, "5,6,7"))["CUDA_VISIBLE_DEVICES"] == "7");
  CHECK_THROWS_WITH(worker_env(0, 3, 1, "5,6"), Contains("lists 2 device") && Contains("--gpus"));
  // What a worker reads back from it.
  auto env = as_map(worker_env(2, 3, 4000, ""));
  auto get = [&](const char* n) -> const char* {
    auto it = env.find(n);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  DistEnv d = dist_env_from(get);
  CHECK(d.rank == 2);
  CHECK(d.world == 3);
  CHECK(id_port(d, get) == 4000);
  // And whether it knows itself a launched worker (so that it trains instead of launching).
  const char* before = std::getenv("FLASHGRAD_WORKER");
  const std::string saved = before ? before : "";
  unsetenv("FLASHGRAD_WORKER");
  CHECK_FALSE(launched_worker());
  setenv("FLASHGRAD_WORKER", env["FLASHGRAD_WORKER"].c_str(), 1);
  CHECK(launched_worker());
  if (before) setenv("FLASHGRAD_WORKER", saved.c_str(), 1);
  else unsetenv("FLASHGRAD_WORKER");
}

TEST_CASE("torchrun workers take their LOCAL_RANK's GPU", "[train][data_parallel]") {
  std::map<std::string, std::string> env = {{"RANK", "3"}, {"WORLD_SIZE", "4"},
                                            {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "h"},
                                            {"MASTER_PORT", "500"}};
  auto get = [&](const char* n) -> const char* {
    auto it = env.find(n);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  auto set = [&](const char* n, const char* v) { env[n] = v; };
  CHECK(select_local_gpu(get, set));
  CHECK(env["CUDA_VISIBLE_DEVICES"] == "1");
  env["CUDA_VISIBLE_DEVICES"] = "4,6";
  CHECK(select_local_gpu(get, set));
  CHECK(env["CUDA_VISIBLE_DEVICES"] == "6");
  CHECK(id_port(dist_env_from(get), get) == 501);  // MASTER_PORT + 1 without FLASHGRAD_ID_PORT
  env["FLASHGRAD_ID_PORT"] = "70000";
  CHECK_THROWS_WITH(id_port(dist_env_from(get), get), Contains("FLASHGRAD_ID_PORT"));
  env["FLASHGRAD_WORKER"] = "1";  // started by --gpus: the launcher already chose
  CHECK_FALSE(select_local_gpu(get, set));
  std::map<std::string, std::string> single;
  auto get1 = [&](const char* n) -> const char* {
    auto it = single.find(n);
    return it == single.end() ? nullptr : it->second.c_str();
  };
  CHECK_FALSE(select_local_gpu(get1, set));
}

TEST_CASE("run_workers: every worker runs with its rank; a failure stops the rest",
          "[train][data_parallel]") {
  const int port = free_tcp_port();
  CHECK(port > 0);
  std::ostringstream err;
  // Each worker checks its own environment.
  CHECK(run_workers({"/bin/sh", "-c",
                     "[ \"$WORLD_SIZE\" = 3 ] && [ \"$LOCAL_RANK\" = \"$RANK\" ] && "
                     "[ \"$CUDA_VISIBLE_DEVICES\" = \"$RANK\" ] && [ \"$FLASHGRAD_WORKER\" = 1 ]"},
                    3, port, err) == 0);
  CHECK(err.str().empty());
  // Rank 1 fails at once while the others would sleep for a minute: the launcher returns its
  // code after stopping them (SIGTERM), long before the minute is up, and names the rank.
  // (`exec`: the worker is the sleeping process itself, as a flashgrad worker is.)
  const auto t0 = std::chrono::steady_clock::now();
  const int code = run_workers(
      {"/bin/sh", "-c", "if [ \"$RANK\" = 1 ]; then exit 3; fi; exec sleep 60"}, 3, port, err,
      2.0);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(code == 3);
  CHECK(s < 20);
  CHECK_THAT(err.str(), Contains("worker rank 1 of 3 exited with code 3"));
  // A worker that ignores SIGTERM is killed after the grace period.
  std::ostringstream err2;
  const auto t1 = std::chrono::steady_clock::now();
  const int code2 = run_workers(
      {"/bin/sh", "-c", "if [ \"$RANK\" = 0 ]; then exit 5; fi; trap '' TERM; exec sleep 60"}, 2,
      port, err2, 1.0);
  const double s2 = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  CHECK(code2 == 5);
  CHECK(s2 < 20);
  // A program that cannot be started.
  std::ostringstream err3;
  CHECK(run_workers({"/nonexistent/flashgrad"}, 2, port, err3) == 127);
}

TEST_CASE("the NCCL id hand-out: rank 0 serves, the others fetch", "[train][data_parallel]") {
  const int port = free_tcp_port();
  const std::string id(128, '\x5a');
  std::vector<std::string> got(4);
  std::vector<std::thread> ranks;
  // The other ranks start first: they retry until rank 0 listens.
  for (int64_t r = 3; r >= 0; --r)
    ranks.emplace_back([&, r] {
      got[size_t(r)] = exchange_bytes(r, 4, "127.0.0.1", port, r == 0 ? id : "", 20);
    });
  for (auto& t : ranks) t.join();
  for (const std::string& g : got) CHECK(g == id);
  // Nobody listening: a clear error naming the address, after the timeout.
  CHECK_THROWS_WITH(exchange_bytes(1, 2, "127.0.0.1", free_tcp_port(), "", 0.3),
                    Contains("rank 1") && Contains("127.0.0.1:") && Contains("MASTER_ADDR"));
  // Rank 0 alone, waiting for a rank that never comes.
  CHECK_THROWS_WITH(exchange_bytes(0, 2, "127.0.0.1", free_tcp_port(), id, 0.3),
                    Contains("0 of 1 other ranks connected"));
}

TEST_CASE("ZeRO-1 partition: whole parameters, balanced, the same on every rank",
          "[train][data_parallel][zero]") {
  const std::vector<int64_t> numels = {100, 5, 300, 300, 20, 7, 250, 0, 64};
  for (int64_t world : {1, 2, 3, 4, 16}) {
    INFO("world " << world);
    const std::vector<int64_t> owner = assign_owners(numels, world);
    REQUIRE(owner.size() == numels.size());
    std::vector<int64_t> load(size_t(world), 0);
    for (size_t i = 0; i < numels.size(); ++i) {
      REQUIRE(owner[i] >= 0);
      REQUIRE(owner[i] < world);
      load[size_t(owner[i])] += numels[i];
    }
    // Largest first to the emptiest: no rank holds more than the even share plus the
    // largest parameter.
    const int64_t total = std::accumulate(numels.begin(), numels.end(), int64_t(0));
    for (int64_t l : load) CHECK(l <= (total + world - 1) / world + 300);
    CHECK(assign_owners(numels, world) == owner);  // a function of its inputs alone
  }
  // Two ranks: 300 | 300, then 250 and 100 and the small ones fill the lighter one.
  const std::vector<int64_t> two = assign_owners(numels, 2);
  CHECK(two[2] == 0);
  CHECK(two[3] == 1);
  CHECK(assign_owners({}, 3).empty());
  CHECK_THROWS_WITH(assign_owners(numels, 0), Contains("at least one rank"));
  CHECK_THROWS_WITH(assign_owners({4, -1}, 2), Contains("parameter 1 has a negative size"));
}

TEST_CASE("ZeRO-1 optimizer: the owners' updates together are the unsharded update",
          "[train][data_parallel][zero]") {
  // Three parameters (bf16 ones keep an fp32 master copy), two "ranks" as two optimizers over
  // copies of the same values, each owning part; after two steps the owned parameters of both,
  // taken together, equal one unsharded optimizer's parameters bit for bit.
  Generator g(21);
  auto make = [&](DType dt) {
    NamedTensors p;
    Generator same(5);
    p.emplace_back("w", randn({6, 4}, TensorOptions(), &same).to(dt).set_requires_grad(true));
    p.emplace_back("b", randn({4}, TensorOptions(), &same).to(dt).set_requires_grad(true));
    p.emplace_back("e", randn({3, 5}, TensorOptions(), &same).to(dt).set_requires_grad(true));
    return p;
  };
  for (DType dt : {DType::f32, DType::bf16}) {
    INFO("dtype " << dtype_name(dt));
    NamedTensors full = make(dt), r0 = make(dt), r1 = make(dt);
    const AdamWOptions o = AdamWOptions().lr(0.05).weight_decay(0.1);
    AdamW a(full, o), b0(r0, o), b1(r1, o);
    const size_t whole = a.state_bytes();
    b0.set_owned({true, false, true});
    b1.set_owned({false, true, false});
    CHECK(b0.owns(0));
    CHECK_FALSE(b0.owns(1));
    CHECK(b0.state_bytes() + b1.state_bytes() == whole);
    CHECK(b1.state_bytes() < whole / 2);
    CHECK(a.whole_state_bytes() == whole);   // what every share would hold together
    CHECK(b1.whole_state_bytes() == whole);
    // Made sharded from the start: the same share, never allocated whole.
    NamedTensors r2 = make(dt);
    AdamW c(r2, o, {true, false, true});
    CHECK(c.state_bytes() == b0.state_bytes());
    CHECK_FALSE(c.owns(1));
    CHECK_THROWS_WITH(AdamW(r2, o, {true}), Contains("1 ownership flags for 3 parameters"));
    for (int step = 0; step < 2; ++step) {
      std::vector<Tensor> grads;
      for (const auto& [name, p] : full) grads.push_back(randn(p.shape(), TensorOptions(), &g).to(dt));
      for (NamedTensors* ps : {&full, &r0, &r1})
        for (size_t i = 0; i < grads.size(); ++i) (*ps)[i].second.set_grad(grads[i].clone());
      a.step(0.5);
      b0.step(0.5);
      b1.step(0.5);
      // Each rank's own parameters moved; the others did not (they wait for the broadcast).
      for (size_t i = 0; i < full.size(); ++i) {
        const NamedTensors& owner = i == 1 ? r1 : r0;
        const NamedTensors& other = i == 1 ? r0 : r1;
        INFO("step " << step << ", parameter " << full[i].first);
        CHECK(owner[i].second.to_vector<float>() == full[i].second.to_vector<float>());
        CHECK(other[i].second.to_vector<float>() != full[i].second.to_vector<float>());
        Tensor dst = other[i].second;
        dst.copy_(owner[i].second.detach());  // what the broadcast from the owner does
      }
    }
    CHECK_THROWS_WITH(b1.fp32_weights(), Contains("sharded to another rank"));
    CHECK_THROWS_WITH(b1.state_of(0), Contains("not owned here"));
    // Gathering: all owned again, the moments refilled from the owners: the whole state.
    b0.set_owned({true, true, true});
    CHECK(b0.state_bytes() == whole);
    const std::vector<Tensor> from = b1.state_of(1), into = b0.state_of(1);
    for (size_t k = 0; k < 3; ++k) {
      Tensor t = into[k];
      t.copy_(from[k]);
    }
    const NamedTensors ws = b0.fp32_weights(), wa = a.fp32_weights();
    for (size_t i = 0; i < ws.size(); ++i)
      CHECK(ws[i].second.to_vector<float>() == wa[i].second.to_vector<float>());
    const NamedTensors ms = b0.state_tensors(), ma = a.state_tensors();
    for (size_t i = 0; i < ms.size(); ++i)
      CHECK(ms[i].second.to_vector<float>() == ma[i].second.to_vector<float>());
  }
}

TEST_CASE("a one-process communicator is the single-GPU path: nothing to exchange",
          "[train][data_parallel]") {
  auto comm = Communicator::create(DistEnv{});
  CHECK(comm->rank() == 0);
  CHECK(comm->world() == 1);
  CHECK(comm->lead());
  Tensor g = from_vector<float>({1, 2, 3}, {3});
  comm->all_reduce_mean({g, Tensor()});
  CHECK(g.to_vector<float>() == std::vector<float>{1, 2, 3});
  CHECK(comm->all_reduce_sum(2.5) == 2.5);
  CHECK(comm->any(true));
  CHECK_FALSE(comm->any(false));
  // The reduction dtype: the tensors' own, fp32 or bf16; with one process nothing is rounded.
  CHECK_FALSE(comm->reduce_dtype().has_value());
  comm->set_reduce_dtype(DType::bf16);
  CHECK(comm->reduce_dtype() == DType::bf16);
  Tensor fine = from_vector<float>({1.0f + 1e-6f}, {1});
  comm->all_reduce_mean({fine});
  CHECK(fine.to_vector<float>()[0] == 1.0f + 1e-6f);
  CHECK_THROWS_WITH(comm->set_reduce_dtype(DType::f16), Contains("fp32 or bf16"));
  comm->set_reduce_dtype(std::nullopt);
  CHECK_FALSE(comm->reduce_dtype().has_value());
  if (!nccl_available()) {
    DistEnv two;
    two.world = 2, two.master_addr = "127.0.0.1", two.port = 1;
    CHECK_THROWS_WITH(Communicator::create(two), Contains("NCCL") && Contains("libnccl-dev"));
  }
}

TEST_CASE("evaluation split over ranks: the shares add up to the one-process mean",
          "[train][data_parallel]") {
  nn::GPT m(nn::GPTConfig().vocab_size(9).block_size(6).n_layer(1).n_head(2).n_embd(16));
  std::vector<int32_t> tokens(400);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 7 + i / 5) % 9);
  const double one = evaluate(m, tokens, 3, 7, 99);
  for (int64_t world : {2, 3, 7, 8}) {
    double sum = 0;
    int64_t count = 0;
    for (int64_t r = 0; r < world; ++r) {
      const LossSum s = evaluate_share(m, tokens, 3, 7, 99, r, world);
      sum += s.sum;
      count += s.count;
    }
    INFO("world " << world);
    CHECK(count == 7);
    CHECK(sum / double(count) == Approx(one).epsilon(1e-12));
  }
}

TEST_CASE("run_workers: Ctrl-C exits, a failure after one, and a launcher told to stop",
          "[train][data_parallel]") {
  const int port = free_tcp_port();
  // Every worker stops for Ctrl-C (130): the launcher says 130 and names nobody.
  std::ostringstream a;
  CHECK(run_workers({"/bin/sh", "-c", "exit 130"}, 3, port, a, 1.0) == 130);
  CHECK(a.str().empty());
  // Rank 0 stops for Ctrl-C, rank 1 then fails for real: its code wins and it is named; rank 2
  // (asleep) is stopped well before its minute is up.
  std::ostringstream b;
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(run_workers({"/bin/sh", "-c",
                     "case $RANK in 0) exit 130;; 1) sleep 0.3; exit 4;; *) exec sleep 60;; esac"},
                    3, port, b, 1.0) == 4);
  CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 20);
  CHECK_THAT(b.str(), Contains("worker rank 1 of 3 exited with code 4"));
  // A worker that stops for Ctrl-C while another hangs: the hung one is stopped after 3 grace.
  std::ostringstream c;
  const auto t1 = std::chrono::steady_clock::now();
  CHECK(run_workers({"/bin/sh", "-c", "if [ \"$RANK\" = 0 ]; then exit 130; fi; exec sleep 60"},
                    2, port, c, 0.5) == 130);
  CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count() < 20);
  // The workers see the launcher's other variables too, with their own on top.
  ::setenv("FLASHGRAD_TEST_MARK", "kept", 1);
  ::setenv("RANK", "99", 1);
  std::ostringstream d;
  CHECK(run_workers({"/bin/sh", "-c",
                     "[ \"$FLASHGRAD_TEST_MARK\" = kept ] && [ \"$RANK\" != 99 ]"}, 2, port, d) == 0);
  ::unsetenv("FLASHGRAD_TEST_MARK");
  ::unsetenv("RANK");
}

TEST_CASE("run_workers: the hang watchdog names the worker the others wait for",
          "[train][data_parallel]") {
  const int port = free_tcp_port();
  using steady = std::chrono::steady_clock;
  auto seconds_since = [](steady::time_point t) {
    return std::chrono::duration<double>(steady::now() - t).count();
  };
  // Ranks 0 and 2 wait in a collective; rank 1 went quiet at its own work: it is named, all
  // are stopped long before their minute is up, and the launcher says 124.
  std::ostringstream a;
  auto t0 = steady::now();
  CHECK(run_workers({"/bin/sh", "-c",
                     "printf B >&$FLASHGRAD_HEARTBEAT_FD; "
                     "if [ $RANK != 1 ]; then printf W >&$FLASHGRAD_HEARTBEAT_FD; fi; exec sleep 60"},
                    3, port, a, /*grace_s=*/0.5, /*hang_s=*/1.0) == 124);
  CHECK(seconds_since(t0) < 20);
  CHECK_THAT(a.str(), Contains("worker rank 1 of 3 made no progress") && Contains("hung"));
  // Everyone waits: the collective itself is stuck.
  std::ostringstream b;
  CHECK(run_workers({"/bin/sh", "-c", "printf W >&$FLASHGRAD_HEARTBEAT_FD; exec sleep 60"}, 2,
                    port, b, 0.5, 1.0) == 124);
  CHECK_THAT(b.str(), Contains("every worker has waited in a collective"));
  // Nobody waits (a long step on every rank): no alarm, however quiet.
  std::ostringstream c;
  CHECK(run_workers({"/bin/sh", "-c", "sleep 1.5"}, 2, port, c, 0.5, 0.5) == 0);
  CHECK(c.str().empty());
  // Workers that wait and come back, again and again, slower than the timeout in all: fine.
  std::ostringstream d;
  CHECK(run_workers({"/bin/sh", "-c",
                     "for i in 1 2 3 4 5 6; do printf W >&$FLASHGRAD_HEARTBEAT_FD; sleep 0.3; "
                     "printf B >&$FLASHGRAD_HEARTBEAT_FD; done"},
                    2, port, d, 0.5, 1.0) == 0);
  CHECK(d.str().empty());
  // Without the watchdog a worker has no socket, and heartbeat() does nothing.
  std::ostringstream e;
  CHECK(run_workers({"/bin/sh", "-c", "[ -z \"$FLASHGRAD_HEARTBEAT_FD\" ]"}, 2, port, e) == 0);
  heartbeat(true);
  heartbeat(false);
}

TEST_CASE("the id hand-out ignores connections that are not ranks", "[train][data_parallel]") {
  const int port = free_tcp_port();
  const std::string id(128, '\x21');
  std::string got0;
  std::thread rank0([&] { got0 = exchange_bytes(0, 3, "127.0.0.1", port, id, 20); });
  // A stranger connects first and says something else: it gets nothing and is not counted.
  auto stranger = [&](const std::string& words) {
    for (int attempt = 0; attempt < 200; ++attempt) {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(uint16_t(port));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
        if (!words.empty()) CHECK(::send(fd, words.data(), words.size(), 0) == ssize_t(words.size()));
        char buf[8];
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);  // closed by rank 0: 0 or an error
        ::close(fd);
        return n;
      }
      ::close(fd);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return ssize_t(-2);
  };
  CHECK(stranger("GET / HTTP") <= 0);
  CHECK(stranger(std::string("\x46\x47\x49\x44\x00\x00\x00\x07", 8)) <= 0);  // rank 7 of 3
  std::string got1, got2;
  std::thread r1([&] { got1 = exchange_bytes(1, 3, "127.0.0.1", port, "", 20); });
  std::thread r2([&] { got2 = exchange_bytes(2, 3, "127.0.0.1", port, "", 20); });
  r1.join();
  r2.join();
  rank0.join();
  CHECK(got0 == id);
  CHECK(got1 == id);
  CHECK(got2 == id);
}

TEST_CASE("run_workers: SIGCHLD ignored by the caller, SIGTERM to the launcher, and a "
          "scheduler's one-GPU binding", "[train][data_parallel]") {
  const int port = free_tcp_port();
  // An inherited SIG_IGN for SIGCHLD would make waitpid find nobody; the launcher resets it.
  struct sigaction ign {}, old {};
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  sigaction(SIGCHLD, &ign, &old);
  std::ostringstream a;
  CHECK(run_workers({"/bin/sh", "-c", "exit 6"}, 2, port, a) == 6);
  sigaction(SIGCHLD, &old, nullptr);
  // SIGTERM to the launcher goes on to the workers, and the launcher says it was stopped.
  std::ostringstream b;
  int code = -1;
  std::thread launcher([&] { code = run_workers({"/bin/sh", "-c", "exec sleep 60"}, 2, port, b); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ::kill(::getpid(), SIGTERM);  // handled by run_workers' handler while it runs
  launcher.join();
  CHECK(code == 143);
  CHECK_THAT(b.str(), Contains("got SIGTERM"));
  // Slurm with per-task binding: CUDA_VISIBLE_DEVICES already names this task's one GPU.
  std::map<std::string, std::string> env = {{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "4"},
                                            {"SLURM_LOCALID", "1"}, {"MASTER_ADDR", "h"},
                                            {"MASTER_PORT", "500"}, {"CUDA_VISIBLE_DEVICES", "5"}};
  auto get = [&](const char* n) -> const char* {
    auto it = env.find(n);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  CHECK_FALSE(select_local_gpu(get, [&](const char* n, const char* v) { env[n] = v; }));
  CHECK(env["CUDA_VISIBLE_DEVICES"] == "5");
}
