//! `mandelbrot`: renders a region of the Mandelbrot set to a PNG picture. Each pixel iterates
//! z ← z² + c until |z| > 2 or the iteration cap; pixels that never escape are the set (black),
//! the others are coloured by how soon they escaped. Up to 2048 × 2048 pixels and 100,000
//! iterations each: from milliseconds to minutes of one core, depending on the region.

use std::time::Duration;

use offload_task::{Binary, Task, TaskContext, TaskError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `mandelbrot` task.
pub struct Mandelbrot;

/// Largest picture side, in pixels.
const MAX_SIDE: u32 = 2048;

/// Iterations per second assumed for admission: a third of what one core of this project's CI
/// machine does, so that an estimate (which also assumes every pixel runs to the cap) errs long.
const PER_SECOND: f64 = 1.0e8;

/// Pixels between two looks at the cancel flag: at 100,000 iterations each, a few ms of work.
const CHECK_EVERY: usize = 16;

/// The region, the picture's size and the iteration cap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Centre, real part
    ///
    /// Where the picture is centred on the complex plane; the set lies between −2 and 0.5.
    #[schemars(range(min = -3.0, max = 3.0))]
    #[serde(default = "default_x")]
    pub x: f64,
    /// Centre, imaginary part
    ///
    /// The set lies between −1.2 and 1.2; it is symmetric about 0.
    #[schemars(range(min = -3.0, max = 3.0))]
    #[serde(default)]
    pub y: f64,
    /// Zoom
    ///
    /// 1 shows 3 units across the picture's shorter side (the whole set); 1,000 shows 0.003.
    /// Up to 10^12, where a 64-bit float runs out of digits.
    #[schemars(range(min = 0.1, max = 1e12))]
    #[serde(default = "default_zoom")]
    pub zoom: f64,
    /// Width
    ///
    /// In pixels, up to 2048.
    #[schemars(range(min = 1, max = MAX_SIDE))]
    #[serde(default = "default_width")]
    pub width: u32,
    /// Height
    ///
    /// In pixels, up to 2048.
    #[schemars(range(min = 1, max = MAX_SIDE))]
    #[serde(default = "default_height")]
    pub height: u32,
    /// Iterations
    ///
    /// The most a pixel gets before it counts as inside the set: more shows finer detail near
    /// its edge, deep zooms need more, and it takes longer. Up to 100,000.
    #[schemars(range(min = 1, max = 100_000))]
    #[serde(default = "default_iterations")]
    pub max_iterations: u32,
    /// Smooth colouring
    ///
    /// Colours shade continuously with how fast each point escapes, instead of in bands of
    /// one iteration each.
    #[serde(default = "default_smooth")]
    pub smooth: bool,
}

fn default_smooth() -> bool {
    true
}

fn default_x() -> f64 {
    -0.5
}

fn default_zoom() -> f64 {
    1.0
}

fn default_width() -> u32 {
    800
}

fn default_height() -> u32 {
    600
}

fn default_iterations() -> u32 {
    1_000
}

/// The picture, and what it shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Output {
    pub width: u32,
    pub height: u32,
    /// Pixels inside the set (they never escaped).
    pub inside: u64,
    /// The picture: an 8-bit indexed-colour PNG.
    pub png: Binary,
}

impl Task for Mandelbrot {
    const NAME: &'static str = "mandelbrot";
    const TITLE: &'static str = "Mandelbrot picture";
    const DESCRIPTION: &'static str = "Renders a region of the Mandelbrot set to a PNG of up \
        to 2048 × 2048 pixels: each pixel iterates z² + c until it escapes or reaches the \
        iteration cap, so deep zooms on the set's edge cost the most. The picture shows in the \
        results and on the task's page.";
    type Input = Input;
    type Output = Output;

    fn expected_duration(input: &Input) -> Option<Duration> {
        let most =
            f64::from(input.width) * f64::from(input.height) * f64::from(input.max_iterations);
        Some(Duration::from_secs_f64(most / PER_SECOND))
    }

