//! `<target>`: one device, a group or the whole fleet, and the topics and desired layer
//! each one means.

use super::FleetError;
use super::roster::Device;

/// Device ids that name the group and fleet topic trees, never a device.
pub const RESERVED_IDS: [&str; 2] = ["groups", "fleet"];

/// Whom a command or a desired configuration is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Device(String),
    Group(String),
    All,
}

impl Target {
    /// `all`, `group:<name>` or a device id.
    pub fn parse(s: &str) -> Result<Target, FleetError> {
        let bad = |what: &str| Err(FleetError::Usage(format!("target {s:?}: {what}")));
        if s == "all" {
            return Ok(Target::All);
        }
        if let Some(group) = s.strip_prefix("group:") {
            if !is_name(group) {
                return bad("a group name is 1-64 characters of A-Z a-z 0-9 . _ -");
            }
            return Ok(Target::Group(group.to_owned()));
        }
        if s.is_empty() || s.contains(['/', '+', '#', '\0']) {
            return bad("not a device id, group:<name> or all");
        }
        if RESERVED_IDS.contains(&s) {
            return bad("groups and fleet are reserved, not device ids");
        }
        Ok(Target::Device(s.to_owned()))
    }

    /// The topic tree the target's commands and desired documents live under.
    fn base(&self, prefix: &str) -> String {
        match self {
            Target::Device(id) => format!("{prefix}/{id}"),
            Target::Group(g) => format!("{prefix}/groups/{g}"),
            Target::All => format!("{prefix}/fleet"),
        }
    }

    /// Where command `name` for this target is published.
    pub fn command_topic(&self, prefix: &str, name: &str) -> String {
        format!("{}/cmd/{name}", self.base(prefix))
    }

    /// The retained desired configuration of this target.
    pub fn desired_topic(&self, prefix: &str) -> String {
        format!("{}/config/desired", self.base(prefix))
    }

    /// The key of this target's layer in a device's `config/reported` `desired`.
    pub fn layer(&self) -> String {
        match self {
            Target::Device(_) => "device".into(),
            Target::Group(g) => format!("group/{g}"),
            Target::All => "fleet".into(),
        }
    }

    /// Whether `device` is one the target reaches.
    pub fn matches(&self, device: &Device) -> bool {
        match self {
            Target::Device(id) => device.id == *id,
            Target::Group(g) => device.groups().iter().any(|x| x == g),
            Target::All => true,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Device(id) => f.write_str(id),
            Target::Group(g) => write!(f, "group:{g}"),
            Target::All => f.write_str("all"),
        }
    }
}

/// 1-64 characters of `A-Z a-z 0-9 . _ -` (group and command names).
pub fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_their_topics() {
        let d = Target::parse("cam-7").expect("device");
        assert_eq!(d.command_topic("edgecam", "ping"), "edgecam/cam-7/cmd/ping");
        assert_eq!(d.desired_topic("edgecam"), "edgecam/cam-7/config/desired");
        assert_eq!(d.layer(), "device");
        let g = Target::parse("group:site-a").expect("group");
        assert_eq!(
            g.command_topic("x", "ping"),
            "x/groups/site-a/cmd/ping".to_owned()
        );
        assert_eq!(g.layer(), "group/site-a");
        let all = Target::parse("all").expect("all");
        assert_eq!(all.desired_topic("edgecam"), "edgecam/fleet/config/desired");
        assert_eq!(all.layer(), "fleet");
        for bad in ["", "group:", "group:a/b", "a/b", "fleet", "groups", "+"] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
    }
}
