// A plain C interface over libtorch's c10d: a TCPStore rendezvous and a ProcessGroupGloo
// (or, built with UIC_C10D_NCCL, a ProcessGroupNCCL), with the four collectives
// data-parallel training needs. Every entry point catches every
// C++ exception and returns its message instead (the caller frees it with
// uic_c10d_free_string); nothing throws across the C boundary.
//
// Tensors arrive as `at::Tensor*`, which is what a tch::Tensor holds (torch_api.h:
// `typedef torch::Tensor *tensor`), so collectives act in place on the caller's tensors.

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <c10/util/Logging.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef UIC_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

struct uic_c10d_group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> pg;
  std::chrono::milliseconds timeout;
  // The CUDA device of an NCCL group (its barrier names it); -1 for Gloo.
  int device = -1;
};

// The gradient sync overlapped with the backward pass, as DDP's Reducer does it: the
// parameters are cut into buckets in reverse order (the order backward produces their
// gradients), and a hook after each parameter's gradient accumulation launches a bucket's
// allreduce as soon as all its gradients are in, while backward goes on. Buckets are
// launched strictly in order, so that every rank issues the same collectives in the same
// order. Each bucket is a float32 copy of its gradients times the rank's share, summed as
// the after-backward path sums it (the same elementwise sums: the same bits).
struct uic_c10d_overlap {
  uic_c10d_group* g = nullptr;
  std::vector<at::Tensor> params;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;
  std::vector<uintptr_t> hook_keys;
  std::vector<size_t> bucket_of;  // parameter -> bucket
  std::vector<int64_t> offset_of; // parameter -> offset in its bucket
  std::vector<std::vector<size_t>> members; // bucket -> parameters
  std::vector<int64_t> bucket_len;
  // This step's state, under `m`.
  std::mutex m;
  bool armed = false;
  double share = 1.0;
  at::Tensor values;
  std::vector<size_t> waiting; // bucket -> gradients not yet in
  std::vector<at::Tensor> flats;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  size_t next = 0;
  std::string error;
};

namespace {

char* copy_string(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p != nullptr) {
    std::memcpy(p, s.data(), s.size());
    p[s.size()] = '\0';
  }
  return p;
}

// Runs `f`, turning any exception into a message in `*err` and a return of -1.
template <class F>
int guarded(char** err, F&& f) {
  try {
    f();
    return 0;
  } catch (const c10::Error& e) {
    *err = copy_string(e.what_without_backtrace());
  } catch (const std::exception& e) {
    *err = copy_string(e.what());
  } catch (...) {
    *err = copy_string("an unknown C++ exception");
  }
  return -1;
}

// Waits for every work item, so that none is left running on tensors the caller frees,
// then rethrows the first failure.
void wait_all(
    std::vector<c10::intrusive_ptr<c10d::Work>>& works,
    std::chrono::milliseconds timeout) {
  std::exception_ptr first;
  for (auto& w : works) {
    try {
      w->wait(timeout);
    } catch (...) {
      if (!first) {
        first = std::current_exception();
      }
    }
  }
  if (first) {
    std::rethrow_exception(first);
  }
}

// Held while a collective is issued (not while it is waited on). libtorch 2.11's
// ProcessGroupGloo::enqueue records every collective in the process-wide flight recorder,
// whose FlightRecorder::recordWithResetEnabled inserts into a std::map before taking its own
// lock; two groups issuing at once from two threads corrupt that map (a SIGSEGV in
// _Rb_tree_insert_and_rebalance, seen about once in 40 runs of tests/collectives.rs, where
// two ranks share a process). Issuing is a queue push, so one lock costs nothing measurable.
std::mutex issue_mutex;

template <class F>
auto issue(F&& f) {
  std::lock_guard<std::mutex> hold(issue_mutex);
  return f();
}

// c10d's own log lines (`[W1207 ... socket.cpp:469] [c10d] waitForInput ...` while a rank
// waits for the others) are for whoever debugs c10d, not for a user whose run is fine: they
// are kept to errors unless TORCH_CPP_LOG_LEVEL asks for more (then c10's own reading of it
// applies, as under PyTorch).
void quiet_c10d_logs() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (std::getenv("TORCH_CPP_LOG_LEVEL") != nullptr) {
      c10::initLogging();
    } else if (FLAGS_caffe2_log_level < 2) {
      FLAGS_caffe2_log_level = 2; // ERROR
    }
  });
}

std::vector<at::Tensor> tensors_of(at::Tensor* const* ts, size_t n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (size_t i = 0; i < n; i++) {
    v.push_back(*ts[i]);
  }
  return v;
}

} // namespace

