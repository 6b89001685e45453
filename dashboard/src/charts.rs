//! Charts for the dashboard views, drawn with `plotters` into a `<canvas>` in the browser.
//! A view describes what to draw as a [`ChartSpec`] (plain data); [`Chart`] draws it again
//! whenever it changes. The server renders the empty canvas with its accessible label.

use leptos::prelude::*;
use model::TaskState;

pub type Rgb = (u8, u8, u8);

pub const BLUE: Rgb = (21, 101, 192);
pub const GREEN: Rgb = (46, 125, 50);
pub const ORANGE: Rgb = (239, 108, 0);
pub const RED: Rgb = (198, 40, 40);
pub const GREY: Rgb = (144, 164, 174);
pub const PURPLE: Rgb = (106, 27, 154);
/// One colour per series, cycling.
pub const PALETTE: [Rgb; 6] = [BLUE, ORANGE, GREEN, PURPLE, RED, GREY];

/// The colour of a task state, the same in every view.
pub fn state_colour(state: TaskState) -> Rgb {
    match state {
        TaskState::Finished => GREEN,
        TaskState::Failed => RED,
        TaskState::Cancelled => ORANGE,
        TaskState::Running => BLUE,
        TaskState::Queued => GREY,
        TaskState::Lost => PURPLE,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub colour: Rgb,
    /// (seconds relative to now, value)
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub row: usize,
    pub start: f64,
    pub end: f64,
    pub colour: Rgb,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChartSpec {
    /// Timeseries over the last minutes; x in seconds before now.
    Lines {
        y_label: String,
        y_max: f64,
        series: Vec<Series>,
    },
    /// One bar per category.
    Bars {
        y_label: String,
        y_max: f64,
        bars: Vec<(String, f64, Rgb)>,
    },
    /// Horizontal spans per row over time (a Gantt chart); x in seconds before now.
    Spans {
        rows: Vec<String>,
        window_s: f64,
        spans: Vec<Span>,
    },
    /// One horizontal bar per row, made of coloured segments.
    Stacked {
        rows: Vec<(String, Vec<(f64, Rgb)>)>,
    },
    /// A flame graph: callers below, callees above, width = share of samples.
    Flame { nodes: Vec<FlameNode>, depth: usize },
}

/// One frame of a flame graph; `start` and `width` are shares of all samples (0–1).
#[derive(Debug, Clone, PartialEq)]
pub struct FlameNode {
    pub depth: usize,
    pub start: f64,
    pub width: f64,
    pub name: String,
}

/// Lays call stacks (root first, with sample counts) out as a flame graph.
pub fn flame(stacks: &[(Vec<String>, u64)]) -> ChartSpec {
    #[derive(Default)]
    struct Node {
        samples: u64,
        children: Vec<(String, Node)>,
    }
    let mut root = Node::default();
    for (frames, samples) in stacks {
        root.samples += samples;
        let mut node = &mut root;
        for frame in frames {
            let i = match node.children.iter().position(|(n, _)| n == frame) {
                Some(i) => i,
                None => {
                    node.children.push((frame.clone(), Node::default()));
                    node.children.len() - 1
                }
            };
            node = &mut node.children[i].1;
            node.samples += samples;
        }
    }
    let total = root.samples.max(1) as f64;
    let mut nodes = Vec::new();
    let mut depth = 0;
    let mut pending = vec![(&root, 0usize, 0.0f64)];
    while let Some((node, d, start)) = pending.pop() {
        let mut x = start;
        for (name, child) in &node.children {
            let width = child.samples as f64 / total;
            nodes.push(FlameNode {
                depth: d,
                start: x,
                width,
                name: name.clone(),
            });
            depth = depth.max(d + 1);
            pending.push((child, d + 1, x));
            x += width;
        }
    }
    ChartSpec::Flame { nodes, depth }
}

/// A canvas that shows `spec`, redrawn whenever it changes; `label` names it for assistive
/// technology and tests. After each drawing, `data-drawn` holds how many times it was drawn.
#[component]
pub fn Chart(
    #[prop(into)] label: String,
    #[prop(into)] spec: Signal<Option<ChartSpec>>,
    /// A line of text under the chart saying what it shows now.
    #[prop(optional, into)]
    caption: Signal<String>,
) -> impl IntoView {
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    let drawn = RwSignal::new(0u64);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        let Some(spec) = spec.get() else { return };
        if let Some(el) = canvas.get() {
            match draw::draw(&el, &spec) {
                Ok(()) => drawn.update(|n| *n += 1),
                Err(error) => leptos::logging::warn!("chart: {error}"),
            }
        }
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = spec;
    view! {
        <canvas
            class="chart"
            role="img"
            aria-label=label
            data-drawn=move || drawn.get().to_string()
            node_ref=canvas
        ></canvas>
        <p class="chart-caption">{caption}</p>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flame_graph_merges_common_callers() {
        let s = |frames: &[&str], n| {
            (
                frames.iter().map(|f| (*f).to_owned()).collect::<Vec<_>>(),
                n,
            )
        };
        let ChartSpec::Flame { nodes, depth } =
            flame(&[s(&["main", "a"], 3), s(&["main", "b"], 1)])
        else {
            unreachable!()
        };
        assert_eq!(depth, 2);
        let main = nodes.iter().find(|n| n.name == "main").unwrap();
        assert_eq!((main.depth, main.start, main.width), (0, 0.0, 1.0));
        let a = nodes.iter().find(|n| n.name == "a").unwrap();
        let b = nodes.iter().find(|n| n.name == "b").unwrap();
        assert_eq!((a.depth, a.width, b.start, b.width), (1, 0.75, 0.75, 0.25));
    }
}

#[cfg(feature = "hydrate")]
mod draw {
    use plotters::coord::Shift;
    use plotters::prelude::*;
    use plotters_canvas::CanvasBackend;
    use web_sys::HtmlCanvasElement;

    use super::{ChartSpec, Rgb};

    fn colour((r, g, b): Rgb) -> RGBColor {
        RGBColor(r, g, b)
    }

    fn err(e: impl std::fmt::Debug) -> String {
        format!("{e:?}")
    }

    pub fn draw(canvas: &HtmlCanvasElement, spec: &ChartSpec) -> Result<(), String> {
        // Draw at the size the page gives the canvas, so that it fills its frame.
        let width = canvas.client_width().max(240) as u32;
        let height = canvas.client_height().max(160) as u32;
        if canvas.width() != width || canvas.height() != height {
            canvas.set_width(width);
            canvas.set_height(height);
        }
        let backend =
            CanvasBackend::with_canvas_object(canvas.clone()).ok_or("no 2d canvas context")?;
        let root = backend.into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        match spec {
            ChartSpec::Lines {
                y_label,
                y_max,
                series,
            } => lines(&root, y_label, *y_max, series),
            ChartSpec::Bars {
                y_label,
                y_max,
                bars,
            } => bars_chart(&root, y_label, *y_max, bars),
            ChartSpec::Spans {
                rows,
                window_s,
                spans,
            } => spans_chart(&root, rows, *window_s, spans),
            ChartSpec::Stacked { rows } => stacked(&root, rows),
            ChartSpec::Flame { nodes, depth } => flame_graph(&root, nodes, *depth, width),
        }?;
        root.present().map_err(err)
    }

    type Area<'a> = DrawingArea<CanvasBackend, Shift>;

    fn lines(
        root: &Area,
        y_label: &str,
        y_max: f64,
        series: &[super::Series],
    ) -> Result<(), String> {
        let x_min = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .fold(-10.0f64, f64::min);
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(x_min..0.0, 0.0..y_max.max(f64::EPSILON))
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("seconds ago")
            .y_desc(y_label)
            .x_label_formatter(&|x| format!("{:.0}", (-x).abs()))
            .y_label_formatter(&|y| short(*y))
            .draw()
            .map_err(err)?;
        for s in series {
            let c = colour(s.colour);
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
                .map_err(err)?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .draw()
                .map_err(err)?;
        }
        Ok(())
    }

    fn bars_chart(
        root: &Area,
        y_label: &str,
        y_max: f64,
        bars: &[(String, f64, Rgb)],
    ) -> Result<(), String> {
        let n = bars.len().max(1);
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..n as f64, 0.0..y_max.max(f64::EPSILON))
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&|x| band_label(*x, |i| bars.get(i).map(|b| b.0.clone())))
            .y_desc(y_label)
            .y_label_formatter(&|y| short(*y))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v, c))| {
                Rectangle::new(
                    [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, *v)],
                    colour(*c).filled(),
                )
            }))
            .map_err(err)?;
        Ok(())
    }

    fn spans_chart(
        root: &Area,
        rows: &[String],
        window_s: f64,
        spans: &[super::Span],
    ) -> Result<(), String> {
        let n = rows.len().max(1);
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(72)
            .build_cartesian_2d(-window_s..0.0, 0.0..n as f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .disable_y_mesh()
            .x_label_formatter(&|x| format!("{:.0}", (-x).abs()))
            .y_labels(n * 2 + 1)
            .y_label_formatter(&|y| band_label(*y, |i| rows.get(i).cloned()))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(spans.iter().map(|s| {
                // A task too short to see still gets a sliver.
                let end = s.end.max(s.start + window_s / 2000.0);
                Rectangle::new(
                    [
                        (s.start.max(-window_s), s.row as f64 + 0.15),
                        (end, s.row as f64 + 0.85),
                    ],
                    colour(s.colour).filled(),
                )
            }))
            .map_err(err)?;
        Ok(())
    }

    fn stacked(root: &Area, rows: &[(String, Vec<(f64, Rgb)>)]) -> Result<(), String> {
        let n = rows.len().max(1);
        let total = rows
            .iter()
            .map(|(_, segs)| segs.iter().map(|s| s.0).sum::<f64>())
            .fold(1.0f64, f64::max);
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(90)
            .build_cartesian_2d(0.0..total, 0.0..n as f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .disable_y_mesh()
            .x_label_formatter(&|x| short(*x))
            .y_labels(n * 2 + 1)
            .y_label_formatter(&|y| band_label(*y, |i| rows.get(i).map(|r| r.0.clone())))
            .draw()
            .map_err(err)?;
        let mut rects = Vec::new();
        for (row, (_, segs)) in rows.iter().enumerate() {
            let mut x = 0.0;
            for (v, c) in segs {
                rects.push(Rectangle::new(
                    [(x, row as f64 + 0.2), (x + v, row as f64 + 0.8)],
                    colour(*c).filled(),
                ));
                x += v;
            }
        }
        chart.draw_series(rects).map_err(err)?;
        Ok(())
    }

    fn flame_graph(
        root: &Area,
        nodes: &[super::FlameNode],
        depth: usize,
        width_px: u32,
    ) -> Result<(), String> {
        let rows = depth.max(1) as f64;
        let mut chart = ChartBuilder::on(root)
            .margin(6)
            .build_cartesian_2d(0.0..1.0, 0.0..rows)
            .map_err(err)?;
        let usable = f64::from(width_px.saturating_sub(12));
        for node in nodes {
            let (x0, x1) = (node.start, node.start + node.width);
            let y0 = node.depth as f64;
            // Warm colours, stable per function so a frame keeps its colour between redraws.
            let hash = node
                .name
                .bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            let fill = RGBColor(
                205 + (hash % 50) as u8,
                80 + (hash / 50 % 120) as u8,
                40 + (hash / 6000 % 50) as u8,
            );
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0, y0 + 0.04), (x1, y0 + 0.96)],
                    fill.filled(),
                )))
                .map_err(err)?;
            let chars = (node.width * usable / 7.0) as usize;
            if chars >= 4 {
                let name = node
                    .name
                    .rsplit("::")
                    .take(2)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("::");
                let label: String = if name.chars().count() > chars {
                    name.chars()
                        .take(chars.saturating_sub(1))
                        .chain(std::iter::once('…'))
                        .collect()
                } else {
                    name
                };
                chart
                    .draw_series(std::iter::once(Text::new(
                        label,
                        (x0 + 0.003, y0 + 0.75),
                        ("sans-serif", 12).into_font(),
                    )))
                    .map_err(err)?;
            }
        }
        Ok(())
    }

    /// Category `i` occupies the band [i, i+1); with 2n+1 ticks, name it only at its centre.
    fn band_label(v: f64, label: impl Fn(usize) -> Option<String>) -> String {
        if (v - v.floor() - 0.5).abs() < 0.26 {
            label(v.floor() as usize).unwrap_or_default()
        } else {
            String::new()
        }
    }

    /// 1234567 → "1.2M": axis labels stay short.
    fn short(v: f64) -> String {
        let a = v.abs();
        if a >= 1e9 {
            format!("{:.1}G", v / 1e9)
        } else if a >= 1e6 {
            format!("{:.1}M", v / 1e6)
        } else if a >= 1e3 {
            format!("{:.1}k", v / 1e3)
        } else if a >= 10.0 || a == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    }
}
