//! The faces of one arch × method × split at n samples: filtered, sorted and paged in memory
//! (the Faces page and `/api/faces`), and one face across every arch × method and n = 1..T
//! (the Face page and `/api/face/...`).

use std::fmt::Write as _;

use ferbayes_core::schema::SHOWN_ALPHA;
use ferbayes_core::{Arch, EMOTIONS, Method, NUM_CLASSES, Settings, Split, VOTE_COLUMNS};
use ferbayes_uq::conformal::{prediction_set, set_classes};
use serde::{Deserialize, Serialize};

use crate::data::{AtN, RunData, SplitFaces, combos};
use crate::error::Fail;
use crate::html::{self, escape};

/// Faces per page by default, and at most.
pub const PER_PAGE: usize = 48;
pub const MAX_PER_PAGE: usize = 200;

/// The keys a face list can be sorted by.
pub const SORTS: [(&str, &str); 7] = [
    ("entropy", "predictive entropy"),
    ("aleatoric", "aleatoric"),
    ("epistemic", "epistemic"),
    ("epistemic_share", "epistemic share"),
    ("confidence", "confidence"),
    ("crowd_entropy", "crowd entropy"),
    ("image", "image"),
];

/// A name a request may carry for a face image: letters, digits, `.`, `_`, `-`, not starting
/// with a dot, at most 128 bytes. Anything else (a `/`, `..`, `%2f` once decoded, an absolute
/// path) is refused before any lookup.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// A query value as sent, trimmed; `None` when absent or blank (empty means unset).
pub fn value(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The query of the Faces page and `/api/faces` as sent: the keys they read (others are
/// ignored), each value as typed, checked by [`Choice::parse`] and [`ListQuery::parse`] with
/// messages naming the key and the value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct FacesQuery {
    pub arch: Option<String>,
    pub method: Option<String>,
    pub split: Option<String>,
    pub n: Option<String>,
    pub sort: Option<String>,
    pub order: Option<String>,
    pub page: Option<String>,
    pub per_page: Option<String>,
    pub correct: Option<String>,
    pub majority: Option<String>,
    pub predicted: Option<String>,
    pub min_entropy: Option<String>,
    pub max_entropy: Option<String>,
    pub min_share: Option<String>,
    pub max_share: Option<String>,
    pub min_crowd_entropy: Option<String>,
    pub max_crowd_entropy: Option<String>,
}

impl FacesQuery {
    /// Every key with its value as sent, in the struct's order.
    fn pairs(&self) -> [(&'static str, &Option<String>); 17] {
        [
            ("arch", &self.arch),
            ("method", &self.method),
            ("split", &self.split),
            ("n", &self.n),
            ("sort", &self.sort),
            ("order", &self.order),
            ("page", &self.page),
            ("per_page", &self.per_page),
            ("correct", &self.correct),
            ("majority", &self.majority),
            ("predicted", &self.predicted),
            ("min_entropy", &self.min_entropy),
            ("max_entropy", &self.max_entropy),
            ("min_share", &self.min_share),
            ("max_share", &self.max_share),
            ("min_crowd_entropy", &self.min_crowd_entropy),
            ("max_crowd_entropy", &self.max_crowd_entropy),
        ]
    }
}

fn parse_number<T: std::str::FromStr>(key: &str, v: &Option<String>) -> Result<Option<T>, Fail> {
    value(v)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| Fail::bad_request(format!("`{key}` must be a number, not `{v}`")))
        })
        .transpose()
}

fn parse_class(key: &str, v: &Option<String>) -> Result<Option<usize>, Fail> {
    match value(v) {
        None | Some("any") => Ok(None),
        Some(v) => EMOTIONS
            .iter()
            .position(|e| *e == v)
            .map(Some)
            .ok_or_else(|| {
                Fail::bad_request(format!(
                    "`{key}` must be one of {}, not `{v}`",
                    EMOTIONS.join(", ")
                ))
            }),
    }
}

/// Which model's predictions: arch, method, split and n, checked against the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub arch: Arch,
    pub method: Method,
    pub split: Split,
}