extern "C" {

// Whether this shim was built with NCCL.
int uic_c10d_has_nccl() {
#ifdef UIC_C10D_NCCL
  return 1;
#else
  return 0;
#endif
}

// Joins (or, as rank 0 without `agent_store`, hosts) the TCPStore at host:port, prefixes its
// keys with `prefix` when it is not empty, and connects a group of `world` ranks:
// - `nccl_device` < 0: Gloo, over the network device bound to `device_host` (or to
//   GLOO_SOCKET_IFNAME's interface, or to this machine's hostname, when `device_host` is
//   empty);
// - `nccl_device` >= 0: NCCL on that CUDA device (a build with UIC_C10D_NCCL).
// Returns NULL and sets `*err` on failure.
uic_c10d_group* uic_c10d_new(
    const char* host,
    uint16_t port,
    int rank,
    int world,
    int agent_store,
    const char* prefix,
    const char* device_host,
    int nccl_device,
    int64_t timeout_ms,
    char** err) {
  uic_c10d_group* g = nullptr;
  quiet_c10d_logs();
  guarded(err, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions so;
    so.port = port;
    so.isServer = agent_store == 0 && rank == 0;
    so.numWorkers = static_cast<size_t>(world);
    so.waitWorkers = false;
    so.timeout = timeout;
    c10::intrusive_ptr<c10d::Store> store =
        c10::make_intrusive<c10d::TCPStore>(std::string(host), so);
    if (prefix != nullptr && prefix[0] != '\0') {
      store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store);
    }
    if (nccl_device >= 0) {
#ifdef UIC_C10D_NCCL
      auto nopts = c10d::ProcessGroupNCCL::Options::create();
      nopts->timeout = timeout;
      auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, nopts);
      g = new uic_c10d_group{store, pg, timeout, nccl_device};
      return;
#else
      throw std::runtime_error(
          "this uic is built without NCCL: use the gloo backend, or rebuild with the "
          "`nccl` feature against a CUDA libtorch");
#endif
    }
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (device_host != nullptr && device_host[0] != '\0') {
      opts->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForHostname(device_host));
    } else if (ifname != nullptr && ifname[0] != '\0') {
      opts->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    auto pg =
        c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
    g = new uic_c10d_group{store, pg, timeout, -1};
  });
  return g;
}

// Hosts a TCPStore on 0.0.0.0:port (0: any free port) for `world` clients, as torchrun's
// agent does; the ranks then join it with `agent_store` set. Returns NULL and sets `*err` on failure.
void* uic_c10d_store_host(uint16_t port, int world, int64_t timeout_ms, char** err) {
  c10d::TCPStore* s = nullptr;
  quiet_c10d_logs();
  guarded(err, [&] {
    c10d::TCPStoreOptions so;
    so.port = port;
    so.isServer = true;
    so.numWorkers = static_cast<size_t>(world);
    so.waitWorkers = false;
    so.timeout = std::chrono::milliseconds(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string("127.0.0.1"), so);
    s = store.release();
  });
  return s;
}

// The port a hosted store listens on (the one the kernel chose when hosted on port 0).
uint16_t uic_c10d_store_port(void* s) {
  return static_cast<c10d::TCPStore*>(s)->getPort();
}

void uic_c10d_store_free(void* s) {
  if (s != nullptr) {
    c10::intrusive_ptr<c10d::TCPStore>::reclaim(static_cast<c10d::TCPStore*>(s));
  }
}

void uic_c10d_free(uic_c10d_group* g) {
  delete g;
}

void uic_c10d_free_string(char* s) {
  std::free(s);
}

// Sums each of the `n` tensors across ranks, in place. Each tensor is reduced as one
// bucket; the buckets run concurrently on the group's threads.
int uic_c10d_allreduce_sum(
    uic_c10d_group* g,
    at::Tensor* const* ts,
    size_t n,
    char** err) {
  return guarded(err, [&] {
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.reserve(n);
    for (size_t i = 0; i < n; i++) {
      std::vector<at::Tensor> one{*ts[i]};
      works.push_back(issue([&] { return g->pg->allreduce(one); }));
    }
    wait_all(works, g->timeout);
  });
}

// Overwrites each of the `n` tensors with rank `root`'s.
int uic_c10d_broadcast(
    uic_c10d_group* g,
    at::Tensor* const* ts,
    size_t n,
    int root,
    char** err) {
  return guarded(err, [&] {
    c10d::BroadcastOptions o;
    o.rootRank = root;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.reserve(n);
    for (size_t i = 0; i < n; i++) {
      std::vector<at::Tensor> one{*ts[i]};
      works.push_back(issue([&] { return g->pg->broadcast(one, o); }));
    }
    wait_all(works, g->timeout);
  });
}

