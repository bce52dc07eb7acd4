//! The pages as a browser shows them: headless Chromium (over the DevTools protocol) opens each
//! page of a server on the smoke run, checks that every image decoded, sorts the faces by
//! entropy, opens one face, uploads `group.jpg` and finds its four faces. The faces page's
//! screenshot goes to docs/figures/explore_faces.png with `FER_UPDATE_FIGURES=1` (else to a
//! temporary folder). Skipped, saying so, only with `FER_NO_BROWSER=1`; otherwise a missing
//! `chromium` is a failure (CI installs it).

use std::time::Duration;

use ferbayes_explore::testing::cdp::Browser;
use ferbayes_explore::testing::no_browser;
use serde_json::Value;

use crate::support::{photos, repo, smoke_server};

/// `[decoded, total]` over the page's `<img>` elements.
const IMAGES: &str = "(() => { const i = [...document.images]; return [i.filter(x => x.complete && x.naturalWidth > 0).length, i.length]; })()";

fn images_decode(b: &mut Browser, page: &str, at_least: u64) {
    let got = b.eval(IMAGES).expect("images");
    let (ok, total) = (got[0].as_u64().unwrap_or(0), got[1].as_u64().unwrap_or(0));
    assert!(
        total >= at_least,
        "{page}: {total} images, expected at least {at_least}"
    );
    assert_eq!(ok, total, "{page}: only {ok} of {total} images decoded");
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

#[test]
fn every_page_in_headless_chromium() {
    if no_browser("the headless-browser test of explore") {
        return;
    }
    let (_, server) = smoke_server();
    let profile = tempfile::tempdir().expect("tempdir");
    let mut b = Browser::start(profile.path(), 1280, 900).expect("chromium");

    // Faces: 48 cards, every face image decodes.
    b.open(&server.url("/faces?arch=densenet121&method=ensemble&per_page=24"))
        .expect("faces page");
    let cards = b
        .eval("document.querySelectorAll('#faces .card').length")
        .expect("cards");
    assert_eq!(cards, 24);
    images_decode(&mut b, "faces", 24);
    let shot = b.screenshot().expect("screenshot");
    assert!(
        image::load_from_memory(&shot).is_ok(),
        "the screenshot is a PNG"
    );
    let out = if std::env::var("FER_UPDATE_FIGURES").is_ok_and(|v| v == "1") {
        repo().join("docs/figures/explore_faces.png")
    } else {
        profile.path().join("explore_faces.png")
    };
    std::fs::write(&out, &shot).expect("write the screenshot");
    eprintln!("faces page screenshot: {}", out.display());

    // Sort by entropy: the link flips to ascending, then back to descending.
    let entropies =
        "[...document.querySelectorAll('#faces .card')].map(c => Number(c.dataset.entropy))";
    b.navigating("document.getElementById('sort-entropy').click()")
        .expect("sort");
    let asc = b.eval(entropies).expect("entropies");
    let asc: Vec<f64> = asc.as_array().expect("list").iter().map(number).collect();
    assert!(asc.windows(2).all(|w| w[0] <= w[1]), "ascending: {asc:?}");
    b.navigating("document.getElementById('sort-entropy').click()")
        .expect("sort");
    let desc = b.eval(entropies).expect("entropies");
    let desc: Vec<f64> = desc.as_array().expect("list").iter().map(number).collect();
    assert!(
        desc.windows(2).all(|w| w[0] >= w[1]),
        "descending: {desc:?}"
    );
    assert!(
        desc[0] >= asc[asc.len() - 1],
        "the most uncertain face comes first"
    );
    let url = b.eval("location.search").expect("url");
    assert!(
        url.as_str()
            .is_some_and(|u| u.contains("sort=entropy") && u.contains("order=desc")),
        "{url}"
    );
    images_decode(&mut b, "sorted faces", 24);

    // A filter through the form: only wrong predictions.
    b.navigating("document.querySelector('[name=correct]').value='wrong'; document.getElementById('apply').click()")
        .expect("filter");
    let wrong = b
        .eval("[...document.querySelectorAll('#faces .card')].every(c => c.classList.contains('wrong'))")
        .expect("wrong");
    assert_eq!(wrong, true);

    // One face: a chart per arch × method, its image decodes.
    let image = b
        .eval("document.querySelector('#faces .card').dataset.image")
        .expect("image");
    b.navigating("document.querySelector('#faces .card a.face-link').click()")
        .expect("face page");
    let title = b
        .eval("document.querySelector('h1').textContent")
        .expect("title");
    assert!(
        title
            .as_str()
            .is_some_and(|t| t.contains(image.as_str().unwrap_or("?"))),
        "{title} vs {image}"
    );
    let charts = b
        .eval("document.querySelectorAll('svg.probchart polyline').length")
        .expect("charts");
    assert_eq!(
        charts,
        9 * 8,
        "a line per emotion for each of the 9 combinations"
    );
    images_decode(&mut b, "face", 1);

    // Photo: upload group.jpg through the form, four faces and the annotated picture.
    b.open(&server.url("/photo")).expect("photo page");
    b.set_file("#photo-file", &photos().join("group.jpg"))
        .expect("file");
    b.navigating("document.getElementById('photo-submit').click()")
        .expect("upload");
    let faces = b
        .eval("document.querySelectorAll('.face-card').length")
        .expect("faces");
    let said = b
        .eval("location.href + ' ' + document.body.innerText.slice(0, 600)")
        .expect("text");
    assert_eq!(faces, 4, "group.jpg holds four faces: {said}");
    images_decode(&mut b, "photo result", 1);
    let annotated = b
        .eval("document.getElementById('annotated').naturalWidth")
        .expect("annotated");
    assert_eq!(annotated, 900);

    // Run: the status table, the report's summary and every figure decodes.
    b.open(&server.url("/run")).expect("run page");
    let rows = b
        .eval("document.querySelectorAll('#status tr').length")
        .expect("rows");
    assert!(number(&rows) > 10.0, "{rows}");
    let summary = b
        .eval("!!document.querySelector('#report-summary h2')")
        .expect("summary");
    assert_eq!(summary, true);
    images_decode(&mut b, "run", 5);
    b.wait_for("true", Duration::from_secs(1))
        .expect("still alive");
}