impl Choice {
    /// The choice of the query values `arch`, `method` and `split` (as sent), defaulting to the
    /// profile's first combination and the test split.
    pub fn parse(
        arch: &Option<String>,
        method: &Option<String>,
        split: &Option<String>,
        settings: &Settings,
    ) -> Result<Choice, Fail> {
        let all = combos(settings);
        let (a0, m0) = all
            .first()
            .copied()
            .ok_or_else(|| Fail::not_found("the profile trains no arch × method"))?;
        let arch = match value(arch) {
            Some(v) => v.parse::<Arch>().map_err(Fail::bad_request)?,
            None => a0,
        };
        let method = match value(method) {
            Some(v) => v.parse::<Method>().map_err(Fail::bad_request)?,
            None => m0,
        };
        if !all.contains(&(arch, method)) {
            return Err(Fail::bad_request(format!(
                "{arch}/{method} is not a combination of this profile's run"
            )));
        }
        let split = parse_split(value(split))?;
        Ok(Choice {
            arch,
            method,
            split,
        })
    }
}

/// `valid` or `test` (default `test`).
pub fn parse_split(s: Option<&str>) -> Result<Split, Fail> {
    match s {
        None => Ok(Split::Test),
        Some(v) => match v.parse::<Split>() {
            Ok(s @ (Split::Valid | Split::Test)) => Ok(s),
            _ => Err(Fail::bad_request(format!(
                "`split` must be valid or test, not `{v}`"
            ))),
        },
    }
}

/// Right, wrong or unlabelled (against the FER+ majority label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Correct {
    Any,
    Right,
    Wrong,
    Unlabelled,
}

/// The filters, sort and page of a face list.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub n: Option<usize>,
    pub sort: &'static str,
    pub descending: bool,
    pub page: usize,
    pub per_page: usize,
    correct: Correct,
    majority: Option<usize>,
    predicted: Option<usize>,
    entropy: (Option<f64>, Option<f64>),
    share: (Option<f64>, Option<f64>),
    crowd_entropy: (Option<f64>, Option<f64>),
    /// The query as sent, for the form's fields and the links (whose sort, order and page are
    /// this list's own).
    raw: FacesQuery,
}

impl ListQuery {
    pub fn parse(q: &FacesQuery) -> Result<ListQuery, Fail> {
        let sort = match value(&q.sort) {
            None => "entropy",
            Some(v) => SORTS
                .iter()
                .map(|(k, _)| *k)
                .find(|k| *k == v)
                .ok_or_else(|| {
                    let keys: Vec<&str> = SORTS.iter().map(|(k, _)| *k).collect();
                    Fail::bad_request(format!(
                        "`sort` must be one of {}, not `{v}`",
                        keys.join(", ")
                    ))
                })?,
        };
        let descending = match value(&q.order) {
            None => sort != "image",
            Some("desc") => true,
            Some("asc") => false,
            Some(v) => {
                return Err(Fail::bad_request(format!(
                    "`order` must be asc or desc, not `{v}`"
                )));
            }
        };
        let correct = match value(&q.correct) {
            None | Some("any") => Correct::Any,
            Some("correct") => Correct::Right,
            Some("wrong") => Correct::Wrong,
            Some("unlabelled") => Correct::Unlabelled,
            Some(v) => {
                return Err(Fail::bad_request(format!(
                    "`correct` must be any, correct, wrong or unlabelled, not `{v}`"
                )));
            }
        };
        let page = parse_number::<usize>("page", &q.page)?.unwrap_or(1).max(1);
        let per_page = parse_number::<usize>("per_page", &q.per_page)?
            .unwrap_or(PER_PAGE)
            .clamp(1, MAX_PER_PAGE);
        let range = |lo: (&str, &Option<String>),
                     hi: (&str, &Option<String>)|
         -> Result<(Option<f64>, Option<f64>), Fail> {
            Ok((parse_number(lo.0, lo.1)?, parse_number(hi.0, hi.1)?))
        };
        Ok(ListQuery {
            n: parse_number("n", &q.n)?,
            sort,
            descending,
            page,
            per_page,
            correct,
            majority: parse_class("majority", &q.majority)?,
            predicted: parse_class("predicted", &q.predicted)?,
            entropy: range(
                ("min_entropy", &q.min_entropy),
                ("max_entropy", &q.max_entropy),
            )?,
            share: range(("min_share", &q.min_share), ("max_share", &q.max_share))?,
            crowd_entropy: range(
                ("min_crowd_entropy", &q.min_crowd_entropy),
                ("max_crowd_entropy", &q.max_crowd_entropy),
            )?,
            raw: q.clone(),
        })
    }

