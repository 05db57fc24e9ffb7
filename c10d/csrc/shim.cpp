// A plain C interface over libtorch's c10d: a TCPStore rendezvous and a ProcessGroupGloo,
// with the four collectives data-parallel training needs. Every entry point catches every
// C++ exception and returns its message instead (the caller frees it with
// uic_c10d_free_string); nothing throws across the C boundary.
//
// Tensors arrive as `at::Tensor*`, which is what a tch::Tensor holds (torch_api.h:
// `typedef torch::Tensor *tensor`), so collectives act in place on the caller's tensors.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <c10/util/Logging.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

struct uic_c10d_group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  std::chrono::milliseconds timeout;
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

// Joins (or, as rank 0 without `agent_store`, hosts) the TCPStore at host:port, prefixes its
// keys with `prefix` when it is not empty, and connects a Gloo group of `world` ranks over
// the network device bound to `device_host` (or to GLOO_SOCKET_IFNAME's interface, or to
// this machine's hostname, when `device_host` is empty). Returns NULL and sets `*err` on
// failure.
uic_c10d_group* uic_c10d_new(
    const char* host,
    uint16_t port,
    int rank,
    int world,
    int agent_store,
    const char* prefix,
    const char* device_host,
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
    g = new uic_c10d_group{store, pg, timeout};
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
    std::vector<c10::intrusive_ptr<c10d::Work>> works{
        issue([&] { return g->pg->barrier(); })};
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
