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

/// This connection's birth and whether the broker has it yet: what makes a death seen on
/// `P/status` a stale one. Before the birth comes back, what arrives there is older
/// (retained, or queued for the session) and says nothing about now.
#[derive(Debug, Default)]
pub struct Liveness {
    birth: Option<Birth>,
    in_place: bool,
}

impl Liveness {
    /// The next connection attempt's birth.
    pub fn attempt(&mut self, birth: Birth) {
        self.birth = Some(birth);
        self.in_place = false;
    }

    pub fn birth(&self) -> Option<&Birth> {
        self.birth.as_ref()
    }

    /// A message on `P/status` while connected: the birth to publish again when it is an
    /// older death retained over this connection's birth.
    pub fn on_status(&mut self, payload: &[u8]) -> Option<&Birth> {
        let birth = self.birth.as_ref()?;
        if birth.is_own_birth(payload) {
            self.in_place = true;
            return None;
        }
        if !(self.in_place && birth.is_stale_death(payload)) {
            return None;
        }
        // Until this birth comes back again.
        self.in_place = false;
        Some(birth)
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

    #[test]
    fn a_death_is_stale_only_after_this_birth_came_back() {
        let mut l = Liveness::default();
        let old = will(&Birth::new(4));
        assert!(l.on_status(&old).is_none(), "no birth yet");
        l.attempt(Birth::new(5));
        assert!(
            l.on_status(&old).is_none(),
            "retained from before the birth"
        );
        let birth = l.birth().expect("a birth").online();
        assert!(l.on_status(&birth).is_none());
        assert_eq!(l.on_status(&old).map(|b| b.session), Some(5));
        assert!(l.on_status(&old).is_none(), "once, until the birth is back");
        assert!(l.on_status(&birth).is_none());
        assert!(l.on_status(&will(&Birth::new(5))).is_none(), "its own will");
        l.attempt(Birth::new(6));
        assert!(l.on_status(&old).is_none(), "a new connection starts over");
    }
}