// Gathers every rank's `input` into `output`, of shape [world, input's shape...]: rank r's
// copy lands in output[r].
int uic_c10d_allgather(
    uic_c10d_group* g,
    at::Tensor* output,
    at::Tensor* input,
    char** err) {
  return guarded(err, [&] {
    std::vector<std::vector<at::Tensor>> outs{output->unbind(0)};
    std::vector<at::Tensor> ins = tensors_of(&input, 1);
    std::vector<c10::intrusive_ptr<c10d::Work>> works{
        issue([&] { return g->pg->allgather(outs, ins); })};
    wait_all(works, g->timeout);
  });
}

int uic_c10d_barrier(uic_c10d_group* g, char** err) {
  return guarded(err, [&] {
    c10d::BarrierOptions o;
    if (g->device >= 0) {
      o.device_ids = {static_cast<int64_t>(g->device)};
    }
    std::vector<c10::intrusive_ptr<c10d::Work>> works{
        issue([&] { return g->pg->barrier(o); })};
    wait_all(works, g->timeout);
  });
}

// The state of libtorch's default generator of a device (`cuda` 0: the CPU's; else CUDA
// device `index`'s), for a checkpoint taken part-way through an epoch: dropout draws from
// it. Copies the state into `buf` when it fits in `cap` bytes; returns its size, or -1 with
// `*err` set.
int64_t uic_rng_state(int cuda, int index, uint8_t* buf, int64_t cap, char** err) {
  int64_t n = -1;
  guarded(err, [&] {
    at::Device d = cuda ? at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index))
                        : at::Device(at::kCPU);
    at::Generator g = at::globalContext().defaultGenerator(d);
    at::Tensor state;
    {
      std::lock_guard<std::mutex> hold(g.mutex());
      state = g.get_state();
    }
    state = state.contiguous();
    n = state.numel();
    if (n <= cap) {
      std::memcpy(buf, state.data_ptr<uint8_t>(), static_cast<size_t>(n));
    }
  });
  return n;
}

// Restores a state `uic_rng_state` returned. Returns 0, or -1 with `*err` set (a state of
// another size or device).
int uic_rng_set_state(int cuda, int index, const uint8_t* buf, int64_t len, char** err) {
  return guarded(err, [&] {
    at::Device d = cuda ? at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index))
                        : at::Device(at::kCPU);
    at::Generator g = at::globalContext().defaultGenerator(d);
    at::Tensor state = at::empty({len}, at::TensorOptions().dtype(at::kByte));
    std::memcpy(state.data_ptr<uint8_t>(), buf, static_cast<size_t>(len));
    std::lock_guard<std::mutex> hold(g.mutex());
    g.set_state(state);
  });
}

} // extern "C"

// ---- The overlapped gradient sync ---------------------------------------------------

namespace {

// Launches bucket `b` (the caller holds `o->m`): its gradients times the share, summed
// across the ranks in the background. The last bucket takes the step's values with it.
void launch_bucket(uic_c10d_overlap* o, size_t b) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> parts;
  parts.reserve(o->members[b].size());
  for (size_t i : o->members[b]) {
    const at::Tensor& p = o->params[i];
    at::Tensor grad = p.grad();
    if (grad.defined()) {
      parts.push_back(grad.to(at::kFloat).flatten());
    } else {
      parts.push_back(at::zeros({p.numel()}, p.options().dtype(at::kFloat)));
    }
  }
  at::Tensor flat = at::cat(parts, 0) * o->share;
  o->flats[b] = flat;
  std::vector<at::Tensor> one{flat};
  o->works.push_back(issue([&] { return o->g->pg->allreduce(one); }));
  if (b + 1 == o->members.size() && o->values.defined()) {
    std::vector<at::Tensor> v{o->values};
    o->works.push_back(issue([&] { return o->g->pg->allreduce(v); }));
  }
}

// Launches every complete bucket in order (the caller holds `o->m`).
void launch_ready(uic_c10d_overlap* o) {
  while (o->next < o->members.size() && o->waiting[o->next] == 0) {
    launch_bucket(o, o->next);
    o->next++;
  }
}

} // namespace

