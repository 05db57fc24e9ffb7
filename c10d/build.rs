//! Compiles `csrc/shim.cpp` against libtorch's c10d headers (the same libtorch tch links,
//! found through torch-sys's `DEP_TCH_LIBTORCH_LIB`) and links `torch_cpu` and `c10`, where
//! c10d and a static gloo live. The wheel has no gloo headers; `csrc/gloo-stand-in` declares
//! the little that `ProcessGroupGloo.hpp` names (see its README).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect(
        "DEP_TCH_LIBTORCH_LIB unset: torch-sys must be a dependency (run scripts/setup.sh)",
    ));
    let root = lib.parent().expect("libtorch's lib folder has a parent");
    let include = root.join("include");
    cc::Build::new()
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
        .warnings(false)
        .compile("uic_c10d_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
