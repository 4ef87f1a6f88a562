//! What `P/status` says: `online` at every connection (the birth), `offline` at a clean
//! stop and in the last will, each as JSON with the connection's session and when it was
//! made, so that a late will of an older connection never passes for the device's state
//! (docs/fleet.md). `P/availability` says the same in plain words, without a will.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::payloads::{stamped, ts};

/// One connection's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Birth {
    pub session: u64,
    /// When the connection was attempted, RFC 3339.
    pub since: String,
}

#[derive(Serialize, Deserialize)]
struct StatusPayload {
    state: String,
    session: u64,
    #[serde(default)]
    since: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    reason: Option<String>,
}

impl Birth {
    pub fn new(session: u64) -> Self {
        Birth {
            session,
            since: ts(SystemTime::now()),
        }
    }

    fn payload(&self, state: &str, reason: Option<&str>) -> StatusPayload {
        StatusPayload {
            state: state.into(),
            session: self.session,
            since: self.since.clone(),
            reason: reason.map(str::to_owned),
        }
    }

    /// The birth message.
    pub fn online(&self) -> Vec<u8> {
        stamped(self.payload("online", None), SystemTime::now())
    }

    /// The goodbye of a clean stop.
    pub fn offline(&self) -> Vec<u8> {
        stamped(self.payload("offline", Some("shutdown")), SystemTime::now())
    }

    /// Whether `payload` is this connection's birth.
    pub fn is_own_birth(&self, payload: &[u8]) -> bool {
        serde_json::from_slice::<StatusPayload>(payload)
            .is_ok_and(|s| s.state == "online" && s.session == self.session)
    }

    /// Whether `payload`, seen on `P/status` while this connection is up, is a death of
    /// an earlier session (or a plain `offline`) that a broker delivered after this
    /// birth: it must be overwritten with the birth again.
    pub fn is_stale_death(&self, payload: &[u8]) -> bool {
        if payload == b"offline" {
            return true;
        }
        serde_json::from_slice::<StatusPayload>(payload)
            .is_ok_and(|s| s.state == "offline" && s.session < self.session)
    }
}

/// The last will of the connection `birth` is for (no `ts`: the broker sends it later).
pub fn will(birth: &Birth) -> Vec<u8> {
    serde_json::to_vec(&birth.payload("offline", Some("connection_lost"))).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn birth_will_and_goodbye_carry_the_session() {
        let b = Birth::new(41);
        let online: Value = serde_json::from_slice(&b.online()).expect("in a test");
        assert_eq!(online["state"], "online");
        assert_eq!(online["session"], 41);
        assert_eq!(online["since"], b.since.as_str());
        let will: Value = serde_json::from_slice(&will(&b)).expect("in a test");
        assert_eq!(will["state"], "offline");
        assert_eq!(will["session"], 41);
        assert_eq!(will["reason"], "connection_lost");
        let bye: Value = serde_json::from_slice(&b.offline()).expect("in a test");
        assert_eq!(bye["reason"], "shutdown");
    }

    #[test]
    fn only_an_older_death_is_stale() {
        let now = Birth::new(10);
        assert!(now.is_stale_death(&will(&Birth::new(9))));
        assert!(now.is_stale_death(b"offline"));
        assert!(
            !now.is_stale_death(&will(&now)),
            "this connection's own will"
        );
        assert!(
            !now.is_stale_death(&will(&Birth::new(11))),
            "a newer process's"
        );
        assert!(!now.is_stale_death(&now.online()));
        assert!(!now.is_stale_death(&Birth::new(9).online()));
        assert!(!now.is_stale_death(b"{not json"));
        assert!(now.is_own_birth(&now.online()));
        assert!(!now.is_own_birth(&Birth::new(9).online()));
        assert!(!now.is_own_birth(&now.offline()));
    }
}
