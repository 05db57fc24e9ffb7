// The NCCL build of the shim, checked without Rust: `scripts/check-gpu-build.sh` compiles
// csrc/shim.cpp with UIC_C10D_NCCL against an installed torch 2.11.0's CUDA headers, links
// this program to its libtorch_cuda, and runs it. One rank forms an NCCL group on CUDA
// device 0 through the shim's own entry points, then sums a tensor on that device.
// Where no GPU is present, libtorch refuses the group: the shim must return that as one
// message (no crash, no hang), and the program says so. Exit status: 0 when the result is
// right for the machine (a sum of 3 on a GPU; the refusal naming the missing GPU without
// one), 1 otherwise.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include <ATen/ATen.h>

struct uic_c10d_group;
extern "C" {
int uic_c10d_has_nccl();
uic_c10d_group* uic_c10d_new(const char* host, uint16_t port, int rank, int world,
                             int agent_store, const char* prefix, const char* device_host,
                             int nccl_device, int64_t timeout_ms, char** err);
void* uic_c10d_store_host(uint16_t port, int world, int64_t timeout_ms, char** err);
uint16_t uic_c10d_store_port(void* s);
void uic_c10d_store_free(void* s);
void uic_c10d_free(uic_c10d_group* g);
int uic_c10d_allreduce_sum(uic_c10d_group* g, at::Tensor* const* ts, size_t n, char** err);
}

int main() {
  if (uic_c10d_has_nccl() != 1) {
    std::printf("nccl-probe: the shim was built without NCCL\n");
    return 1;
  }
  char* err = nullptr;
  void* store = uic_c10d_store_host(0, 1, 20000, &err);
  if (store == nullptr) {
    std::printf("nccl-probe: hosting a store: %s\n", err);
    return 1;
  }
  uint16_t port = uic_c10d_store_port(store);
  uic_c10d_group* g =
      uic_c10d_new("127.0.0.1", port, 0, 1, 1, "", "127.0.0.1", 0, 20000, &err);
  bool gpu = at::hasCUDA();
  int status = 1;
  if (g == nullptr) {
    std::string m = err ? err : "";
    bool says_why = m.find("GPU") != std::string::npos && m.find('\n') == std::string::npos;
    std::printf("nccl-probe: no group (%s GPU here): %s\n", gpu ? "a" : "no", m.c_str());
    status = (!gpu && says_why) ? 0 : 1;
  } else {
    at::Tensor t = at::full({4}, 3.0, at::TensorOptions().device(at::kCUDA, 0));
    at::Tensor* ts[1] = {&t};
    if (uic_c10d_allreduce_sum(g, ts, 1, &err) != 0) {
      std::printf("nccl-probe: allreduce: %s\n", err);
    } else {
      double s = t.sum().item<double>() / 4.0;
      std::printf("nccl-probe: one NCCL rank on cuda:0 summed to %g\n", s);
      status = s == 3.0 ? 0 : 1;
    }
    uic_c10d_free(g);
  }
  uic_c10d_store_free(store);
  return status;
}
