//! The Sobel input layer of DeepCluster and UIC: the mean of the three channels, then the
//! 3x3 horizontal and vertical Sobel kernels with zero padding, giving 2 channels.

/// Sobel of a normalised CHW float image (`3 x h x w`) into `dst` (`2 x h x w`): channel 0
/// is `[[1,0,-1],[2,0,-2],[1,0,-1]]`, channel 1 `[[1,2,1],[0,0,0],[-1,-2,-1]]`, applied to
/// the channel mean (DeepCluster's 1x1 convolution with weights 1/3).
///
/// # Panics
/// If the slices do not hold `3 x h x w` and `2 x h x w` values.
pub fn sobel(src: &[f32], dst: &mut [f32], w: usize, h: usize) {
    let plane = w * h;
    assert_eq!(src.len(), 3 * plane, "source is not 3x{h}x{w}");
    assert_eq!(dst.len(), 2 * plane, "destination is not 2x{h}x{w}");
    let third = 1.0f32 / 3.0;
    let gray: Vec<f32> = (0..plane)
        .map(|i| third * src[i] + third * src[plane + i] + third * src[2 * plane + i])
        .collect();
    let at = |x: isize, y: isize| -> f32 {
        if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
            0.0
        } else {
            gray[y as usize * w + x as usize]
        }
    };
    let (gx, gy) = dst.split_at_mut(plane);
    for y in 0..h as isize {
        for x in 0..w as isize {
            let i = y as usize * w + x as usize;
            gx[i] = (at(x - 1, y - 1) - at(x + 1, y - 1))
                + 2.0 * (at(x - 1, y) - at(x + 1, y))
                + (at(x - 1, y + 1) - at(x + 1, y + 1));
            gy[i] = (at(x - 1, y - 1) + 2.0 * at(x, y - 1) + at(x + 1, y - 1))
                - (at(x - 1, y + 1) + 2.0 * at(x, y + 1) + at(x + 1, y + 1));
        }
    }
}
