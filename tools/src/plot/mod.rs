//! Minimal PNG chart rendering: line charts, bar charts and image grids.
//!
//! Everything is drawn by hand into an [`image::RgbImage`] and saved as PNG; the only
//! dependency is the `image` crate (PNG codec). Text uses a built-in 5x7 bitmap font
//! covering printable ASCII (32..=126); any other character is drawn as a hollow box.
//!
//! * [`line_chart`] - one coloured 2-px line per [`Series`], legend, nice ticks, grid.
//! * [`bar_chart`] - bars for a list of values (e.g. a class-size histogram).
//! * [`image_grid`] - tiles of raw RGB images with optional row labels and a caption.
//!
//! `font.rs` holds the 5x7 font, `raster.rs` the clipped pixel and rectangle primitives.
//!
//! Charts are 800x500 px. Tick values are "nice" (1, 2 or 5 times a power of ten, about
//! five per axis) and labelled compactly (`0.15`, `200`, `1e-4`).

mod font;
mod raster;

use std::io;
use std::path::Path;

use image::{Rgb, RgbImage};

use font::{draw_text, draw_text_vertical, fit_scale, text_width};
use raster::{fill_rect, put, save, stroke_rect, BLACK, WHITE};

const CHART_W: u32 = 800;
const CHART_H: u32 = 500;
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const AXIS: Rgb<u8> = Rgb([70, 70, 70]);
/// Series colours (Tableau-like), cycled after eight series.
#[rustfmt::skip]
const PALETTE: [Rgb<u8>; 8] = [
    Rgb([31, 119, 180]), Rgb([255, 127, 14]), Rgb([44, 160, 44]), Rgb([214, 39, 40]),
    Rgb([148, 103, 189]), Rgb([140, 86, 75]), Rgb([227, 119, 194]), Rgb([23, 190, 207]),
];

/// One line series.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// Name shown in the legend.
    pub name: &'a str,
    /// `(x, y)` points, joined in the given order; non-finite points leave a gap.
    pub points: &'a [(f64, f64)],
}

// ---------------------------------------------------------------- font

