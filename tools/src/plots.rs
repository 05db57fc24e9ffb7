//! The PNG plots of a run folder, from its `metrics.jsonl` and checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use uic_trainer::checkpoint;
use uic_trainer::labels::class_sizes;
use uic_trainer::metrics::read_metrics;
use uic_trainer::plot::{bar_chart, line_chart, Series};

/// Writes `nmi.png`, `loss.png`, `lr.png` and `class_sizes.png` into `run`; returns the paths.
pub fn write(run: &Path) -> Result<Vec<PathBuf>> {
    let m = read_metrics(&run.join("metrics.jsonl"))?;
    let mut out = Vec::new();
    let pts = |f: &dyn Fn(&uic_trainer::EpochMetrics) -> Option<f64>| -> Vec<(f64, f64)> {
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
