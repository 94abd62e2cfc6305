//! Charts as PNG bytes for the EDA and evaluation reports: horizontal bars, grouped bars and
//! lines. Text is drawn with an embedded DejaVu Sans (`fonts/LICENSE-DejaVu.txt`), so a fresh
//! machine with no fonts installed renders the same images.

use std::error::Error;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
const WIDTH: u32 = 960;
const HEIGHT: u32 = 540;
/// Axis units per category: category axes are integer so they can carry one label per
/// category (plotters formats only integer axes with chosen key points).
const UNIT: i32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("chart `{title}`: {reason}")]
    Draw { title: String, reason: String },
}

/// How an axis maps values: `Log10` plots positive values on a log scale (others are dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log10,
}

impl Scale {
    fn map(self, v: f64) -> Option<f64> {
        match self {
            Scale::Linear => Some(v),
            Scale::Log10 => (v > 0.0).then(|| v.log10()),
        }
    }

    fn unmap(self, v: f64) -> f64 {
        match self {
            Scale::Linear => v,
            Scale::Log10 => 10f64.powf(v),
        }
    }
}

/// One named line of a line chart.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart: named lines, optional log axes and labelled vertical markers (e.g. split dates).
pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_scale: Scale,
    pub y_scale: Scale,
    pub lines: &'a [Line],
    pub markers: &'a [(f64, String)],
    /// Formats an x value (in data units) for the axis; plain numbers when `None`.
    pub x_format: Option<&'a dyn Fn(f64) -> String>,
}

fn font(size: u32) -> TextStyle<'static> {
    (FAMILY, size).into_font().into()
}

fn color(i: usize) -> RGBColor {
    // Colour-blind-safe (Okabe–Ito) order, so model colours read the same across charts.
    const COLORS: [RGBColor; 8] = [
        RGBColor(0, 114, 178),
        RGBColor(230, 159, 0),
        RGBColor(0, 158, 115),
        RGBColor(213, 94, 0),
        RGBColor(204, 121, 167),
        RGBColor(86, 180, 233),
        RGBColor(240, 228, 66),
        RGBColor(0, 0, 0),
    ];
    COLORS[i % COLORS.len()]
}

/// A number in at most 4 significant digits, trailing zeros dropped, without exponent for
/// everyday magnitudes.
pub fn short_number(v: f64) -> String {
    let trim = |s: String| if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if a >= 1e9 {
        format!("{}G", trim(format!("{:.3}", v / 1e9)))
    } else if a >= 1e6 {
        format!("{}M", trim(format!("{:.3}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim(format!("{v:.2}"))
    } else if a >= 1e-3 {
        trim(format!("{v:.4}"))
    } else {
        format!("{v:.2e}")
    }
}

/// Axis label of a mapped value: on a log axis spanning decades only powers of ten are labelled.
fn axis_label(scale: Scale, v: f64, span: f64) -> String {
    if scale == Scale::Log10 && span >= 1.5 && (v - v.round()).abs() > 1e-6 {
        return String::new();
    }
    short_number(scale.unmap(v))
}

/// Draws into an RGB buffer with `draw` and encodes it as PNG.
fn render(
    title: &str,
    height: u32,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), Box<dyn Error>>,
) -> Result<Vec<u8>, PlotError> {
    static FONT_ONCE: Once = Once::new();
    FONT_ONCE.call_once(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the embedded font is a valid TTF"));
    });
    let fail = |reason: String| PlotError::Draw { title: title.to_string(), reason };
    let mut rgb = vec![0u8; (WIDTH * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        draw(&root).map_err(|e| fail(e.to_string()))?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    let mut png_bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut png_bytes, WIDTH, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| fail(e.to_string()))?;
    writer.write_image_data(&rgb).map_err(|e| fail(e.to_string()))?;
    writer.finish().map_err(|e| fail(e.to_string()))?;
    Ok(png_bytes)
}

/// Upper end of a value axis starting at 0, with room for value labels.
fn value_axis_end(values: impl Iterator<Item = f64>) -> f64 {
    let max = values.filter(|v| v.is_finite()).fold(0.0f64, f64::max);
    if max > 0.0 { max * 1.15 } else { 1.0 }
}

/// Horizontal bars, the first at the top, each labelled with its value.
pub fn bars(title: &str, value_label: &str, bars: &[(String, f64)]) -> Result<Vec<u8>, PlotError> {
    let n = bars.len().max(1);
    let height = HEIGHT.max(90 + 26 * n as u32);
    let label_width = bars.iter().map(|b| b.0.chars().count()).max().unwrap_or(0) as u32 * 8 + 16;
    render(title, height, |root| {
        let x_end = value_axis_end(bars.iter().map(|b| b.1));
        let keys: Vec<i32> = (0..n as i32).map(|i| i * UNIT + UNIT / 2).collect();
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(label_width.clamp(40, 360))
            .build_cartesian_2d(0.0..x_end, (0..n as i32 * UNIT).with_key_points(keys))?;
        let label_of = |y: &i32| {
            let row = n - 1 - ((y / UNIT).max(0) as usize).min(n - 1);
            bars.get(row).map(|b| b.0.clone()).unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(RGBColor(242, 242, 242))
            .x_desc(value_label)
            .label_style(font(14))
            .axis_desc_style(font(15))
            .y_label_formatter(&label_of)
            .x_label_formatter(&|v| short_number(*v))
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let y = (n - 1 - i) as i32 * UNIT;
            Rectangle::new([(0.0, y + UNIT * 15 / 100), (v.max(0.0), y + UNIT * 85 / 100)], color(0).filled())
        }))?;
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let y = (n - 1 - i) as i32 * UNIT + UNIT / 2;
            Text::new(
                format!(" {}", short_number(*v)),
                (v.max(0.0), y),
                font(13).pos(Pos::new(HPos::Left, VPos::Center)),
            )
        }))?;
        Ok(())
    })
}