    /// `mandelbrot(-0.5+0i, zoom 1)=800×600 PNG, 17% inside`
    fn summary(input: &Input, output: &Output) -> String {
        let pixels = u64::from(output.width) * u64::from(output.height);
        format!(
            "mandelbrot({}{:+}i, zoom {})={}×{} PNG, {}% inside",
            input.x,
            input.y,
            input.zoom,
            output.width,
            output.height,
            (output.inside * 100).checked_div(pixels).unwrap_or(0)
        )
    }

    fn run(input: Input, ctx: &TaskContext<'_>) -> Result<Output, TaskError> {
        let (pixels, inside) = render(&input, ctx)?;
        let png = encode(input.width, input.height, &pixels)
            .map_err(|e| TaskError::Failed(format!("could not encode the PNG: {e}")))?;
        Ok(Output {
            width: input.width,
            height: input.height,
            inside,
            png: Binary::new("image/png", png),
        })
    }
}

/// The palette index of every pixel, row by row (0: inside the set), and how many are inside.
fn render(input: &Input, ctx: &TaskContext<'_>) -> Result<(Vec<u8>, u64), TaskError> {
    let (width, height) = (input.width as usize, input.height as usize);
    let scale = 3.0 / input.zoom / f64::from(input.width.min(input.height));
    let mut pixels = vec![0u8; width * height];
    let mut inside = 0;
    for (row, line) in pixels.chunks_exact_mut(width).enumerate() {
        // Pixel centres, symmetric about the centre; rows go down as the imaginary part does.
        let cy = input.y - (row as f64 + 0.5 - height as f64 / 2.0) * scale;
        for (column, pixel) in line.iter_mut().enumerate() {
            if column % CHECK_EVERY == 0 && ctx.is_cancelled() {
                return Err(TaskError::Cancelled);
            }
            let cx = input.x + (column as f64 + 0.5 - width as f64 / 2.0) * scale;
            *pixel = match escape(cx, cy, input.max_iterations) {
                None => {
                    inside += 1;
                    0
                }
                Some((n, _)) if !input.smooth => colour(f64::from(n)),
                Some((n, r2)) => colour(smooth(n, r2)),
            };
        }
        ctx.report_progress((row + 1) as f64 / height as f64);
    }
    Ok((pixels, inside))
}

/// After how many iterations z ← z² + c leaves the disc of radius 2, and |z|² then; or `None`
/// if it stays for `max` iterations (c is taken to be in the set).
fn escape(cx: f64, cy: f64, max: u32) -> Option<(u32, f64)> {
    // The main cardioid and the period-2 bulb are most of the set's area and never escape:
    // skipping them makes the whole-set view several times faster.
    let q = (cx - 0.25) * (cx - 0.25) + cy * cy;
    if q * (q + cx - 0.25) <= 0.25 * cy * cy || (cx + 1.0) * (cx + 1.0) + cy * cy <= 0.0625 {
        return None;
    }
    let (mut x, mut y) = (0.0f64, 0.0f64);
    for n in 0..max {
        let (x2, y2) = (x * x, y * y);
        if x2 + y2 > 4.0 {
            return Some((n, x2 + y2));
        }
        y = 2.0 * x * y + cy;
        x = x2 - y2 + cx;
    }
    None
}

/// The continuous escape count of a point that left after `n` iterations with |z|² = `r2`:
/// n + 1 − log₂ ln |z|, which joins up the bands the whole counts make.
fn smooth(n: u32, r2: f64) -> f64 {
    (f64::from(n) + 1.0 - (0.5 * r2.ln()).ln() / std::f64::consts::LN_2).max(0.0)
}

/// Escaped after `count` iterations: a palette index from 1 to 255, going once round the
/// palette every 64 iterations so that deep zooms, where counts are in the thousands, still
/// show their structure.
fn colour(count: f64) -> u8 {
    1 + ((count * 255.0 / 64.0) as u64 % 255) as u8
}

