//! tch adds no rpath: point the binary, tests and benches at the libtorch they linked.
//! With the `cuda` feature, also force the CUDA libraries into the binary: no Rust symbol
//! refers to them, so `--as-needed` would drop them and libtorch would never register its
//! CUDA backend (`tch::Cuda::is_available()` would say false on a GPU machine).
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        for arg in [
            "-Wl,--no-as-needed",
            "-ltorch_cuda",
            "-lc10_cuda",
            "-Wl,--as-needed",
            // libtorch_cuda's own dependencies (cuBLAS, cuDNN, NCCL...) are not here at
            // link time; they are resolved on the GPU machine from its PyTorch install.
            "-Wl,--allow-shlib-undefined",
        ] {
            println!("cargo:rustc-link-arg={arg}");
        }
    }
}