/// Step (1, 2 or 5 times a power of ten) giving about `target` intervals over [lo, hi].
fn nice_step(lo: f64, hi: f64, target: usize) -> f64 {
    let span = hi - lo;
    if !span.is_finite() || span <= 0.0 {
        return 1.0;
    }
    let rough = span / target.max(1) as f64;
    let mag = 10f64.powf(rough.log10().floor());
    let norm = rough / mag;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Multiples of `step` inside [lo, hi] (small tolerance at both ends).
fn ticks_with_step(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let (first, last) = ((lo / step - 1e-9).ceil(), (hi / step + 1e-9).floor());
    if !(first.is_finite() && last.is_finite()) || last - first > 1000.0 {
        return vec![lo, hi];
    }
    (first as i64..=last as i64)
        .map(|i| i as f64 * step)
        .collect()
}

/// Axis range widened to whole tick steps: returns (lo, hi, step). Degenerate ranges get padding.
fn axis_range(lo: f64, hi: f64) -> (f64, f64, f64) {
    let pad = if lo < hi {
        0.0
    } else if lo == 0.0 {
        1.0
    } else {
        lo.abs() * 0.1
    };
    let (lo, hi) = (lo - pad, hi + pad);
    let step = nice_step(lo, hi, 5);
    (
        (lo / step + 1e-9).floor() * step,
        (hi / step - 1e-9).ceil() * step,
        step,
    )
}

/// Compact label for tick value `v` on an axis with tick spacing `step`.
fn fmt_tick(v: f64, step: f64) -> String {
    fn trim(s: &str) -> &str {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.')
        } else {
            s
        }
    }
    let a = v.abs();
    if a == 0.0 || a < step.abs() * 1e-6 {
        return "0".into();
    }
    if !(1e-3..1e6).contains(&a) {
        let s = format!("{v:.2e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        return format!("{}e{e}", trim(m));
    }
    let decimals = (1.0 - step.abs().log10().floor()).clamp(0.0, 12.0) as usize;
    trim(&format!("{v:.decimals$}")).to_string()
}

// ---------------------------------------------------------------- chart frame

/// Plot rectangle (inclusive pixel bounds) and the data range it shows.
struct Frame {
    l: i32,
    t: i32,
    r: i32,
    b: i32,
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    /// Frame showing data range `x` by `y`; the left margin fits the y label and `y_labels`.
    fn new(x: (f64, f64), y: (f64, f64), y_labels: &[String]) -> Frame {
        let l = 44 + y_labels.iter().map(|s| text_width(s, 2)).max().unwrap_or(0);
        let (r, t, b) = (CHART_W as i32 - 25, 44, CHART_H as i32 - 54);
        Frame {
            l,
            t,
            r,
            b,
            x0: x.0,
            x1: x.1,
            y0: y.0,
            y1: y.1,
        }
    }
    fn px(&self, x: f64) -> f64 {
        self.l as f64 + (x - self.x0) / (self.x1 - self.x0) * (self.r - self.l) as f64
    }
    fn py(&self, y: f64) -> f64 {
        self.b as f64 - (y - self.y0) / (self.y1 - self.y0) * (self.b - self.t) as f64
    }
}

/// Draws grid, ticks, labels and title; `x_ticks` are (pixel x, label) pairs.
#[allow(clippy::too_many_arguments)]
fn draw_chrome(
    img: &mut RgbImage,
    f: &Frame,
    title: &str,
    x_label: &str,
    y_label: &str,
    y_ticks: &[(f64, String)],
    x_ticks: &[(i32, String)],
    x_grid: bool,
) {
    for (v, lab) in y_ticks {
        let y = f.py(*v).round() as i32;
        fill_rect(img, f.l, y, f.r - f.l, 1, GRID);
        fill_rect(img, f.l - 5, y, 5, 1, AXIS);
        draw_text(img, f.l - 8 - text_width(lab, 2), y - 7, lab, 2, BLACK);
    }
    for (x, lab) in x_ticks {
        if x_grid {
            fill_rect(img, *x, f.t, 1, f.b - f.t, GRID);
        }
        fill_rect(img, *x, f.b + 1, 1, 5, AXIS);
        draw_text(img, x - text_width(lab, 2) / 2, f.b + 10, lab, 2, BLACK);
    }
    stroke_rect(img, f.l, f.t, f.r, f.b, AXIS);
    let w = CHART_W as i32;
    let s = fit_scale(title, w - 20);
    let tx = (w - text_width(title, s)) / 2;
    draw_text(img, tx, 12, title, s, BLACK);
    draw_text(img, tx + 1, 12, title, s, BLACK); // faux bold
    let s = fit_scale(x_label, f.r - f.l);
    let cx = (f.l + f.r) / 2;
    draw_text(
        img,
        cx - text_width(x_label, s) / 2,
        CHART_H as i32 - 22,
        x_label,
        s,
        BLACK,
    );
    let s = fit_scale(y_label, f.b - f.t);
    let cy = (f.t + f.b) / 2;
    draw_text_vertical(img, 10, cy - text_width(y_label, s) / 2, y_label, s, BLACK);
}

/// Clips segment a-b to the frame rectangle (Liang-Barsky).
fn clip(a: (f64, f64), b: (f64, f64), f: &Frame) -> Option<((f64, f64), (f64, f64))> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    let (l, r, t, b) = (f.l as f64, f.r as f64, f.t as f64, f.b as f64);
    for (p, q) in [(-dx, a.0 - l), (dx, r - a.0), (-dy, a.1 - t), (dy, b - a.1)] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else if p < 0.0 {
            t0 = t0.max(q / p);
        } else {
            t1 = t1.min(q / p);
        }
    }
    (t0 <= t1).then_some((
        (a.0 + t0 * dx, a.1 + t0 * dy),
        (a.0 + t1 * dx, a.1 + t1 * dy),
    ))
}

