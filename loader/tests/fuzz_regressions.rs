//! Regressions from the fuzz targets in `fuzz/` (docs/reliability.md), on stable: every
//! input a fuzzer crashed on is a fixture in `tests/fixtures/fuzz/`, and the allocation
//! bounds (a record declaring 2^40 samples, a JPEG declaring 65,535 x 65,535) are checked
//! with an allocator that remembers each thread's largest request.

use crate::common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use uic_loader::convert::{discover, SourceOptions};
use uic_loader::crop::{CropDecoder, Rect};
use uic_loader::format::{Header, HEADER_LEN};
use uic_loader::jpeg::{Decoder, Scale};
use uic_loader::{Error, RecordFile, StorageMode};

/// The system allocator, remembering the largest single request of each thread since its
/// last reset. Per thread, because this file's tests share their process (and this
/// allocator) with the other integration tests, which allocate freely at the same time;
/// each measured call runs on the test's own thread.
struct Largest;

thread_local! {
    /// This thread's largest request since [`largest_during`] reset it. A `const` initialiser
    /// of a type without `Drop`: reading it never allocates, so the allocator may touch it.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// Tests that read `LARGEST` run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn note(size: usize) {
    // `try_with`: a thread being torn down has no slot left; its requests are not measured.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: forwards to `System` unchanged; only records the size.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Largest = Largest;

/// No single allocation of a refused input may come near the size its header declares.
const BOUND: usize = 16 << 20;

fn largest_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(name)
}

/// A small valid record file, written by the writer through `convert`.
fn record_file(dir: &Path) -> Vec<u8> {
    common::image_folder(&dir.join("images"), 2, 2);
    let out = dir.join("small.uicr");
    uic_loader::convert::convert(&dir.join("images"), &out, &Default::default(), &|_| {}).unwrap();
    std::fs::read(out).unwrap()
}

#[test]
fn a_kaggle_header_the_csv_reader_splits_otherwise_is_an_error() {
    // `ImageId,PredictionString"`: detection saw both names, the CSV reader did not, and
    // an `expect` panicked (fuzz target `labels`).
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    let opts = SourceOptions {
        labels_csv: Some(fixture("labels-kaggle-stray-quote.csv")),
        ..Default::default()
    };
    let err = discover(&dir.path().join("images"), &opts).unwrap_err();
    assert!(err.to_string().contains("not as CSV columns"), "{err}");
}

#[test]
fn a_record_declaring_2_pow_40_samples_is_refused_before_allocating() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = record_file(dir.path());
    let mut h = Header::decode(&bytes[..HEADER_LEN]).unwrap();
    h.num_samples = 1 << 40;
    bytes[..HEADER_LEN].copy_from_slice(&h.encode());
    let path = dir.path().join("huge.uicr");
    std::fs::write(&path, &bytes).unwrap();
    let (r, largest) = largest_during(|| RecordFile::open(&path));
    let err = r.unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{err}");
    assert!(largest < BOUND, "allocated {largest} bytes before refusing");
}

#[test]
fn a_65535_square_jpeg_is_refused_before_allocating() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // libjpeg itself refuses sides over 65,500 when it reads the header; 65,500 x 65,500
    // passes there and must meet the decoder's pixel limit before any buffer is sized.
    for side in [65535u16, 65500] {
        let bomb = common::bomb(side, side);
        let s = side as u32;
        // The fused crop path: the region buffer used to be sized from the header first
        // (about 200 MB at 1/8 for a 224x224 output).
        let mut dec = CropDecoder::new().unwrap();
        let mut out = vec![0u8; 224 * 224 * 3];
        let (r, largest) = largest_during(|| {
            dec.decode(
                StorageMode::Jpeg,
                &bomb,
                s,
                s,
                Rect::full(s, s),
                (224, 224),
                &mut out,
            )
        });
        assert!(r.is_err(), "{side}: {r:?}");
        assert!(
            largest < BOUND,
            "{side}: allocated {largest} bytes before refusing"
        );
        // The full decode: refused before the (caller's) buffer is even looked at.
        let mut d = Decoder::new().unwrap();
        let (r2, largest) = largest_during(|| d.decode_rgb(&bomb, Scale::Eighth, &mut []));
        assert!(
            largest < BOUND,
            "{side}: allocated {largest} bytes before refusing"
        );
        if side == 65500 {
            assert!(matches!(r, Err(Error::TooManyPixels { .. })), "{r:?}");
            assert!(matches!(r2, Err(Error::TooManyPixels { .. })), "{r2:?}");
        } else {
            assert!(r2.is_err());
        }
    }
}

