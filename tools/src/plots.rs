//! The PNG plots of a run folder, from its `metrics.jsonl` and checkpoint.

use std::path::{Path, PathBuf};

use crate::plot::{bar_chart, line_chart, Series};
use anyhow::{Context, Result};
use uic_trainer::checkpoint;
use uic_trainer::labels::class_sizes;
use uic_trainer::metrics::read_metrics;

/// Writes `nmi.png`, `loss.png`, `lr.png` and `class_sizes.png` into `run`; returns the paths.
pub fn write(run: &Path) -> Result<Vec<PathBuf>> {
    let m = read_metrics(&run.join("metrics.jsonl"))?;
    let mut out = Vec::new();
    let pts = |f: &dyn Fn(&uic_trainer::metrics::EpochMetrics) -> Option<f64>| -> Vec<(f64, f64)> {
        m.iter()
            .filter_map(|e| f(e).map(|v| (e.epoch as f64, v)))
            .collect()
    };
    let (prev, truth, geo) = (
        pts(&|e| Some(e.nmi_prev)),
        pts(&|e| e.nmi_true),
        pts(&|e| e.nmi_true_geometric),
    );
    let mut s = vec![Series {
        name: "NMI t-1/t",
        points: &prev,
    }];
    if !truth.is_empty() {
        s.push(Series {
            name: "NMI t/labels",
            points: &truth,
        });
        s.push(Series {
            name: "NMI t/labels (geometric)",
            points: &geo,
        });
    }
    let p = run.join("nmi.png");
    line_chart(&p, "NMI of the pseudo-labels", "epoch", "NMI", &s)?;
    out.push(p);
    let loss = pts(&|e| Some(e.loss));
    let p = run.join("loss.png");
    line_chart(
        &p,
        "Training loss",
        "epoch",
        "cross-entropy",
        &[Series {
            name: "loss",
            points: &loss,
        }],
    )?;
    out.push(p);
    let lr = pts(&|e| Some(e.lr));
    let p = run.join("lr.png");
    line_chart(
        &p,
        "Learning rate (first step of each epoch)",
        "epoch",
        "lr",
        &[Series {
            name: "lr",
            points: &lr,
        }],
    )?;
    out.push(p);
    if let Some(ck) = checkpoint::find(run)? {
        let labels = checkpoint::load_labels(&ck.dir)?;
        let mut sizes: Vec<f64> = class_sizes(&labels, ck.state.config.k)
            .into_iter()
            .map(|s| s as f64)
            .collect();
        sizes.sort_by(|a, b| b.total_cmp(a));
        let p = run.join("class_sizes.png");
        bar_chart(
            &p,
            &format!("Class sizes after epoch {} (sorted)", ck.state.epoch),
            "class (largest first)",
            "images",
            &sizes,
        )
        .with_context(|| format!("cannot write {}", p.display()))?;
        out.push(p);
    }
    Ok(out)
}

/// Writes `classes_grid.png`: the `rows` pseudo-classes whose members the model assigns with
/// the lowest mean softmax entropy (the paper's Fig. 4), `cols` most confident images each,
/// centre-cropped. `data` defaults to the file the run trained on.
pub fn write_grid(run: &Path, data: Option<&Path>, rows: usize, cols: usize) -> Result<PathBuf> {
    use std::sync::Arc;
    let (model, ck) = uic_trainer::checkpoint::load_model(run)?;
    let cfg = &ck.state.config;
    let data: PathBuf = data.map_or_else(|| PathBuf::from(&ck.state.data.path), Path::to_path_buf);
    let file = Arc::new(uic_loader::RecordFile::open(&data).with_context(|| {
        format!(
            "cannot open the run's data; pass --data (tried {})",
            data.display()
        )
    })?);
    let all: Vec<usize> = (0..file.len()).collect();
    let (assign, entropy) = uic_trainer::infer::predict(&model, cfg, &file, &all)?;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); cfg.k];
    for (i, &c) in assign.iter().enumerate() {
        members[c as usize].push(i);
    }
    let mean_h =
        |m: &[usize]| m.iter().map(|&i| f64::from(entropy[i])).sum::<f64>() / m.len() as f64;
    let mut classes: Vec<usize> = (0..cfg.k).filter(|&c| !members[c].is_empty()).collect();
    classes.sort_by(|&a, &b| mean_h(&members[a]).total_cmp(&mean_h(&members[b])));
    classes.truncate(rows);
    let mut picks = Vec::new();
    let mut labels = Vec::new();
    for &c in &classes {
        let mut m = members[c].clone();
        m.sort_by(|&a, &b| entropy[a].total_cmp(&entropy[b]));
        m.truncate(cols);
        labels.push(format!("{c} (n={})", members[c].len()));
        picks.push(m);
    }
    let flat: Vec<usize> = picks.iter().flatten().copied().collect();
    let s = cfg.input_size as usize;
    let loader = uic_loader::Loader::new(file.clone(), uic_trainer::eval_loader_config(cfg))?;
    let mut hwc: Vec<Vec<u8>> = Vec::with_capacity(flat.len());
    for batch in loader.epoch(0, flat.clone(), 0)? {
        let batch = batch?;
        for chw in batch.pixels(0).chunks_exact(3 * s * s) {
            let mut img = vec![0u8; 3 * s * s];
            for p in 0..s * s {
                for ch in 0..3 {
                    img[3 * p + ch] = chw[ch * s * s + p];
                }
            }
            hwc.push(img);
        }
    }
    // Rows of `cols` tiles; a class with fewer members gets grey tiles.
    let grey = vec![200u8; 3 * s * s];
    let mut tiles: Vec<&[u8]> = Vec::new();
    let mut next = hwc.iter();
    for m in &picks {
        for j in 0..cols {
            tiles.push(if j < m.len() {
                next.next().map_or(&grey[..], |v| &v[..])
            } else {
                &grey[..]
            });
        }
    }
    let p = run.join("classes_grid.png");
    let caption = [
        format!(
            "The {} pseudo-classes the model is surest of (lowest mean entropy), one per row,",
            classes.len()
        ),
        format!("each with its {cols} surest images, centre crops."),
        "Row label: class number (n = images the model puts in it). Grey: no more images."
            .to_string(),
    ];
    crate::plot::image_grid(&p, &tiles, s, s, cols, &labels, &caption)?;
    Ok(p)
}