    /// The link to this list with `changes` applied (`sort`, `order`, `page`).
    pub fn link(&self, changes: &[(&str, String)]) -> String {
        let mut pairs: Vec<(String, String)> = self
            .raw
            .pairs()
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v.clone()?)))
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        let mut set = |k: &str, v: String| {
            pairs.retain(|(kk, _)| kk != k);
            pairs.push((k.to_owned(), v));
        };
        set("sort", self.sort.to_owned());
        set(
            "order",
            if self.descending { "desc" } else { "asc" }.to_owned(),
        );
        set("page", self.page.to_string());
        for (k, v) in changes {
            set(k, v.clone());
        }
        pairs.sort();
        let query: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", html::encode(k), html::encode(v)))
            .collect();
        format!("/faces?{}", query.join("&"))
    }
}

/// A probability per emotion, as `[name, p]` pairs (the format of `ferbayes predict --json`).
fn named(probs: &[f32; NUM_CLASSES]) -> Vec<(&'static str, f64)> {
    EMOTIONS
        .iter()
        .zip(probs)
        .map(|(e, &p)| (*e, f64::from(p)))
        .collect()
}

/// A face's prediction set at α = 0.1.
#[derive(Debug, Clone, Serialize)]
pub struct SetJson {
    pub alpha: f64,
    pub qhat: f64,
    pub emotions: Vec<&'static str>,
}