/// Index 0 is black (the set); 1 to 255 run through deep blue, white, gold and back.
fn palette() -> Vec<u8> {
    const STOPS: [(f64, [f64; 3]); 6] = [
        (0.0, [0.0, 7.0, 100.0]),
        (0.16, [32.0, 107.0, 203.0]),
        (0.42, [237.0, 255.0, 255.0]),
        (0.6425, [255.0, 170.0, 0.0]),
        (0.8575, [0.0, 2.0, 0.0]),
        (1.0, [0.0, 7.0, 100.0]),
    ];
    let mut rgb = vec![0u8; 3];
    for i in 1..=255u32 {
        let t = f64::from(i - 1) / 254.0;
        let k = STOPS
            .iter()
            .rposition(|(at, _)| *at <= t)
            .unwrap_or(0)
            .min(4);
        let ((a, from), (b, to)) = (STOPS[k], STOPS[k + 1]);
        let f = (t - a) / (b - a);
        rgb.extend((0..3).map(|c| (from[c] + (to[c] - from[c]) * f).round() as u8));
    }
    rgb
}

fn encode(width: u32, height: u32, pixels: &[u8]) -> Result<Vec<u8>, png::EncodingError> {
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, width, height);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_palette(palette());
    let mut writer = encoder.write_header()?;
    writer.write_image_data(pixels)?;
    writer.finish()?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;
    use offload_task::testing::Recorder;

    fn input(width: u32, height: u32, max_iterations: u32) -> Input {
        Input {
            x: -0.5,
            y: 0.0,
            zoom: 1.0,
            width,
            height,
            max_iterations,
            smooth: true,
        }
    }

    fn run(input: Input) -> Output {
        Recorder::new()
            .run(|ctx| Mandelbrot::run(input, ctx))
            .unwrap()
    }

    /// The picture's size and its pixels as palette indexes.
    fn decode(png: &[u8]) -> (u32, u32, Vec<u8>, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut pixels).unwrap();
        let palette = reader.info().palette.as_ref().unwrap().to_vec();
        (frame.width, frame.height, pixels, palette)
    }

    #[test]
    fn points_escape_when_the_iteration_says_so() {
        // c = 1: z = 0, 1, 2, 5: |5| > 2 at the fourth look.
        assert_eq!(escape(1.0, 0.0, 100), Some((3, 25.0)));
        assert_eq!(escape(2.0, 2.0, 100), Some((1, 8.0)));
        assert_eq!(escape(3.0, 0.0, 100), Some((1, 9.0)));
        // In the set: the cardioid, the period-2 bulb, its tip at −2, a period-3 bulb's centre.
        for (x, y) in [
            (0.0, 0.0),
            (0.25, 0.0),
            (-1.0, 0.0),
            (-2.0, 0.0),
            (-0.1226, 0.7449),
        ] {
            assert_eq!(escape(x, y, 10_000), None, "{x}{y:+}i");
        }
        // Just past the cusp at 1/4 it escapes, slowly.
        let (slow, _) = escape(0.26, 0.0, 10_000).unwrap();
        assert!((20..200).contains(&slow), "{slow}");
    }

    #[test]
    fn the_whole_set_covers_its_known_area() {
        // The set's area is about 1.5066 (Förstemann's pixel counting, 2012); the view is
        // 3 × 3 units, so about 16.7 % of its pixels are inside.
        let out = run(input(600, 600, 2_000));
        let fraction = out.inside as f64 / 360_000.0;
        assert!(
            (1.49..1.53).contains(&(fraction * 9.0)),
            "area {}",
            fraction * 9.0
        );
    }

    #[test]
    fn the_picture_is_a_png_of_the_asked_size_with_the_set_in_black() {
        let out = run(input(301, 201, 500));
        assert_eq!(out.png.media_type(), "image/png");
        let (width, height, pixels, palette) = decode(out.png.bytes());
        assert_eq!((width, height), (301, 201));
        assert_eq!(&palette[..3], [0, 0, 0], "inside is black");
        assert_eq!(palette.len(), 256 * 3);
        // The centre, −0.5 + 0i, is in the cardioid; the top-left corner, −2 + 1.5i, is not.
        assert_eq!(pixels[100 * 301 + 150], 0);
        assert_ne!(pixels[0], 0);
        // The set is symmetric about the real axis, and so is a picture centred on it.
        for row in 0..100 {
            let (top, bottom) = (row * 301, (200 - row) * 301);
            assert_eq!(
                pixels[top..top + 301],
                pixels[bottom..bottom + 301],
                "row {row}"
            );
        }
        let inside = pixels.iter().filter(|&&p| p == 0).count() as u64;
        assert_eq!(inside, out.inside);
    }

    #[test]
    fn smooth_colouring_shades_between_the_bands_and_keeps_the_set() {
        // Whole counts make bands; the continuous count lies between them and rises with n.
        assert!(smooth(3, 25.0) > 2.0 && smooth(3, 25.0) < 4.0);
        assert!(smooth(4, 5.0) > smooth(3, 25.0));
        let (banded, shaded) = (
            run(Input {
                smooth: false,
                ..input(200, 150, 300)
            }),
            run(input(200, 150, 300)),
        );
        assert_eq!(banded.inside, shaded.inside);
        let colours = |png: &Binary| {
            let (_, _, pixels, _) = decode(png.bytes());
            pixels
                .into_iter()
                .collect::<std::collections::HashSet<u8>>()
                .len()
        };
        assert!(colours(&shaded.png) > colours(&banded.png) + 20);
    }

    #[test]
    fn the_largest_picture_fits_the_default_output_bound() {
        let out = run(input(MAX_SIDE, MAX_SIDE, 200));
        let json = serde_json::to_vec(&out).unwrap().len();
        assert!(
            json < offload_task::MAX_OUTPUT_BYTES,
            "{json} bytes of JSON"
        );
    }

    #[test]
    fn progress_rises_row_by_row_and_a_cancel_stops_it() {
        let recorder = Recorder::new();
        recorder
            .run(|ctx| render(&input(400, 2000, 2_000), ctx))
            .unwrap();
        let seen = recorder.progress();
        assert_eq!(seen.last(), Some(&1.0));
        assert!(seen.windows(2).all(|w| w[0] < w[1]));

        assert_eq!(
            Recorder::cancelled().run(|ctx| render(&input(2048, 2048, 100_000), ctx)),
            Err(TaskError::Cancelled)
        );
    }

    #[test]
    fn the_form_bounds_the_picture_and_the_line_reads_well() {
        let registry = offload_task::Registry::empty().register::<Mandelbrot>();
        let mandelbrot = registry.first().unwrap();
        assert_eq!(
            mandelbrot.form(None).values,
            ["-0.5", "0", "1", "800", "600", "1000", "true"]
        );
        let form = |width: &str| {
            mandelbrot.from_form([
                ("x", "-0.75"),
                ("y", "0.1"),
                ("zoom", "40"),
                ("width", width),
                ("height", "100"),
                ("max_iterations", "500"),
                ("smooth", "true"),
            ])
        };
        assert_eq!(
            mandelbrot
                .from_form([("smooth", "maybe")])
                .unwrap_err()
                .message,
            "smooth must be on or off (got \"maybe\")."
        );
        let too_wide = form("4096").unwrap_err();
        assert_eq!(too_wide.field.as_deref(), Some("width"));
        assert!(
            too_wide.message.contains("at most 2048"),
            "{}",
            too_wide.message
        );
        let input = form("200").unwrap();
        let output = serde_json::to_value(Output {
            width: 200,
            height: 100,
            inside: 5_000,
            png: Binary::new("image/png", vec![1, 2, 3]),
        })
        .unwrap();
        assert_eq!(
            mandelbrot.summary(&input, &output),
            "mandelbrot(-0.75+0.1i, zoom 40)=200×100 PNG, 25% inside"
        );
    }
}
