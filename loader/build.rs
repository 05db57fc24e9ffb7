//! With the `nvjpeg` feature, tell the linker where `libnvjpeg.so` is: `NVJPEG_LIB_DIR`, or
//! `third_party/nvjpeg/lib` as `scripts/setup.sh --nvjpeg` leaves it. (nvjpeg-sys only emits
//! `-lnvjpeg`.) At run time the library is found through `LD_LIBRARY_PATH`.
fn main() {
    println!("cargo:rerun-if-env-changed=NVJPEG_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_NVJPEG").is_none() {
        return;
    }
    let dir = std::env::var("NVJPEG_LIB_DIR").unwrap_or_else(|_| {
        let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it");
        format!("{manifest}/../third_party/nvjpeg/lib")
    });
    println!("cargo:rustc-link-search=native={dir}");
}