/// Vertical bars grouped by category, one colour per series, with a legend.
pub fn grouped_bars(
    title: &str,
    value_label: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
) -> Result<Vec<u8>, PlotError> {
    let n = categories.len().max(1);
    render(title, HEIGHT, |root| {
        let y_end = value_axis_end(series.iter().flat_map(|s| s.1.iter().copied()));
        let keys: Vec<i32> = (0..n as i32).map(|i| i * UNIT + UNIT / 2).collect();
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((0..n as i32 * UNIT).with_key_points(keys), 0.0..y_end)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(RGBColor(242, 242, 242))
            .y_desc(value_label)
            .label_style(font(14))
            .axis_desc_style(font(15))
            .x_label_formatter(&|x| categories.get((x / UNIT).max(0) as usize).cloned().unwrap_or_default())
            .y_label_formatter(&|v| short_number(*v))
            .draw()?;
        let width = UNIT * 8 / 10 / series.len().max(1) as i32;
        for (s, (name, values)) in series.iter().enumerate() {
            let c = color(s);
            chart
                .draw_series(values.iter().enumerate().map(|(i, v)| {
                    let x = i as i32 * UNIT + UNIT / 10 + s as i32 * width;
                    Rectangle::new([(x, 0.0), (x + width * 9 / 10, v.max(0.0))], c.filled())
                }))?
                .label(name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(font(14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// Lines with optional log axes and vertical markers.
pub fn lines(spec: &LineChart<'_>) -> Result<Vec<u8>, PlotError> {
    let mapped: Vec<Vec<(f64, f64)>> = spec
        .lines
        .iter()
        .map(|l| l.points.iter().filter_map(|&(x, y)| Some((spec.x_scale.map(x)?, spec.y_scale.map(y)?))).collect())
        .collect();
    let bounds = |pick: fn(&(f64, f64)) -> f64| {
        let (lo, hi) = mapped
            .iter()
            .flatten()
            .map(pick)
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if lo > hi {
            (0.0, 1.0)
        } else if lo == hi {
            (lo - 0.5, hi + 0.5)
        } else {
            (lo, hi)
        }
    };
    let (x0, x1) = bounds(|p| p.0);
    let (y0, y1) = bounds(|p| p.1);
    let y0 = if spec.y_scale == Scale::Linear { y0.min(0.0) } else { y0 };
    let y1 = y1 + (y1 - y0) * 0.08;
    render(spec.title, HEIGHT, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(spec.title, font(22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let x_text = |v: &f64| match spec.x_format {
            Some(f) => f(spec.x_scale.unmap(*v)),
            None => axis_label(spec.x_scale, *v, x1 - x0),
        };
        chart
            .configure_mesh()
            .x_desc(spec.x_label)
            .y_desc(spec.y_label)
            .label_style(font(14))
            .axis_desc_style(font(15))
            .light_line_style(RGBColor(242, 242, 242))
            .x_label_formatter(&x_text)
            .y_label_formatter(&|v| axis_label(spec.y_scale, *v, y1 - y0))
            .draw()?;
        for (i, (line, points)) in spec.lines.iter().zip(&mapped).enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))?
                .label(line.name.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(3)));
        }
        for (i, (x, label)) in spec.markers.iter().enumerate() {
            let Some(x) = spec.x_scale.map(*x) else { continue };
            chart.draw_series(std::iter::once(PathElement::new([(x, y0), (x, y1)], BLACK.mix(0.6).stroke_width(1))))?;
            // Staggered, so labels of close markers do not overprint; on the inner side of the
            // line, so labels near an edge stay inside the chart.
            let (text, side) = if x > (x0 + x1) / 2.0 {
                (format!("{label} "), HPos::Right)
            } else {
                (format!(" {label}"), HPos::Left)
            };
            chart.draw_series(std::iter::once(Text::new(
                text,
                (x, y1 - (y1 - y0) * 0.05 * i as f64),
                font(13).pos(Pos::new(side, VPos::Top)),
            )))?;
        }
        if spec.lines.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font(font(14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("a valid PNG");
        let mut buf = vec![0; reader.output_buffer_size().expect("fits in memory")];
        let info = reader.next_frame(&mut buf).expect("one frame");
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    /// Non-white pixels in the rows `rows` (the caption band holds only text).
    fn ink(rgb: &[u8], width: u32, rows: std::ops::Range<u32>) -> usize {
        let row_bytes = width as usize * 3;
        rows.map(|r| {
            rgb[r as usize * row_bytes..(r as usize + 1) * row_bytes]
                .chunks(3)
                .filter(|p| p != &[255, 255, 255])
                .count()
        })
        .sum()
    }

    #[test]
    fn captions_are_drawn_with_the_embedded_font() {
        let data = [("rock".to_string(), 3.0), ("pop".to_string(), 1.5)];
        let (info, rgb) = decode(&bars("Genres", "events", &data).unwrap());
        assert_eq!((info.width, info.color_type), (WIDTH, png::ColorType::Rgb));
        assert!(ink(&rgb, info.width, 0..34) > 50, "the caption band has text");
        let (_, untitled) = decode(&bars("", "events", &data).unwrap());
        assert_eq!(ink(&untitled, info.width, 0..34), 0, "no caption, no ink above the chart");
    }

    #[test]
    fn every_chart_kind_renders_and_survives_empty_or_degenerate_data() {
        let cats = ["p@10".to_string(), "ndcg@10".to_string()];
        let series = [("als".to_string(), vec![0.1, 0.2]), ("bpr".to_string(), vec![0.05, 0.0])];
        decode(&grouped_bars("Metrics", "value", &cats, &series).unwrap());
        decode(&grouped_bars("Nothing", "value", &[], &[]).unwrap());
        decode(&bars("Nothing", "value", &[]).unwrap());
        let line = Line { name: "events".into(), points: vec![(1.0, 100.0), (2.0, 10.0), (3.0, 0.0)] };
        let markers = [(2.0, "split".to_string())];
        let format = |x: f64| format!("day {x}");
        for (x_scale, y_scale) in [(Scale::Linear, Scale::Linear), (Scale::Log10, Scale::Log10)] {
            let chart = LineChart {
                title: "Lines",
                x_label: "x",
                y_label: "y",
                x_scale,
                y_scale,
                lines: std::slice::from_ref(&line),
                markers: &markers,
                x_format: Some(&format),
            };
            decode(&lines(&chart).unwrap());
        }
        let one_point = Line { name: "one".into(), points: vec![(5.0, 5.0)] };
        let chart = LineChart {
            title: "One point",
            x_label: "x",
            y_label: "y",
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            lines: &[one_point],
            markers: &[],
            x_format: None,
        };
        decode(&lines(&chart).unwrap());
    }

    #[test]
    fn short_numbers_keep_four_significant_digits() {
        assert_eq!(short_number(0.0), "0");
        assert_eq!(short_number(0.01234), "0.0123");
        assert_eq!(short_number(12.345), "12.35");
        assert_eq!(short_number(2_500_000.0), "2.5M");
        assert_eq!(short_number(80.0), "80");
        assert_eq!(short_number(0.8), "0.8");
        assert_eq!(short_number(45_600.0), "45.6k");
    }
}