#[test]
fn a_crop_inside_the_claimed_size_but_outside_the_jpeg_is_an_error() {
    // A record entry claiming 1000x1000 for a 16x16 JPEG: the crop passed the check against
    // the claimed size and the region arithmetic underflowed (fuzz target `jpeg_crop`).
    let jpeg = common::jpeg(16, 16, 1);
    let mut dec = CropDecoder::new().unwrap();
    let mut out = vec![0u8; 8 * 8 * 3];
    let crop = Rect {
        x: 500.0,
        y: 500.0,
        w: 100.0,
        h: 100.0,
    };
    let r = dec.decode(StorageMode::Jpeg, &jpeg, 1000, 1000, crop, (8, 8), &mut out);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    // The same decoder still decodes a good crop afterwards.
    dec.decode(
        StorageMode::Jpeg,
        &jpeg,
        16,
        16,
        Rect::full(16, 16),
        (8, 8),
        &mut out,
    )
    .unwrap();
}

/// Writes the JPEG seeds of `fuzz/seeds/jpeg_crop` that need an encoder (progressive,
/// CMYK, grayscale, 4:4:4), each behind the target's 16 parameter bytes. Run by hand:
/// `cargo test -p uic-loader --test fuzz_regressions -- --ignored write_jpeg_seeds`.
#[test]
#[ignore]
fn write_jpeg_seeds() {
    use uic_loader::jpeg::{EncodeOptions, Encoder, PixelFormat, Subsampling};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/jpeg_crop");
    std::fs::create_dir_all(&dir).unwrap();
    let params = [
        24u8, 16, 1, 1, 0, 0x20, 0, 0x10, 0, 0xc0, 0, 0xc0, 0, 0, 0, 0,
    ];
    let (w, h) = (29u32, 21u32);
    let rgb = common::pattern(w, h, 7);
    let gray: Vec<u8> = rgb.chunks(3).map(|p| p[0]).collect();
    let cmyk: Vec<u8> = rgb
        .chunks(3)
        .flat_map(|p| [p[0], p[1], p[2], 200])
        .collect();
    let mut enc = Encoder::new().unwrap();
    let opts = |subsampling, progressive| EncodeOptions {
        quality: 75,
        subsampling,
        progressive,
    };
    for (name, px, f, o) in [
        (
            "progressive",
            &rgb,
            PixelFormat::Rgb,
            opts(Subsampling::S420, true),
        ),
        (
            "cmyk",
            &cmyk,
            PixelFormat::Cmyk,
            opts(Subsampling::S444, false),
        ),
        (
            "gray",
            &gray,
            PixelFormat::Gray,
            opts(Subsampling::S420, false),
        ),
        (
            "s444",
            &rgb,
            PixelFormat::Rgb,
            opts(Subsampling::S444, false),
        ),
        (
            "s422-progressive",
            &rgb,
            PixelFormat::Rgb,
            opts(Subsampling::S422, true),
        ),
    ] {
        let jpeg = enc.encode(px, w, h, f, &o).unwrap();
        let mut seed = params.to_vec();
        seed.extend_from_slice(&jpeg);
        std::fs::write(dir.join(format!("seed-{name}")), seed).unwrap();
    }
}
