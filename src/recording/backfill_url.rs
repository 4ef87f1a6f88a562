//! Where a stream's backfill goes: the live upstream's URL with the backfill path
//! appended to its path (RTSP, RTMP) or to its `streamid` (SRT).

/// The backfill URL for the live upstream `live`; `None` if `live` is not a URL.
pub fn backfill_url(live: &str, suffix: &str) -> Option<String> {
    let mut url = url::Url::parse(live).ok()?;
    if url.scheme() == "srt" {
        // Edited as text: srtsink reads the query as written, unescaped.
        let (base, query) = live.split_once('?').unwrap_or((live, ""));
        let mut found = false;
        let mut pairs: Vec<String> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.strip_prefix("streamid=") {
                Some(id) => {
                    found = true;
                    format!("streamid={}", stream_id_with(id, suffix))
                }
                None => p.to_owned(),
            })
            .collect();
        if !found {
            pairs.push(format!("streamid={}", suffix.trim_start_matches('/')));
        }
        return Some(format!("{base}?{}", pairs.join("&")));
    }
    let path = format!("{}{suffix}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Some(url.to_string())
}

/// An SRT stream id naming the backfill path: the suffix goes after the path, not after
/// credentials, in MediaMTX's `publish:<path>[:<user>:<pass>]` and in the SRT access
/// control form `#!::r=<path>,...`; any other id gets it at the end.
fn stream_id_with(id: &str, suffix: &str) -> String {
    if let Some(fields) = id.strip_prefix("#!::") {
        let fields: Vec<String> = fields
            .split(',')
            .map(|f| match f.strip_prefix("r=") {
                Some(path) => format!("r={path}{suffix}"),
                None => f.to_owned(),
            })
            .collect();
        return format!("#!::{}", fields.join(","));
    }
    let mut parts: Vec<String> = id.split(':').map(str::to_owned).collect();
    if parts.len() >= 2 && matches!(parts[0].as_str(), "publish" | "read") {
        parts[1].push_str(suffix);
        return parts.join(":");
    }
    format!("{id}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::backfill_url;

    #[test]
    fn paths_and_stream_ids_get_the_suffix() {
        let b = |u| backfill_url(u, "/backfill").expect("test value");
        assert_eq!(b("rtsp://h:8554/cam"), "rtsp://h:8554/cam/backfill");
        assert_eq!(
            b("rtsp://u:p@h/live/cam/"),
            "rtsp://u:p@h/live/cam/backfill"
        );
        assert_eq!(b("rtsp://h:8554/cam?x=1"), "rtsp://h:8554/cam/backfill?x=1");
        assert_eq!(b("rtmp://h/live/key"), "rtmp://h/live/key/backfill");
        assert_eq!(
            b("srt://h:8890?streamid=publish:cam&latency=200"),
            "srt://h:8890?streamid=publish:cam/backfill&latency=200"
        );
        assert_eq!(b("srt://h:8890"), "srt://h:8890?streamid=backfill");
        assert_eq!(
            b("srt://h:8890?streamid=publish:cam:user:secret"),
            "srt://h:8890?streamid=publish:cam/backfill:user:secret"
        );
        assert_eq!(
            b("srt://h:8890?streamid=#!::r=live/cam,m=publish"),
            "srt://h:8890?streamid=#!::r=live/cam/backfill,m=publish"
        );
        assert_eq!(
            b("srt://h:8890?streamid=cam0"),
            "srt://h:8890?streamid=cam0/backfill"
        );
        assert_eq!(backfill_url("not a url", "/b"), None);
        // A suffix without '/' names a sibling: nginx-rtmp takes the last path
        // component as the stream name, the rest as its application.
        assert_eq!(
            backfill_url("rtmp://h/live/cam", "_backfill").expect("a URL"),
            "rtmp://h/live/cam_backfill"
        );
    }
}
