//! Builds with `--features cuda` only (scripts/gpu-check). The CUDA libraries must really be
//! linked: no Rust symbol refers to libtorch_cuda, so without build.rs's `--no-as-needed`
//! the linker would drop it and `tch::Cuda::is_available()` would be false on a GPU.
#![cfg(feature = "cuda")]

use std::process::Command;

#[test]
fn the_binary_needs_libtorch_cuda() {
    let bin = env!("CARGO_BIN_EXE_uic");
    let out = match Command::new("readelf").args(["-d", bin]).output() {
        Ok(o) => o,
        Err(_) => {
            eprintln!("skipped: readelf not found");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[libtorch_cuda.so]"),
        "libtorch_cuda.so not NEEDED:\n{text}"
    );
    assert!(
        text.contains("[libc10_cuda.so]"),
        "libc10_cuda.so not NEEDED:\n{text}"
    );
}

#[test]
fn gpu_check_runs_or_says_there_is_no_gpu() {
    let out = Command::new(env!("CARGO_BIN_EXE_uic"))
        .args(["gpu-check", "--data", "/nonexistent.uicr"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if uic_trainer::tch::Cuda::is_available() {
        // With a GPU it gets as far as opening the (missing) data file.
        assert!(err.contains("nonexistent"), "{err}");
    } else {
        eprintln!("skipped the GPU part: no CUDA device here");
        assert!(err.contains("no CUDA device"), "{err}");
    }
}