/// One face of a list, as `/api/faces` gives it.
#[derive(Debug, Clone, Serialize)]
pub struct FaceJson {
    pub image: String,
    pub split: &'static str,
    /// The Face page of this face, and its 48x48 PNG.
    pub url: String,
    pub png: String,
    pub majority: Option<&'static str>,
    /// The crowd's ten votes, `[column, count]`.
    pub votes: Vec<(&'static str, u8)>,
    pub crowd_entropy: Option<f32>,
    pub predicted: &'static str,
    pub confidence: f64,
    /// Whether the predicted class is the majority label (None without one).
    pub correct: Option<bool>,
    pub probabilities: Vec<(&'static str, f64)>,
    pub predictive_entropy: f64,
    pub aleatoric: f64,
    pub epistemic: f64,
    pub epistemic_share: f64,
    pub prediction_set: Option<SetJson>,
}

/// `/api/faces`: one page of a filtered, sorted list.
#[derive(Debug, Clone, Serialize)]
pub struct FacesJson {
    pub profile: String,
    pub arch: Arch,
    pub method: Method,
    pub split: &'static str,
    pub n: usize,
    pub samples: usize,
    /// Faces of the split, and those that pass the filters.
    pub faces_in_split: usize,
    pub matching: usize,
    pub page: usize,
    pub per_page: usize,
    pub pages: usize,
    pub sort: &'static str,
    pub order: &'static str,
    /// Why the faces have no prediction sets, when they have none.
    pub prediction_sets: Option<String>,
    pub faces: Vec<FaceJson>,
}

/// The face at index `i` of `faces` under `stats` at n.
fn face_json(faces: &SplitFaces, i: usize, at: &AtN, qhat: Option<f64>) -> FaceJson {
    let (k, confidence) = at.predicted();
    let majority = faces.majority[i].map(usize::from);
    let name = &faces.names[i];
    let split = faces.split.name();
    FaceJson {
        image: name.clone(),
        split,
        url: format!("/face/{split}/{}", html::encode(name)),
        png: format!("/img/{split}/{}", html::encode(name)),
        majority: majority.and_then(|m| EMOTIONS.get(m).copied()),
        votes: VOTE_COLUMNS
            .iter()
            .copied()
            .zip(faces.votes[i].iter().copied())
            .collect(),
        crowd_entropy: faces.crowd_entropy[i],
        predicted: EMOTIONS[k],
        confidence,
        correct: majority.map(|m| m == k),
        probabilities: named(&at.probs),
        predictive_entropy: at.entropy,
        aleatoric: at.aleatoric,
        epistemic: at.epistemic,
        epistemic_share: at.epistemic_share(),
        prediction_set: qhat.map(|q| SetJson {
            alpha: SHOWN_ALPHA,
            qhat: q,
            emotions: set_classes(prediction_set(&at.probs, q))
                .map(|k| EMOTIONS[k])
                .collect(),
        }),
    }
}

fn within(v: f64, (lo, hi): (Option<f64>, Option<f64>)) -> bool {
    lo.is_none_or(|lo| v >= lo) && hi.is_none_or(|hi| v <= hi)
}

/// The list `list` asks for, of `choice` in `run`.
pub fn list(
    run: &RunData,
    profile: &str,
    choice: Choice,
    list: &ListQuery,
) -> Result<FacesJson, Fail> {
    let faces = run.faces(choice.split)?;
    let stats = run.stats(choice.arch, choice.method, choice.split)?;
    let t = stats.samples;
    let n = list.n.unwrap_or(t);
    if !(1..=t).contains(&n) {
        return Err(Fail::bad_request(format!(
            "`n` must be between 1 and {t} (the samples of {}/{}), not {n}",
            choice.arch, choice.method
        )));
    }
    let mut rows: Vec<(usize, AtN)> = Vec::with_capacity(faces.len());
    for i in 0..faces.len() {
        let at = stats.at(i, n);
        let (k, _) = at.predicted();
        let majority = faces.majority[i].map(usize::from);
        let keep = match list.correct {
            Correct::Any => true,
            Correct::Right => majority == Some(k),
            Correct::Wrong => majority.is_some_and(|m| m != k),
            Correct::Unlabelled => majority.is_none(),
        } && list.majority.is_none_or(|c| majority == Some(c))
            && list.predicted.is_none_or(|c| c == k)
            && within(at.entropy, list.entropy)
            && within(at.epistemic_share(), list.share)
            && (list.crowd_entropy == (None, None)
                || faces.crowd_entropy[i]
                    .is_some_and(|c| within(f64::from(c), list.crowd_entropy)));
        if keep {
            rows.push((i, at));
        }
    }
    let key = |(i, at): &(usize, AtN)| -> Option<f64> {
        match list.sort {
            "entropy" => Some(at.entropy),
            "aleatoric" => Some(at.aleatoric),
            "epistemic" => Some(at.epistemic),
            "epistemic_share" => Some(at.epistemic_share()),
            "confidence" => Some(at.predicted().1),
            "crowd_entropy" => faces.crowd_entropy[*i].map(f64::from),
            _ => None,
        }
    };
    if list.sort == "image" {
        rows.sort_by(|a, b| faces.names[a.0].cmp(&faces.names[b.0]));
        if list.descending {
            rows.reverse();
        }
    } else {
        // Faces without the value (no crowd votes) go last either way; ties keep file order.
        rows.sort_by(|a, b| match (key(a), key(b)) {
            (Some(x), Some(y)) => {
                let o = x.total_cmp(&y);
                if list.descending { o.reverse() } else { o }
            }
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
    }
    let matching = rows.len();
    let pages = matching.div_ceil(list.per_page).max(1);
    let qhat = run.conformal.qhat(choice.arch, choice.method, n);
    let page: Vec<FaceJson> = rows
        .iter()
        .skip((list.page - 1) * list.per_page)
        .take(list.per_page)
        .map(|(i, at)| face_json(faces, *i, at, qhat))
        .collect();
    let why_no_sets = match (&run.conformal.unavailable, qhat) {
        (Some(why), _) => Some(why.clone()),
        (None, None) => Some(format!(
            "no prediction sets: the analyze tables have no row for {}/{} at n = {n}, α = {SHOWN_ALPHA}",
            choice.arch, choice.method
        )),
        (None, Some(_)) => None,
    };
    Ok(FacesJson {
        profile: profile.to_owned(),
        arch: choice.arch,
        method: choice.method,
        split: choice.split.name(),
        n,
        samples: t,
        faces_in_split: faces.len(),
        matching,
        page: list.page,
        per_page: list.per_page,
        pages,
        sort: list.sort,
        order: if list.descending { "desc" } else { "asc" },
        prediction_sets: why_no_sets,
        faces: page,
    })
}

fn options<T: Copy + PartialEq>(items: &[T], chosen: T, name: impl Fn(T) -> String) -> String {
    items
        .iter()
        .map(|&i| {
            let sel = if i == chosen { " selected" } else { "" };
            format!("<option{sel}>{}</option>", escape(&name(i)))
        })
        .collect()
}

/// The Faces page.
pub fn page(settings: &Settings, choice: Choice, q: &ListQuery, got: &FacesJson) -> String {
    let t = &settings.train;
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Faces: {} / {} on the {} split at n = {} of {}</h1>",
        choice.arch, choice.method, got.split, got.n, got.samples
    );
    // The selection and the filters: one GET form.
    let raw = |v: &Option<String>| escape(v.as_deref().unwrap_or(""));
    let class_options = |sent: &Option<String>, extra: &[&str]| {
        let cur = sent.as_deref().unwrap_or("any");
        let mut s = String::new();
        for v in ["any"].iter().chain(extra).chain(EMOTIONS.iter()) {
            let sel = if *v == cur { " selected" } else { "" };
            let _ = write!(s, "<option{sel}>{v}</option>");
        }
        s
    };
    let correct_cur = q.raw.correct.as_deref().unwrap_or("any");
    let correct: String = ["any", "correct", "wrong", "unlabelled"]
        .iter()
        .map(|v| {
            let sel = if *v == correct_cur { " selected" } else { "" };
            format!("<option{sel}>{v}</option>")
        })
        .collect();
    let _ = write!(
        b,
        "<form class=\"filters\" id=\"filters\" method=\"get\" action=\"/faces\">\
<label>arch<select name=\"arch\">{}</select></label>\
<label>method<select name=\"method\">{}</select></label>\
<label>split<select name=\"split\">{}</select></label>\
<label>n (1..{})<input name=\"n\" type=\"number\" min=\"1\" max=\"{}\" value=\"{}\"></label>\
<label>correct<select name=\"correct\">{correct}</select></label>\
<label>majority<select name=\"majority\">{}</select></label>\
<label>predicted<select name=\"predicted\">{}</select></label>\
<label>entropy ≥<input name=\"min_entropy\" value=\"{}\"></label><label>entropy ≤<input name=\"max_entropy\" value=\"{}\"></label>\
<label>epistemic share ≥<input name=\"min_share\" value=\"{}\"></label><label>epistemic share ≤<input name=\"max_share\" value=\"{}\"></label>\
<label>crowd entropy ≥<input name=\"min_crowd_entropy\" value=\"{}\"></label><label>crowd entropy ≤<input name=\"max_crowd_entropy\" value=\"{}\"></label>\
<label>per page<input name=\"per_page\" type=\"number\" min=\"1\" max=\"{MAX_PER_PAGE}\" value=\"{}\"></label>\
<input type=\"hidden\" name=\"sort\" value=\"{}\"><input type=\"hidden\" name=\"order\" value=\"{}\">\
<button type=\"submit\" id=\"apply\">Show</button></form>",
        options(&t.archs, choice.arch, |a| a.to_string()),
        options(&t.methods, choice.method, |m| m.to_string()),
        options(&[Split::Test, Split::Valid], choice.split, |s| s
            .name()
            .to_owned()),
        got.samples,
        got.samples,
        got.n,
        class_options(&q.raw.majority, &[]),
        class_options(&q.raw.predicted, &[]),
        raw(&q.raw.min_entropy),
        raw(&q.raw.max_entropy),
        raw(&q.raw.min_share),
        raw(&q.raw.max_share),
        raw(&q.raw.min_crowd_entropy),
        raw(&q.raw.max_crowd_entropy),
        got.per_page,
        got.sort,
        got.order,
    );
    // Sort links: a click on the current key flips the order.
    b.push_str("<p class=\"sorts\">sort by: ");
    for (key, label) in SORTS {
        let on = key == got.sort;
        let order = if on {
            if q.descending { "asc" } else { "desc" }
        } else if key == "image" {
            "asc"
        } else {
            "desc"
        };
        let arrow = if on {
            if q.descending { " ↓" } else { " ↑" }
        } else {
            ""
        };
        let _ = write!(
            b,
            "<a id=\"sort-{key}\" class=\"{}\" href=\"{}\">{label}{arrow}</a>",
            if on { "on" } else { "" },
            escape(&q.link(&[
                ("sort", key.to_owned()),
                ("order", order.to_owned()),
                ("page", "1".to_owned()),
            ]))
        );
    }
    b.push_str("</p>");
    let _ = write!(
        b,
        "<p class=\"meta\" id=\"count\">{} of {} faces match; page {} of {}. Entropies in nats; the crowd's 10 votes beside the model's mean probabilities over its first {} samples.</p>",
        got.matching, got.faces_in_split, got.page, got.pages, got.n
    );
    if let Some(why) = &got.prediction_sets {
        let _ = write!(b, "<p class=\"meta\" id=\"no-sets\">{}</p>", escape(why));
    }
    b.push_str(&pager(q, got));
    b.push_str("<div class=\"grid\" id=\"faces\">");
    for f in &got.faces {
        let class = match f.correct {
            Some(true) => "card right",
            Some(false) => "card wrong",
            None => "card",
        };
        let votes: Vec<u8> = f.votes.iter().map(|(_, v)| *v).collect();
        let probs: [f32; NUM_CLASSES] = std::array::from_fn(|k| f.probabilities[k].1 as f32);
        let set = match &f.prediction_set {
            Some(s) => format!("set (α = {}): {{{}}}", s.alpha, s.emotions.join(", ")),
            None => String::new(),
        };
        let _ = write!(
            b,
            "<div class=\"{class}\" data-image=\"{img}\" data-entropy=\"{:.6}\" data-epistemic=\"{:.6}\">\
<a class=\"face-link\" href=\"{url}\"><img class=\"face\" src=\"{png}\" alt=\"{img}\" width=\"96\" height=\"96\"></a>\
<div><div class=\"meta\"><b><a href=\"{url}\">{img}</a></b> · majority <b>{}</b> · predicted <b>{}</b> {:.0}%</div>\
<div class=\"meta\">H {:.3} = aleatoric {:.3} + epistemic {:.3} ({:.0}% epistemic) · crowd H {}</div>\
<div class=\"meta set\">{}</div>\
<div class=\"pair\"><div><h4>crowd votes</h4>{}</div><div><h4>model, n = {}</h4>{}</div></div></div></div>",
            f.predictive_entropy,
            f.epistemic,
            f.majority.unwrap_or("none"),
            f.predicted,
            100.0 * f.confidence,
            f.predictive_entropy,
            f.aleatoric,
            f.epistemic,
            100.0 * f.epistemic_share,
            // + 0.0: a unanimous crowd's −0.0 shows as 0.000.
            f.crowd_entropy
                .map_or_else(|| "–".to_owned(), |c| format!("{:.3}", c + 0.0)),
            escape(&set),
            html::vote_bars(&votes),
            got.n,
            html::prob_bars(&probs),
            img = escape(&f.image),
            url = escape(&f.url),
            png = escape(&f.png),
        );
    }
    b.push_str("</div>");
    b.push_str(&pager(q, got));
    html::page("Faces", Some("faces"), &b)
}

fn pager(q: &ListQuery, got: &FacesJson) -> String {
    let mut s = String::from("<p class=\"pager\">");
    let link = |p: usize, label: &str, id: &str| {
        format!(
            "<a id=\"{id}\" href=\"{}\">{label}</a>",
            escape(&q.link(&[("page", p.to_string())]))
        )
    };
    if got.page > 1 {
        s.push_str(&link(got.page - 1, "← previous", "page-prev"));
    }
    let _ = write!(s, "<b>page {} / {}</b>", got.page, got.pages);
    if got.page < got.pages {
        s.push_str(&link(got.page + 1, "next →", "page-next"));
    }
    s.push_str("</p>");
    s
}

/// One combination's predictions for one face at n = 1..T.
#[derive(Debug, Clone, Serialize)]
pub struct ComboJson {
    pub arch: Arch,
    pub method: Method,
    pub samples: usize,
    /// Entry n − 1: the prediction from the first n samples.
    pub by_n: Vec<AtNJson>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AtNJson {
    pub n: usize,
    pub probabilities: Vec<(&'static str, f64)>,
    pub predicted: &'static str,
    pub predictive_entropy: f64,
    pub aleatoric: f64,
    pub epistemic: f64,
}

/// A combination without predictions, and why.
#[derive(Debug, Clone, Serialize)]
pub struct MissingJson {
    pub arch: Arch,
    pub method: Method,
    pub missing: String,
    pub recipe: Option<String>,
}

/// `/api/face/{split}/{image}`.
#[derive(Debug, Clone, Serialize)]
pub struct OneFaceJson {
    pub image: String,
    pub split: &'static str,
    pub png: String,
    pub majority: Option<&'static str>,
    pub votes: Vec<(&'static str, u8)>,
    pub crowd: Option<Vec<(&'static str, f64)>>,
    pub crowd_entropy: Option<f32>,
    pub combos: Vec<ComboJson>,
    pub missing: Vec<MissingJson>,
}

/// Face `image` of `split` under every combination of the run.
pub fn one(
    run: &RunData,
    settings: &Settings,
    split: Split,
    image: &str,
) -> Result<OneFaceJson, Fail> {
    if !valid_name(image) {
        return Err(Fail::bad_request(
            "invalid image name (letters, digits, `.`, `_` and `-` only)",
        ));
    }
    let faces = run.faces(split)?;
    let i = faces
        .find(image)
        .ok_or_else(|| Fail::not_found(format!("no face `{image}` in the {split} split")))?;
    let mut combos_json = Vec::new();
    let mut missing = Vec::new();
    for (arch, method) in combos(settings) {
        match run.stats(arch, method, split) {
            Ok(stats) => combos_json.push(ComboJson {
                arch,
                method,
                samples: stats.samples,
                by_n: (1..=stats.samples)
                    .map(|n| {
                        let at = stats.at(i, n);
                        AtNJson {
                            n,
                            probabilities: named(&at.probs),
                            predicted: EMOTIONS[at.predicted().0],
                            predictive_entropy: at.entropy,
                            aleatoric: at.aleatoric,
                            epistemic: at.epistemic,
                        }
                    })
                    .collect(),
            }),
            Err(u) => missing.push(MissingJson {
                arch,
                method,
                missing: u.message,
                recipe: u.recipe,
            }),
        }
    }
    Ok(OneFaceJson {
        image: image.to_owned(),
        split: split.name(),
        png: format!("/img/{}/{}", split.name(), html::encode(image)),
        majority: faces.majority[i].and_then(|m| EMOTIONS.get(usize::from(m)).copied()),
        votes: VOTE_COLUMNS
            .iter()
            .copied()
            .zip(faces.votes[i].iter().copied())
            .collect(),
        crowd: faces.crowd[i].map(|c| named(&c)),
        crowd_entropy: faces.crowd_entropy[i],
        combos: combos_json,
        missing,
    })
}

/// The Face page.
pub fn one_page(face: &OneFaceJson) -> String {
    let mut b = String::new();
    let votes: Vec<u8> = face.votes.iter().map(|(_, v)| *v).collect();
    let _ = write!(
        b,
        "<h1>Face {} ({} split)</h1><div class=\"card\" style=\"max-width:700px\"><img class=\"face\" id=\"face-img\" src=\"{}\" alt=\"{}\" width=\"96\" height=\"96\"><div><div class=\"meta\">majority label <b>{}</b> · crowd entropy {}</div><h4>crowd votes</h4>{}</div></div>",
        escape(&face.image),
        face.split,
        escape(&face.png),
        escape(&face.image),
        face.majority.unwrap_or("none"),
        face.crowd_entropy
            .map_or_else(|| "–".to_owned(), |c| format!("{:.3} nats", c + 0.0)),
        html::vote_bars(&votes)
    );
    b.push_str("<h2>The prediction as samples are added</h2><p class=\"meta\">Each chart: the mean probability of each emotion over the first n samples (MC passes or ensemble members), n on the x axis.</p>");
    b.push_str(&html::legend());
    b.push_str("<div class=\"charts\">");
    for c in &face.combos {
        let series: Vec<[f32; NUM_CLASSES]> = c
            .by_n
            .iter()
            .map(|a| std::array::from_fn(|k| a.probabilities[k].1 as f32))
            .collect();
        let last = c.by_n.last();
        let _ = write!(
            b,
            "<div class=\"chart\" id=\"chart-{a}-{m}\"><h3>{a} / {m}</h3>{}<p class=\"meta\">n = {}: {} ({:.0}%), H {:.3} = {:.3} + {:.3}</p><details><summary>probabilities by n</summary><table><tr><th>n</th>{}<th>H</th><th>epistemic</th></tr>",
            html::prob_chart(&series, &format!("svg-{}-{}", c.arch, c.method)),
            c.samples,
            last.map_or("", |l| l.predicted),
            last.map_or(0.0, |l| 100.0
                * l.probabilities.iter().map(|p| p.1).fold(0.0, f64::max)),
            last.map_or(0.0, |l| l.predictive_entropy),
            last.map_or(0.0, |l| l.aleatoric),
            last.map_or(0.0, |l| l.epistemic),
            EMOTIONS
                .iter()
                .map(|e| format!("<th>{}</th>", &e[..e.len().min(4)]))
                .collect::<String>(),
            a = c.arch,
            m = c.method,
        );
        for a in &c.by_n {
            let _ = write!(b, "<tr><td>{}</td>", a.n);
            for (_, p) in &a.probabilities {
                let _ = write!(b, "<td>{p:.3}</td>");
            }
            let _ = write!(
                b,
                "<td>{:.3}</td><td>{:.3}</td></tr>",
                a.predictive_entropy, a.epistemic
            );
        }
        b.push_str("</table></details></div>");
    }
    b.push_str("</div>");
    for m in &face.missing {
        let _ = write!(
            b,
            "<p class=\"fail missing\">{} / {}: {}{}</p>",
            m.arch,
            m.method,
            escape(&m.missing),
            m.recipe
                .as_ref()
                .map(|r| format!(" (make it with <code>{}</code>)", escape(r)))
                .unwrap_or_default()
        );
    }
    html::page(&format!("Face {}", face.image), Some("faces"), &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_paths_are_invalid() {
        for ok in ["fer0033044.png", "a-b_c.PNG"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "..",
            "../etc/passwd",
            "/etc/passwd",
            "a/b.png",
            "a\\b.png",
            ".hidden",
            "a%2fb",
            "a\0b",
            &"x".repeat(129),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    /// The query of `target` as the `Query` extractor reads it.
    fn query(target: &str) -> FacesQuery {
        let uri: axum::http::Uri = target.parse().expect("uri");
        axum::extract::Query::<FacesQuery>::try_from_uri(&uri)
            .expect("query")
            .0
    }

    #[test]
    fn list_queries_refuse_what_they_do_not_know() {
        let ok = ListQuery::parse(&query("/faces?min_entropy=&sort=crowd_entropy&color=red"))
            .expect("empty values are unset, unknown keys ignored");
        assert_eq!(
            (ok.sort, ok.descending, ok.page),
            ("crowd_entropy", true, 1)
        );
        for (k, v) in [
            ("sort", "pixels"),
            ("order", "up"),
            ("min_entropy", "lots"),
            ("majority", "joy"),
            ("correct", "maybe"),
        ] {
            let err = ListQuery::parse(&query(&format!("/faces?{k}={v}"))).expect_err(k);
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
            assert!(
                err.message.contains(k) && err.message.contains(v),
                "{err:?}"
            );
        }
        assert!(parse_split(Some("train")).is_err());
        assert!(parse_split(Some("../test")).is_err());
    }

    /// Values are trimmed and percent-decoded; links repeat the filters as sent (sorted by key,
    /// blank ones left out) with this list's sort, order and page.
    #[test]
    fn values_are_trimmed_and_links_repeat_the_filters() {
        let q = query(
            "/faces?per_page=+7+&min_share=0.50&max_entropy=&majority=%20anger&page=3&order=asc",
        );
        let list = ListQuery::parse(&q).expect("parses");
        assert_eq!(
            (
                list.per_page,
                list.page,
                list.descending,
                list.share,
                list.majority
            ),
            (7, 3, false, (Some(0.5), None), Some(4))
        );
        assert_eq!(
            list.link(&[("page", "1".into())]),
            "/faces?majority=%20anger&min_share=0.50&order=asc&page=1&per_page=%207%20&sort=entropy"
        );
    }

    /// A key given twice is refused by the extractor (a 400 naming it, see `server::params`)
    /// rather than one of its values silently winning.
    #[test]
    fn a_key_given_twice_is_refused() {
        let uri: axum::http::Uri = "/faces?arch=alexnet&arch=vgg16".parse().expect("uri");
        let err = axum::extract::Query::<FacesQuery>::try_from_uri(&uri).expect_err("twice");
        assert!(
            err.body_text().contains("duplicate field `arch`"),
            "{}",
            err.body_text()
        );
    }
}
