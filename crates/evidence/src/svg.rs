//! Small inline SVG charts: no script, no external resources, readable when printed.

use crate::html;

/// Colours for series, colour-blind safe (Okabe–Ito).
pub(crate) const PALETTE: [&str; 6] = [
    "#0072B2", "#E69F00", "#D55E00", "#009E73", "#CC79A7", "#56B4E9",
];

fn nice_max(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if max <= step * mag {
            return step * mag;
        }
    }
    10.0 * mag
}

/// A stacked vertical bar chart: one bar per label, one segment per series.
pub(crate) fn stacked_bars(title: &str, labels: &[String], series: &[(&str, Vec<u64>)]) -> String {
    let (w, h, left, bottom, top) = (640.0, 240.0, 44.0, 40.0, 28.0);
    let plot_h = h - bottom - top;
    let totals: Vec<u64> = (0..labels.len())
        .map(|i| {
            series
                .iter()
                .map(|(_, v)| v.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = nice_max(totals.iter().copied().max().unwrap_or(0) as f64);
    let n = labels.len().max(1) as f64;
    let slot = (w - left - 10.0) / n;
    let bar = (slot * 0.7).max(1.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"{t}\" class=\"chart\"><title>{t}</title>",
        t = html(title)
    );
    for k in 0..=4 {
        let v = max * f64::from(k) / 4.0;
        let y = top + plot_h - plot_h * f64::from(k) / 4.0;
        out += &format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            w - 10.0,
            left - 4.0,
            y + 3.0,
            v.round()
        );
    }
    for (i, label) in labels.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = top + plot_h;
        for (s, (name, values)) in series.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let bh = plot_h * v as f64 / max;
            y -= bh;
            out += &format!(
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{}\">\
                 <title>{}: {} {v}</title></rect>",
                PALETTE[s % PALETTE.len()],
                html(label),
                html(name)
            );
        }
        // Label every bar when few, else about ten.
        let every = (labels.len() / 10).max(1);
        if i % every == 0 {
            out += &format!(
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
                x + bar / 2.0,
                h - bottom + 14.0,
                html(label)
            );
        }
    }
    let mut lx = left;
    for (s, (name, _)) in series.iter().enumerate() {
        out += &format!(
            "<rect x=\"{lx}\" y=\"8\" width=\"10\" height=\"10\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"17\" font-size=\"11\">{}</text>",
            PALETTE[s % PALETTE.len()],
            lx + 14.0,
            html(name)
        );
        lx += 24.0 + 7.0 * name.len() as f64;
    }
    out += "</svg>";
    out
}

/// A horizontal bar chart, one bar per (label, value).
pub(crate) fn hbars(title: &str, rows: &[(String, u64)], colour: &str) -> String {
    let (w, row_h, left) = (640.0, 22.0, 200.0);
    let h = 20.0 + row_h * rows.len().max(1) as f64;
    let max = nice_max(rows.iter().map(|r| r.1).max().unwrap_or(0) as f64);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"{t}\" class=\"chart\"><title>{t}</title>",
        t = html(title)
    );
    if rows.is_empty() {
        out += "<text x=\"10\" y=\"24\" font-size=\"12\">none in this period</text>";
    }
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 10.0 + row_h * i as f64;
        let bw = (w - left - 60.0) * *v as f64 / max;
        out += &format!(
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>\
             <rect x=\"{left}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{v}</text>",
            left - 6.0,
            y + 14.0,
            html(label),
            row_h - 6.0,
            left + bw + 4.0,
            y + 14.0
        );
    }
    out += "</svg>";
    out
}
