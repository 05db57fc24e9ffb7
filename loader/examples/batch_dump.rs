//! The Rust side of the Python package's "same batches as Rust" test: runs the `Loader` as
//! `uic.Loader` is documented to (named order, rank's share with its positions, preset
//! settings) and writes every batch's pixels to OUT, printing one JSON line per batch with
//! its place in OUT, its labels and its indices.
//!
//! ```sh
//! cargo run -p uic-loader --example batch_dump -- FILE OUT batch_size=4 size=32 threads=2 \
//!     order=random seed=0 preset=paper drop_last=1 rank=0 world=1 epochs=2
//! ```

use std::io::Write;
use std::sync::Arc;

use uic_augment::Preset;
use uic_loader::order::{shard_positions, OrderKind};
use uic_loader::{Loader, LoaderConfig, RecordFile};

fn main() {
    if let Err(e) = run() {
        eprintln!("batch_dump: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, out, settings @ ..] = &args[..] else {
        return Err("usage: batch_dump FILE OUT [key=value...]".into());
    };
    let get = |key: &str, default: &str| -> String {
        settings
            .iter()
            .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .unwrap_or(default)
            .to_string()
    };
    let batch_size: usize = get("batch_size", "4").parse()?;
    let size: u32 = get("size", "32").parse()?;
    let threads: usize = get("threads", "2").parse()?;
    let order: OrderKind = get("order", "random").parse()?;
    let seed: u64 = get("seed", "0").parse()?;
    let preset = match get("preset", "paper").as_str() {
        "paper" => Preset::Paper,
        "strong" => Preset::Strong,
        "eval" => Preset::Eval,
        p => return Err(format!("preset {p:?}").into()),
    };
    let drop_last = get("drop_last", "1") == "1";
    let rank: usize = get("rank", "0").parse()?;
    let world: usize = get("world", "1").parse()?;
    let epochs: u64 = get("epochs", "1").parse()?;

    let file = Arc::new(RecordFile::open(file)?);
    let cfg = LoaderConfig {
        batch_size,
        threads,
        drop_last,
        seed,
        ..LoaderConfig::for_preset(preset, (size, size))
    };
    let order = order.build(&file, seed);
    let loader = Loader::new(file, cfg)?;
    let mut dump = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut offset = 0usize;
    for e in 0..epochs {
        let (indices, positions) = shard_positions(&order.indices(e), rank, world);
        for b in loader.epoch_at(e, indices, positions, 0)? {
            let b = b?;
            let px = b.pixels(0);
            dump.write_all(px)?;
            let labels: Vec<i64> = match b.labels() {
                Some(l) => l
                    .iter()
                    .map(|&l| if l == u32::MAX { -1 } else { i64::from(l) })
                    .collect(),
                None => vec![-1; b.len()],
            };
            println!(
                "{{\"epoch\":{e},\"batch\":{},\"len\":{},\"offset\":{offset},\"bytes\":{},\"labels\":{labels:?},\"indices\":{:?}}}",
                b.number(),
                b.len(),
                px.len(),
                b.indices()
            );
            offset += px.len();
        }
    }
    dump.flush()?;
    Ok(())
}
