//! Compiles `csrc/shim.cpp` against libtorch's c10d headers (the same libtorch tch links,
//! found through torch-sys's `DEP_TCH_LIBTORCH_LIB`) and links `torch_cpu` and `c10`, where
//! c10d and a static gloo live. The wheel has no gloo headers; `csrc/gloo-stand-in` declares
//! the little that `ProcessGroupGloo.hpp` names (see its README).
//!
//! With the `nccl` feature it also compiles ProcessGroupNCCL in (`UIC_C10D_NCCL`) and links
//! `torch_cuda`: the CUDA and NCCL headers come from `UIC_NCCL_INCLUDE` (folders separated by
//! `:`), or from the `uic-nccl-include` file that `scripts/setup.sh --cuda --nccl` writes
//! beside the CUDA libtorch (one folder per line, from `scripts/cuda-headers.sh`).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=UIC_NCCL_INCLUDE");
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect(
        "DEP_TCH_LIBTORCH_LIB unset: torch-sys must be a dependency (run scripts/setup.sh)",
    ));
    let root = lib.parent().expect("libtorch's lib folder has a parent");
    let include = root.join("include");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("csrc/shim.cpp")
        .include("csrc/gloo-stand-in")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-Wno-unused-parameter")
        .flag("-Wno-deprecated-declarations")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("USE_C10D_GLOO", None)
        .warnings(false);
    let nccl = std::env::var_os("CARGO_FEATURE_NCCL").is_some();
    if nccl {
        for dir in nccl_includes(root) {
            build.include(dir);
        }
        build
            .define("USE_C10D_NCCL", None)
            .define("UIC_C10D_NCCL", None);
    }
    build.compile("uic_c10d_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    if nccl {
        // ProcessGroupNCCL lives in libtorch_cuda.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}

/// The CUDA and NCCL include folders of the `nccl` feature.
fn nccl_includes(libtorch: &std::path::Path) -> Vec<PathBuf> {
    if let Some(v) = std::env::var_os("UIC_NCCL_INCLUDE") {
        return std::env::split_paths(&v).collect();
    }
    let list = libtorch.join("uic-nccl-include");
    println!("cargo:rerun-if-changed={}", list.display());
    match std::fs::read_to_string(&list) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(PathBuf::from)
            .collect(),
        Err(_) => panic!(
            "the nccl feature needs the CUDA and NCCL headers: run scripts/setup.sh --cuda --nccl \
             (it writes {}), or set UIC_NCCL_INCLUDE",
            list.display()
        ),
    }
}