extern "C" {

// Hooks the `n` parameters for the overlapped sync, in buckets of about `bucket_bytes`
// (float32), cut from the last parameter backwards. Returns NULL and sets `*err` on failure.
uic_c10d_overlap* uic_c10d_overlap_new(
    uic_c10d_group* g,
    at::Tensor* const* ps,
    size_t n,
    int64_t bucket_bytes,
    char** err) {
  auto* o = new uic_c10d_overlap();
  int rc = guarded(err, [&] {
    o->g = g;
    o->params = tensors_of(ps, n);
    o->bucket_of.assign(n, 0);
    o->offset_of.assign(n, 0);
    int64_t bytes = INT64_MAX;
    for (size_t k = n; k-- > 0;) {
      int64_t b = o->params[k].numel() * 4;
      if (bytes > bucket_bytes - b || o->members.empty()) {
        if (o->members.empty() || !o->members.back().empty()) {
          o->members.emplace_back();
          o->bucket_len.push_back(0);
        }
        bytes = 0;
      }
      o->bucket_of[k] = o->members.size() - 1;
      o->members.back().push_back(k);
      o->bucket_len.back() += o->params[k].numel();
      bytes += b;
    }
    // Each bucket's parameters in forward order, as the after-backward path concatenates
    // them, and their offsets in that order.
    for (auto& m : o->members) {
      std::reverse(m.begin(), m.end());
      int64_t off = 0;
      for (size_t i : m) {
        o->offset_of[i] = off;
        off += o->params[i].numel();
      }
    }
    o->waiting.assign(o->members.size(), 0);
    o->flats.assign(o->members.size(), at::Tensor());
    for (size_t k = 0; k < n; k++) {
      auto acc = torch::autograd::impl::grad_accumulator(o->params[k]);
      if (!acc) {
        throw std::runtime_error("a parameter that does not require a gradient");
      }
      o->accumulators.push_back(acc);
      o->hook_keys.push_back(acc->add_post_hook(
          std::make_unique<torch::autograd::utils::LambdaPostHook>(
              [o, k](const torch::autograd::variable_list& outputs,
                     const torch::autograd::variable_list&) {
                std::lock_guard<std::mutex> hold(o->m);
                if (!o->armed || !o->error.empty()) {
                  return outputs;
                }
                try {
                  size_t b = o->bucket_of[k];
                  if (o->waiting[b] > 0) {
                    o->waiting[b]--;
                  }
                  launch_ready(o);
                } catch (const c10::Error& e) {
                  o->error = e.what_without_backtrace();
                } catch (const std::exception& e) {
                  o->error = e.what();
                }
                return outputs;
              })));
    }
  });
  if (rc != 0) {
    delete o;
    return nullptr;
  }
  return o;
}

// Arms the hooks for one step: gradients times `share`; `values` (a 1-d tensor) is summed
// with the last bucket, in place.
int uic_c10d_overlap_begin(
    uic_c10d_overlap* o,
    double share,
    at::Tensor* values,
    char** err) {
  return guarded(err, [&] {
    std::lock_guard<std::mutex> hold(o->m);
    // A step that failed before its finish may have left work running: let it end.
    for (auto& w : o->works) {
      try {
        w->wait(o->g->timeout);
      } catch (...) {
      }
    }
    o->works.clear();
    o->error.clear();
    o->share = share;
    o->values = values ? *values : at::Tensor();
    o->next = 0;
    for (size_t b = 0; b < o->members.size(); b++) {
      o->waiting[b] = o->members[b].size();
      o->flats[b] = at::Tensor();
    }
    o->armed = true;
  });
}

// After backward: launches what the hooks did not (parameters without a gradient this
// step), waits for every bucket, and writes the sums into the gradients.
int uic_c10d_overlap_finish(uic_c10d_overlap* o, char** err) {
  return guarded(err, [&] {
    std::lock_guard<std::mutex> hold(o->m);
    o->armed = false;
    if (!o->error.empty()) {
      std::string e = o->error;
      o->error.clear();
      throw std::runtime_error(e);
    }
    while (o->next < o->members.size()) {
      launch_bucket(o, o->next);
      o->next++;
    }
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.swap(o->works);
    wait_all(works, o->g->timeout);
    at::NoGradGuard no_grad;
    for (size_t b = 0; b < o->members.size(); b++) {
      for (size_t i : o->members[b]) {
        at::Tensor grad = o->params[i].grad();
        if (grad.defined()) {
          grad.copy_(o->flats[b].narrow(0, o->offset_of[i], grad.numel()).view_as(grad));
        }
      }
      o->flats[b] = at::Tensor();
    }
    o->values = at::Tensor();
  });
}

// Removes the hooks and frees the state.
void uic_c10d_overlap_free(uic_c10d_overlap* o) {
  for (size_t k = 0; k < o->accumulators.size(); k++) {
    o->accumulators[k]->del_post_hook(o->hook_keys[k]);
  }
  for (auto& w : o->works) {
    try {
      w->wait(o->g->timeout);
    } catch (...) {
    }
  }
  delete o;
}

} // extern "C"