/// Draws a 2-px line between pixel positions a and b, clipped to the plot area.
fn draw_line(img: &mut RgbImage, f: &Frame, a: (f64, f64), b: (f64, f64), c: Rgb<u8>) {
    let Some((a, b)) = clip(a, b, f) else { return };
    let (mut x, mut y) = (a.0.round() as i64, a.1.round() as i64);
    let (x1, y1) = (b.0.round() as i64, b.1.round() as i64);
    let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
    let (sx, sy) = (if x < x1 { 1 } else { -1 }, if y < y1 { 1 } else { -1 });
    let mut err = dx + dy;
    loop {
        for (ox, oy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let (px, py) = (x + ox, y + oy);
            if px >= f.l as i64 && px <= f.r as i64 && py >= f.t as i64 && py <= f.b as i64 {
                put(img, px as i32, py as i32, c);
            }
        }
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

// ---------------------------------------------------------------- charts

/// Frame for a line chart: data extent over all finite points, widened to nice ticks.
fn line_frame(series: &[Series<'_>]) -> (Frame, f64, f64) {
    let pts = series.iter().flat_map(|s| s.points.iter());
    let fin: Vec<&(f64, f64)> = pts.filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    let ext = |g: fn(&(f64, f64)) -> f64| {
        fin.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(g(p)), b.max(g(p)))
            })
    };
    let ((xa, xb), (ya, yb)) = if fin.is_empty() {
        ((0.0, 1.0), (0.0, 1.0))
    } else {
        (ext(|p| p.0), ext(|p| p.1))
    };
    let (x0, x1, mut xs) = axis_range(xa, xb);
    // Epochs are whole: a run of a few epochs gets ticks 1, 2, 3, not 1, 1.5, 2.
    if !fin.is_empty() && fin.iter().all(|p| p.0.fract() == 0.0) && xs < 1.0 {
        xs = 1.0;
    }
    let (y0, y1, ys) = axis_range(ya, yb);
    let labels: Vec<String> = ticks_with_step(y0, y1, ys)
        .iter()
        .map(|&v| fmt_tick(v, ys))
        .collect();
    (Frame::new((x0, x1), (y0, y1), &labels), xs, ys)
}

/// Draws a line chart (one colour per series, with a legend naming each series), axes with tick labels (about 5 nice round ticks per axis, e.g. 0, 0.05, 0.1 ...), a title, and axis labels. Non-finite points are skipped. An empty chart (no points) still writes a valid image with the title. Size 800x500.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
) -> io::Result<()> {
    let mut img = RgbImage::from_pixel(CHART_W, CHART_H, WHITE);
    let (f, xs, ys) = line_frame(series);
    let yt: Vec<(f64, String)> = ticks_with_step(f.y0, f.y1, ys)
        .into_iter()
        .map(|v| (v, fmt_tick(v, ys)))
        .collect();
    let xt: Vec<(i32, String)> = ticks_with_step(f.x0, f.x1, xs)
        .into_iter()
        .map(|v| (f.px(v).round() as i32, fmt_tick(v, xs)))
        .collect();
    draw_chrome(&mut img, &f, title, x_label, y_label, &yt, &xt, true);
    let mut any = false;
    for (i, s) in series.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let ok = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite();
        for (j, p) in s.points.iter().enumerate() {
            if !ok(p) {
                continue;
            }
            any = true;
            let a = (f.px(p.0), f.py(p.1));
            match s.points.get(j + 1).filter(|q| ok(q)) {
                Some(q) => draw_line(&mut img, &f, a, (f.px(q.0), f.py(q.1)), c),
                // Isolated point (no finite neighbours): draw a small dot.
                None if j == 0 || !ok(&s.points[j - 1]) => {
                    fill_rect(&mut img, a.0 as i32 - 1, a.1 as i32 - 1, 4, 4, c)
                }
                None => {}
            }
        }
    }
    if !any {
        let msg = "(no data)";
        draw_text(
            &mut img,
            (f.l + f.r - text_width(msg, 2)) / 2,
            (f.t + f.b) / 2 - 7,
            msg,
            2,
            AXIS,
        );
    }
    draw_legend(&mut img, &f, series);
    save(&img, path)
}

