//! Pixels and rectangles on an [`RgbImage`], clipped to it, and PNG output.

use std::io;
use std::path::Path;

use image::{Rgb, RgbImage};

pub(super) const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
pub(super) const BLACK: Rgb<u8> = Rgb([0, 0, 0]);

/// Sets one pixel if it lies inside the image.
pub(super) fn put(img: &mut RgbImage, x: i32, y: i32, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// Fills a `w` x `h` rectangle at (x, y), clipped to the image.
pub(super) fn fill_rect(img: &mut RgbImage, x: i32, y: i32, w: i32, h: i32, c: Rgb<u8>) {
    let (x0, y0) = (x.max(0), y.max(0));
    let (x1, y1) = (
        (x + w).min(img.width() as i32),
        (y + h).min(img.height() as i32),
    );
    for yy in y0..y1 {
        for xx in x0..x1 {
            img.put_pixel(xx as u32, yy as u32, c);
        }
    }
}

/// Outline of the rectangle spanning (x0, y0)..=(x1, y1).
pub(super) fn stroke_rect(img: &mut RgbImage, x0: i32, y0: i32, x1: i32, y1: i32, c: Rgb<u8>) {
    fill_rect(img, x0, y0, x1 - x0 + 1, 1, c);
    fill_rect(img, x0, y1, x1 - x0 + 1, 1, c);
    fill_rect(img, x0, y0, 1, y1 - y0 + 1, c);
    fill_rect(img, x1, y0, 1, y1 - y0 + 1, c);
}

/// Writes `img` as PNG, mapping encoder errors to `io::Error`.
pub(super) fn save(img: &RgbImage, path: &Path) -> io::Result<()> {
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(io::Error::other)
}
