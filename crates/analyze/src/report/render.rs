//! Rendering the document model as HTML and Markdown.

use std::fmt::Write as _;
use std::path::Path;

use ferbayes_render::html::{document, escape};

use super::Block;

/// The anchor of a heading, as GitHub derives it: lower case, spaces to `-`, only letters,
/// digits, `-` and `_` kept.
pub(super) fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Inline `code` spans to HTML.
fn inline_html(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in escape(s).split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

const CSS: &str = "body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
th{background:#f2f2f2}td:first-child,td:nth-child(2),th:first-child,th:nth-child(2){text-align:left}\
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.9em}\
code{background:#f4f4f4;padding:0 .2em}";

/// The HTML page; figures are embedded as base64 PNG (read from `base`) so the page is
/// self-contained, with the relative path as a fallback if a figure cannot be read.
pub(super) fn html(title: &str, doc: &[Block], base: &Path) -> String {
    let mut out = format!("<h1>{}</h1>\n", escape(title));
    for block in doc {
        match block {
            Block::Heading(h) => {
                let _ = writeln!(out, "<h2 id=\"{}\">{}</h2>", anchor(h), inline_html(h));
            }
            Block::Contents(items) => {
                out.push_str("<nav>\n<h2 id=\"contents\">Contents</h2>\n<ol>\n");
                for h in items {
                    let _ = writeln!(
                        out,
                        "<li><a href=\"#{}\">{}</a></li>",
                        anchor(h),
                        inline_html(h)
                    );
                }
                out.push_str("</ol>\n</nav>\n");
            }
            Block::Paragraph(p) => {
                let _ = writeln!(out, "<p>{}</p>", inline_html(p));
            }
            Block::List(items) => {
                out.push_str("<ul>\n");
                for i in items {
                    let _ = writeln!(out, "<li>{}</li>", inline_html(i));
                }
                out.push_str("</ul>\n");
            }
            Block::Table { header, rows } => {
                out.push_str("<table>\n<tr>");
                for h in header {
                    let _ = write!(out, "<th>{}</th>", escape(h));
                }
                out.push_str("</tr>\n");
                for row in rows {
                    out.push_str("<tr>");
                    for cell in row {
                        let _ = write!(out, "<td>{}</td>", inline_html(cell));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</table>\n");
            }
            Block::Figure { src, caption } => {
                let data = std::fs::read(base.join(src))
                    .map_or_else(|_| escape(src), |png| ferbayes_render::png_data_uri(&png));
                let stem = Path::new(src)
                    .file_stem()
                    .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
                let _ = writeln!(
                    out,
                    "<figure id=\"fig-{}\"><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
                    escape(&stem),
                    data,
                    escape(caption),
                    inline_html(caption)
                );
            }
        }
    }
    document(title, CSS, &out)
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

pub(super) fn markdown(title: &str, doc: &[Block]) -> String {
    let mut out = format!("# {title}\n\n");
    for block in doc {
        match block {
            Block::Heading(h) => {
                let _ = writeln!(out, "## {h}\n");
            }
            Block::Contents(items) => {
                out.push_str("## Contents\n\n");
                for (i, h) in items.iter().enumerate() {
                    let _ = writeln!(out, "{}. [{h}](#{})", i + 1, anchor(h));
                }
                out.push('\n');
            }
            Block::Paragraph(p) => {
                let _ = writeln!(out, "{p}\n");
            }
            Block::List(items) => {
                for i in items {
                    let _ = writeln!(out, "- {i}");
                }
                out.push('\n');
            }
            Block::Table { header, rows } => {
                let _ = writeln!(
                    out,
                    "| {} |",
                    header
                        .iter()
                        .map(|h| md_cell(h))
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
                let align: Vec<&str> = (0..header.len())
                    .map(|i| if i < 2 { ":--" } else { "--:" })
                    .collect();
                let _ = writeln!(out, "| {} |", align.join(" | "));
                for row in rows {
                    let _ = writeln!(
                        out,
                        "| {} |",
                        row.iter()
                            .map(|c| md_cell(c))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    );
                }
                out.push('\n');
            }
            Block::Figure { src, caption } => {
                let _ = writeln!(
                    out,
                    "![{}]({src})\n\n*{caption}*\n",
                    md_cell(caption).replace(['[', ']'], "")
                );
            }
        }
    }
    out
}