/// Legend box in the plot corner that covers the fewest already-drawn data pixels.
fn draw_legend(img: &mut RgbImage, f: &Frame, series: &[Series<'_>]) {
    if series.is_empty() {
        return;
    }
    let widest = series
        .iter()
        .map(|s| text_width(s.name, 2))
        .max()
        .unwrap_or(0);
    let big = widest > (f.r - f.l) / 2 - 50 || series.len() as i32 * 20 > (f.b - f.t) / 3;
    let s = if big { 1 } else { 2 }; // large legends use the small font to hide less data
    let row = 10 * s as i32;
    let bw = 44
        + series
            .iter()
            .map(|x| text_width(x.name, s))
            .max()
            .unwrap_or(0);
    let bh = series.len() as i32 * row + 8;
    let (xl, xr, yt, yb) = (f.l + 8, f.r - 8 - bw, f.t + 8, f.b - 8 - bh);
    let busy = |x0: i32, y0: i32| {
        let mut n = 0;
        for y in y0.max(0)..(y0 + bh).min(img.height() as i32) {
            for x in x0.max(0)..(x0 + bw).min(img.width() as i32) {
                let p = *img.get_pixel(x as u32, y as u32);
                n += (p != WHITE && p != GRID && p != AXIS) as usize;
            }
        }
        n
    };
    let corners = [(xr, yt), (xl, yt), (xr, yb), (xl, yb)];
    let (x0, y0) = corners
        .into_iter()
        .min_by_key(|&(x, y)| busy(x, y))
        .unwrap_or((xr, yt));
    fill_rect(img, x0, y0, bw, bh, WHITE);
    stroke_rect(img, x0, y0, x0 + bw - 1, y0 + bh - 1, Rgb([160, 160, 160]));
    for (i, ser) in series.iter().enumerate() {
        let y = y0 + 4 + i as i32 * row;
        let c = PALETTE[i % PALETTE.len()];
        fill_rect(img, x0 + 8, y + row / 2 - 2, 22, 3, c);
        draw_text(
            img,
            x0 + 36,
            y + (row - 7 * s as i32) / 2,
            ser.name,
            s,
            BLACK,
        );
    }
}

/// Draws a bar chart of counts (e.g. a class-size histogram: bar i = count of class i, sorted or not as given), with y-axis ticks, title and axis labels. Size 800x500.
pub fn bar_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    values: &[f64],
) -> io::Result<()> {
    let mut img = RgbImage::from_pixel(CHART_W, CHART_H, WHITE);
    let fin = values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = fin.fold((0.0f64, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let (y0, y1, ys) = axis_range(lo, if hi > lo { hi } else { lo + 1.0 });
    let yt: Vec<(f64, String)> = ticks_with_step(y0, y1, ys)
        .into_iter()
        .map(|v| (v, fmt_tick(v, ys)))
        .collect();
    let labels: Vec<String> = yt.iter().map(|t| t.1.clone()).collect();
    let n = values.len().max(1);
    let f = Frame::new((0.0, n as f64), (y0, y1), &labels);
    // Label every k-th bar, k in 1, 2, 5, 10, 20, 50, ... so that labels do not collide.
    let pitch = (f.r - f.l) as f64 / n as f64;
    let need = text_width(&(n - 1).to_string(), 2) as f64 + 8.0;
    let mut k = 1usize;
    while (k as f64) * pitch < need {
        k = if k.to_string().starts_with('2') {
            k * 5 / 2
        } else {
            k * 2
        };
    }
    let xt: Vec<(i32, String)> = (0..values.len())
        .step_by(k)
        .map(|i| (f.px(i as f64 + 0.5).round() as i32, i.to_string()))
        .collect();
    draw_chrome(&mut img, &f, title, x_label, y_label, &yt, &xt, false);
    let base = f.py(0.0).round() as i32;
    let gap = if pitch >= 4.0 {
        (pitch * 0.1).max(1.0)
    } else {
        0.0
    };
    for (i, v) in values.iter().enumerate().filter(|(_, v)| v.is_finite()) {
        let (xa, xb) = (
            (f.px(i as f64) + gap).round() as i32,
            (f.px(i as f64 + 1.0) - gap).round() as i32,
        );
        let top = f.py(*v).round() as i32;
        fill_rect(
            &mut img,
            xa,
            top.min(base),
            (xb - xa).max(1),
            (top - base).abs().max(1),
            PALETTE[0],
        );
    }
    fill_rect(&mut img, f.l, base, f.r - f.l + 1, 1, AXIS);
    save(&img, path)
}

// ---------------------------------------------------------------- image grid

const GAP: usize = 2;

/// Grid geometry: (width, height, caption column width, caption scale).
fn grid_dims(
    n: usize,
    w: usize,
    h: usize,
    cols: usize,
    row_labels: &[String],
) -> (usize, usize, usize, u32) {
    let scale = if h >= 18 { 2 } else { 1 };
    let widest = row_labels
        .iter()
        .map(|s| text_width(s, scale))
        .max()
        .unwrap_or(0) as usize;
    let label_w = if widest > 0 { widest + 8 } else { 0 };
    let rows = n.div_ceil(cols);
    (
        label_w + GAP + cols * (w + GAP),
        GAP + rows * (h + GAP),
        label_w,
        scale,
    )
}

/// Height of one line of an image grid's caption.
const CAPTION_LINE: usize = 10;

/// Tiles RGB images (each `w*h*3` bytes, HWC) into a grid with `cols` columns, a 2-px white
/// gap, an optional text label on the left of each row (`row_labels`, one per row, may be
/// empty) and optional caption lines above the grid. Writes PNG.
pub fn image_grid(
    path: &Path,
    images: &[&[u8]],
    w: usize,
    h: usize,
    cols: usize,
    row_labels: &[String],
    caption: &[String],
) -> io::Result<()> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_string());
    if w == 0 || h == 0 || cols == 0 {
        return Err(bad("image_grid: w, h and cols must be positive"));
    }
    if images.iter().any(|im| im.len() != w * h * 3) {
        return Err(bad("image_grid: every image must be w*h*3 bytes"));
    }
    let (gw, gh, label_w, scale) = grid_dims(images.len(), w, h, cols, row_labels);
    let top = if caption.is_empty() {
        0
    } else {
        4 + caption.len() * CAPTION_LINE
    };
    let widest_caption = caption.iter().map(|c| text_width(c, 1) as usize + 8).max();
    let gw = gw.max(widest_caption.unwrap_or(0));
    let mut img = RgbImage::from_pixel(gw as u32, (gh + top) as u32, WHITE);
    for (i, line) in caption.iter().enumerate() {
        draw_text(&mut img, 4, (4 + i * CAPTION_LINE) as i32, line, 1, BLACK);
    }
    for (i, data) in images.iter().enumerate() {
        let (ox, oy) = (
            label_w + GAP + (i % cols) * (w + GAP),
            top + GAP + (i / cols) * (h + GAP),
        );
        for (j, px) in data.chunks_exact(3).enumerate() {
            img.put_pixel(
                (ox + j % w) as u32,
                (oy + j / w) as u32,
                Rgb([px[0], px[1], px[2]]),
            );
        }
    }
    let rows = images.len().div_ceil(cols);
    for (r, lab) in row_labels.iter().take(rows).enumerate() {
        let y = top + GAP + r * (h + GAP) + h / 2;
        draw_text(
            &mut img,
            4,
            y as i32 - 7 * scale as i32 / 2,
            lab,
            scale,
            BLACK,
        );
    }
    save(&img, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("plotdev_{}_{name}.png", std::process::id()))
    }
    fn ticks(lo: f64, hi: f64) -> Vec<f64> {
        ticks_with_step(lo, hi, nice_step(lo, hi, 5))
    }
    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
    }

    #[test]
    fn whole_x_values_get_whole_ticks() {
        let pts = [(1.0, 0.1), (2.0, 0.3), (3.0, 0.2)];
        let (_, xs, _) = line_frame(&[Series {
            name: "a",
            points: &pts,
        }]);
        assert_eq!(xs, 1.0);
        let half = [(0.5, 0.1), (1.5, 0.3)];
        let (_, xs, _) = line_frame(&[Series {
            name: "a",
            points: &half,
        }]);
        assert!(xs < 1.0, "{xs}");
    }

    #[test]
    fn nice_ticks_are_round() {
        assert!(close(&ticks(0.0, 0.37), &[0.0, 0.1, 0.2, 0.3]));
        assert!(close(&ticks(0.0, 0.15), &[0.0, 0.05, 0.1, 0.15]));
        assert!(close(&ticks(0.0, 200.0), &[0.0, 50.0, 100.0, 150.0, 200.0]));
        assert!(close(&ticks(-1.0, 1.0), &[-1.0, -0.5, 0.0, 0.5, 1.0]));
        assert_eq!(axis_range(0.0, 199.0), (0.0, 200.0, 50.0));
        let (lo, hi, _) = axis_range(3.0, 3.0); // degenerate range gets padded
        assert!(lo < 3.0 && hi > 3.0);
    }

    #[test]
    fn tick_labels_are_compact() {
        assert_eq!(fmt_tick(0.30000000000000004, 0.1), "0.3");
        assert_eq!(fmt_tick(0.15000000000000002, 0.05), "0.15");
        assert_eq!(fmt_tick(200.0, 50.0), "200");
        assert_eq!(fmt_tick(-0.5, 0.5), "-0.5");
        assert_eq!(fmt_tick(1e-4, 1e-4), "1e-4");
        assert_eq!(fmt_tick(2.5e-4, 5e-5), "2.5e-4");
        assert_eq!(fmt_tick(1.5e7, 5e6), "1.5e7");
        assert_eq!(fmt_tick(1e-17, 0.1), "0");
        let step = nice_step(0.0, 0.37, 5);
        assert!(ticks(0.0, 0.37)
            .iter()
            .all(|&v| fmt_tick(v, step).len() <= 3));
    }

    #[test]
    fn line_chart_draws_line_where_expected() {
        let (flat, diag) = ([(0.0, 0.5), (10.0, 0.5)], [(0.0, 0.0), (10.0, 1.0)]);
        let series = [
            Series {
                name: "flat",
                points: &flat,
            },
            Series {
                name: "diag",
                points: &diag,
            },
        ];
        let p = tmp("line");
        line_chart(&p, "Title", "x", "y", &series).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (800, 500));
        let (f, _, _) = line_frame(&series);
        let (x, y) = (f.px(2.0).round() as u32, f.py(0.5).round() as u32);
        let hit = (y - 1..=y + 1).any(|yy| *img.get_pixel(x, yy) == PALETTE[0]);
        assert!(hit, "flat series not drawn at ({x}, {y})");
        assert!(
            [WHITE, GRID].contains(img.get_pixel(x, y + 20)),
            "stray ink below the line"
        );
        let (x, y) = (f.px(8.0).round() as u32, f.py(0.8).round() as u32);
        assert!(
            (y - 2..=y + 2).any(|yy| *img.get_pixel(x, yy) == PALETTE[1]),
            "diag series missing"
        );
        assert!(
            (10..26).any(|yy| (0..800).any(|xx| *img.get_pixel(xx, yy) == BLACK)),
            "no title"
        );
        std::fs::remove_file(&p).ok();
    }

    #[test]
    fn nan_and_empty_charts_still_write() {
        let nan = [(f64::NAN, f64::NAN), (1.0, f64::INFINITY)];
        for (name, s) in [
            (
                "nan",
                vec![Series {
                    name: "nan",
                    points: &nan,
                }],
            ),
            ("empty", vec![]),
        ] {
            let p = tmp(name);
            line_chart(&p, "Empty", "x", "y", &s).unwrap();
            assert_eq!(image::open(&p).unwrap().to_rgb8().dimensions(), (800, 500));
            std::fs::remove_file(&p).ok();
        }
        assert!(line_chart(Path::new("/nonexistent-dir/x.png"), "t", "x", "y", &[]).is_err());
    }

    #[test]
    fn bar_chart_draws_bars() {
        let p = tmp("bar");
        bar_chart(&p, "Sizes", "class", "count", &[10.0, 40.0, f64::NAN, 25.0]).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (800, 500));
        // Row just above the baseline: three drawn bars (~0.8 of 1/4 plot width each), NaN bar empty.
        let n = (0..800)
            .filter(|&x| *img.get_pixel(x, CHART_H - 54 - 2) == PALETTE[0])
            .count();
        assert!((300..480).contains(&n), "bar pixels in row: {n}");
        std::fs::remove_file(&p).ok();
    }

    #[test]
    fn image_grid_has_computed_size() {
        let (w, h) = (4, 3);
        let red = [255u8, 0, 0].repeat(w * h);
        let imgs: Vec<&[u8]> = vec![&red; 5];
        let p = tmp("grid");
        image_grid(&p, &imgs, w, h, 2, &[], &[]).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (2 + 2 * (4 + 2), 2 + 3 * (3 + 2)));
        assert_eq!(*img.get_pixel(2, 2), Rgb([255, 0, 0]));
        assert_eq!(*img.get_pixel(1, 2), WHITE);
        let labels = vec!["ab".to_string(); 3];
        image_grid(&p, &imgs, w, h, 2, &labels, &[]).unwrap();
        let (gw, gh, lw, _) = grid_dims(5, w, h, 2, &labels);
        assert_eq!((gw, gh, lw), (11 + 8 + 14, 17, 11 + 8));
        assert_eq!(
            image::open(&p).unwrap().to_rgb8().dimensions(),
            (gw as u32, gh as u32)
        );
        assert!(image_grid(&p, &[&red[1..]], w, h, 2, &[], &[]).is_err());
        std::fs::remove_file(&p).ok();
    }

    #[test]
    fn image_grid_caption_sits_above_the_tiles_and_widens_the_image() {
        let (w, h) = (4, 3);
        let red = [255u8, 0, 0].repeat(w * h);
        let imgs: Vec<&[u8]> = vec![&red; 2];
        let caption = vec![
            "a caption wider than the tiles".to_string(),
            "x".to_string(),
        ];
        let p = tmp("grid_caption");
        image_grid(&p, &imgs, w, h, 2, &[], &caption).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        let top = 4 + 2 * CAPTION_LINE;
        let (gw, gh, _, _) = grid_dims(2, w, h, 2, &[]);
        assert_eq!(
            img.dimensions(),
            (
                (text_width(&caption[0], 1) as usize + 8).max(gw) as u32,
                (gh + top) as u32
            )
        );
        // Ink in the caption band, and the first tile below it.
        assert!((0..img.width()).any(|x| (4..top as u32).any(|y| *img.get_pixel(x, y) == BLACK)));
        assert_eq!(*img.get_pixel(2, (top + 2) as u32), Rgb([255, 0, 0]));
        assert_eq!(*img.get_pixel(2, (top + 1) as u32), WHITE);
        std::fs::remove_file(&p).ok();
    }
}
