//! The roster as a text table (one row per stream) or as a JSON array.

use std::io::Write;
use std::time::SystemTime;

use super::FleetError;
use super::roster::{Device, Roster, Status};

const HEADER: [&str; COLUMNS] = [
    "DEVICE", "STATUS", "SINCE", "VERSION", "BOARD", "GROUPS", "UPTIME", "TEMP", "STREAM", "STATE",
    "FPS", "KBPS",
];
const COLUMNS: usize = 12;
/// Columns of a row that describe the device rather than the stream.
const DEVICE_COLUMNS: usize = 8;
type Row = [String; COLUMNS];

/// The table, then a line counting the devices.
pub fn write_table(out: &mut impl Write, roster: &Roster) -> Result<(), FleetError> {
    out.write_all(render(roster, SystemTime::now()).as_bytes())?;
    out.flush()?;
    Ok(())
}

/// A JSON array of the devices, each with its status, info, health, reported
/// configuration and streams.
pub fn write_json(out: &mut impl Write, roster: &Roster) -> Result<(), FleetError> {
    let devices: Vec<&Device> = roster.devices().collect();
    serde_json::to_writer_pretty(&mut *out, &devices)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// The table as text; SINCE is the age of each status at `now`.
pub fn render(roster: &Roster, now: SystemTime) -> String {
    let mut rows: Vec<Row> = vec![HEADER.map(str::to_owned)];
    for d in roster.devices() {
        rows.extend(rows_of(d, now));
    }
    let mut widths = [0usize; COLUMNS];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    let online = roster
        .devices()
        .filter(|d| d.status.as_ref().is_some_and(|s| s.online))
        .count();
    let offline = roster.devices().filter(|d| d.is_offline()).count();
    text.push_str(&format!(
        "{} device(s): {online} online, {offline} offline\n",
        roster.len()
    ));
    text
}

/// The rows of one device. Of an offline device the readings (uptime, temperature,
/// rates) are left out and each stream's state is the last one it published.
fn rows_of(d: &Device, now: SystemTime) -> Vec<Row> {
    let live = !d.is_offline();
    let reading = |v: Option<f64>, f: &dyn Fn(f64) -> String| match v {
        Some(v) if live => f(v),
        _ => "-".into(),
    };
    let device: [String; DEVICE_COLUMNS] = [
        d.id.clone(),
        d.status.as_ref().map_or("-".into(), status),
        d.status
            .as_ref()
            .and_then(held_since)
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| now.duration_since(t).ok())
            .map_or("-".into(), |age| duration(age.as_secs_f64())),
        or_dash(d.version.as_deref()),
        or_dash(d.board_model.as_deref()),
        if d.groups().is_empty() {
            "-".into()
        } else {
            d.groups().join(",")
        },
        reading(d.uptime_s, &duration),
        reading(d.temperature_c, &|t| format!("{t:.1}°C")),
    ];
    let mut streams: Vec<[String; 4]> = d
        .streams
        .iter()
        .map(|(id, s)| {
            let state = match (&s.state, &s.reason) {
                (Some(st), Some(r)) => format!("{st}({r})"),
                (Some(st), None) => st.clone(),
                (None, _) => "-".into(),
            };
            [
                id.clone(),
                if live || state == "-" {
                    state
                } else {
                    format!("last:{state}")
                },
                reading(s.fps, &|f| format!("{f:.1}")),
                reading(s.bitrate_kbps, &|b| format!("{b:.0}")),
            ]
        })
        .collect();
    if streams.is_empty() {
        streams.push(["-".into(), "-".into(), "-".into(), "-".into()]);
    }
    streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let mut row: Row = Default::default();
            if i == 0 {
                row[..DEVICE_COLUMNS].clone_from_slice(&device);
            } else {
                // Later streams of the device: its id again, for grep.
                row[0].clone_from(&d.id);
            }
            row[DEVICE_COLUMNS..].clone_from_slice(&s);
            row
        })
        .collect()
}

/// Since when the status holds: an online one since its session began, an offline one
/// since it was published (unknown for a last will, which is written at connection).
fn held_since(s: &Status) -> Option<&str> {
    if s.online {
        s.since.as_deref()
    } else {
        s.ts.as_deref()
    }
}

/// `online`, `offline`, or `offline(<reason>)`.
fn status(s: &Status) -> String {
    match (s.online, &s.reason) {
        (true, _) => "online".into(),
        (false, Some(r)) => format!("offline({r})"),
        (false, None) => "offline".into(),
    }
}

fn or_dash(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("-").to_owned()
}

/// `42s`, `12m05s`, `3h12m`, `4d03h`.
fn duration(s: f64) -> String {
    let s = s.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_stream_aligned() {
        let mut r = Roster::default();
        for (t, p) in [
            (
                "e/a/status",
                r#"{"state":"online","session":3,"since":"2026-12-01T21:40:00.123Z"}"#,
            ),
            ("e/a/info", r#"{"version":"0.1.0","board_model":null}"#),
            ("e/a/health", r#"{"uptime_s":3725.2,"temperature_c":51.04}"#),
            ("e/a/streams/cam0/state", r#"{"state":"streaming"}"#),
            (
                "e/a/streams/cam0/stats",
                r#"{"fps":5.0,"bitrate_kbps":96.6}"#,
            ),
            (
                "e/a/streams/cam1/state",
                r#"{"state":"reconnecting","reason":{"code":"upstream_unreachable"}}"#,
            ),
            (
                "e/b/status",
                r#"{"state":"offline","session":9,"reason":"shutdown",
                    "since":"2026-12-01T20:00:00Z","ts":"2026-12-01T21:52:00Z"}"#,
            ),
            ("e/b/health", r#"{"uptime_s":100.0}"#),
            ("e/b/streams/cam0/state", r#"{"state":"streaming"}"#),
            (
                "e/b/streams/cam0/stats",
                r#"{"fps":5.0,"bitrate_kbps":96.6}"#,
            ),
        ] {
            r.apply("e", t, p.as_bytes());
        }
        let now = humantime::parse_rfc3339("2026-12-01T21:52:05Z").expect("time");
        let text = render(&r, now);
        let expected = [
            "DEVICE  STATUS             SINCE   VERSION  BOARD  GROUPS  UPTIME  TEMP    STREAM  STATE                               FPS  KBPS",
            "a       online             12m04s  0.1.0    -      -       1h02m   51.0°C  cam0    streaming                           5.0  97",
            "a                                                                          cam1    reconnecting(upstream_unreachable)  -    -",
            "b       offline(shutdown)  5s      -        -      -       -       -       cam0    last:streaming                      -    -",
            "2 device(s): 1 online, 1 offline",
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), expected, "{text}");
    }

    #[test]
    fn json_is_an_array_of_devices() {
        let mut r = Roster::default();
        r.apply("e", "e/a/status", b"online");
        let mut out = Vec::new();
        write_json(&mut out, &r).expect("json");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("parses");
        assert_eq!(v[0]["device"], "a");
        assert_eq!(v[0]["status"]["state"], "online");
        assert!(v[0]["streams"].is_object());
    }

    #[test]
    fn uptimes() {
        assert_eq!(duration(42.9), "42s");
        assert_eq!(duration(725.0), "12m05s");
        assert_eq!(duration(11_520.0), "3h12m");
        assert_eq!(duration(356_400.0), "4d03h");
    }
}
