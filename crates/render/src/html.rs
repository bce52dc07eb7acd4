//! HTML pieces shared by the analyze report and explore's pages: escaping and the page frame.

/// `&`, `<`, `>`, `"` and `'` as entities, so the text is safe in element content and in
/// attribute values quoted either way.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole HTML5 page: `title` (escaped here), the style sheet `css` and `body` (HTML, as it is).
pub fn document(title: &str, css: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{css}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain text, é ≤ 1"), "plain text, é ≤ 1");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn the_frame_escapes_the_title_but_not_the_body() {
        assert_eq!(
            document("A & B", "p{x:1}", "<p>hi</p>\n"),
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>A &amp; B</title>\n<style>p{x:1}</style>\n</head>\n<body>\n<p>hi</p>\n</body>\n</html>\n"
        );
    }
}
