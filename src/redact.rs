//! Removes credentials (`user:pass@`) from URLs and from any text that embeds them.

/// Returns `text` with the userinfo of every `scheme://userinfo@host` replaced by `***`.
///
/// Works on free text too (GStreamer error messages quote the location they failed on).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority ends at the first '/', whitespace or quote; userinfo is before its last '@'.
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn strips_userinfo() {
        assert_eq!(
            redact("rtsp://admin:s3cr3t@10.0.0.2:8554/cam"),
            "rtsp://***@10.0.0.2:8554/cam"
        );
    }

    #[test]
    fn leaves_plain_urls_alone() {
        let u = "rtsp://127.0.0.1:8554/bench-01/cam0";
        assert_eq!(redact(u), u);
    }

    #[test]
    fn works_inside_free_text_and_repeats() {
        let t = "Could not open \"rtsp://u:p@a/x\" nor rtsp://v:q@b:1/y.";
        assert_eq!(
            redact(t),
            "Could not open \"rtsp://***@a/x\" nor rtsp://***@b:1/y."
        );
    }

    #[test]
    fn password_with_at_sign() {
        assert_eq!(redact("rtsp://u:p@ss@h/x"), "rtsp://***@h/x");
    }
}
