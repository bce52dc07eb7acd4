//! The report as a browser shows it: report.html is loaded in headless Chromium and every
//! figure's image must have decoded (a non-zero natural size). Skipped, with the reason printed,
//! only when `FER_NO_BROWSER=1`; otherwise a missing `chromium` is a failure (CI installs it).

use std::path::Path;
use std::process::Command;

/// Appended to a copy of the report: once the page has loaded, writes `stem WxH` for every
/// figure into `<pre id="figure-check">`, which `--dump-dom` then prints.
const PROBE: &str = r#"<script>
window.addEventListener('load', () => {
  const lines = [...document.querySelectorAll('figure[id^="fig-"]')].map(f => {
    const img = f.querySelector('img');
    const ok = img && img.complete ? img.naturalWidth + 'x' + img.naturalHeight : '0x0';
    return f.id.slice(4) + ' ' + ok;
  });
  const pre = document.createElement('pre');
  pre.id = 'figure-check';
  pre.textContent = lines.join('\n');
  document.body.appendChild(pre);
});
</script>"#;

/// The natural size of each figure of `report` as headless Chromium decodes it, by stem; None
/// when `FER_NO_BROWSER=1` (the skip is printed).
pub fn figure_sizes(report: &Path) -> Option<Vec<(String, u32, u32)>> {
    if std::env::var("FER_NO_BROWSER").is_ok_and(|v| v == "1") {
        eprintln!("skipping the headless-browser check of the report: FER_NO_BROWSER=1");
        return None;
    }
    let html = std::fs::read_to_string(report).expect("report.html");
    let probe = report.with_file_name("report-browser-check.html");
    let at = html.rfind("</body>").expect("report.html has a body");
    let mut page = html.clone();
    page.insert_str(at, PROBE);
    std::fs::write(&probe, page).expect("write the probe page");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=20000",
            "--dump-dom",
        ])
        .arg(format!("file://{}", probe.display()))
        .output()
        .unwrap_or_else(|e| {
            panic!("chromium could not be started ({e}): install it (apt-get install chromium) or set FER_NO_BROWSER=1")
        });
    std::fs::remove_file(&probe).expect("remove the probe page");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = dom.find("<pre id=\"figure-check\">").unwrap_or_else(|| {
        panic!(
            "the probe did not run; DOM tail: {}",
            &dom[dom.len().saturating_sub(500)..]
        )
    });
    let body = &dom[start + "<pre id=\"figure-check\">".len()..];
    let body = &body[..body.find("</pre>").expect("</pre>")];
    Some(
        body.lines()
            .filter_map(|line| {
                let (stem, size) = line.split_once(' ')?;
                let (w, h) = size.split_once('x')?;
                Some((stem.to_owned(), w.parse().ok()?, h.parse().ok()?))
            })
            .collect(),
    )
}

/// Every stem of `stems` is a figure of `report` that the browser decoded, and so is every
/// other figure.
pub fn assert_figures_render(report: &Path, stems: &[String]) {
    let Some(sizes) = figure_sizes(report) else {
        return;
    };
    for stem in stems {
        assert!(
            sizes.iter().any(|(s, _, _)| s == stem),
            "{stem} is not a figure of the report ({sizes:?})"
        );
    }
    for (stem, w, h) in &sizes {
        assert!(*w >= 100 && *h >= 100, "{stem} did not render: {w}x{h}");
    }
}
