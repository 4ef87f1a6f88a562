//! Everything the MQTT service publishes or acknowledges goes through here, in order.
//! The client's request channel is bounded; what it cannot take now waits here instead
//! of being dropped, so a burst of commands never loses a reply. Incoming QoS 1 commands
//! are acknowledged only once their reply has been handed to the client, in the order
//! they arrived: the broker then sends no more than its in-flight window, which is the
//! back-pressure on a flood. While the link is backed up, telemetry (health, statistics)
//! is skipped and events wait in their own bounded queue.

use std::collections::VecDeque;

use rumqttc::{AsyncClient, ClientError, Publish, QoS, Request};

/// Telemetry is skipped while more than this many messages wait.
const TELEMETRY_BACKLOG: usize = 64;
/// Events stay in their own bounded queue while more than this many messages wait, so
/// that replies go first and a flood of commands cannot grow the outbox with events.
pub const EVENT_BACKLOG: usize = 256;
/// Above this many waiting messages new commands are answered `busy` instead of run: a
/// bound on memory under a flood the broker does not throttle (QoS 0 commands).
pub const BUSY_BACKLOG: usize = 10_000;

/// An incoming QoS 1 message whose acknowledgement waits for its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckToken(u64);

#[derive(Debug)]
enum Item {
    Publish {
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
    },
    Ack(Publish),
}

#[derive(Debug)]
struct Held {
    token: u64,
    /// Carries the packet id and QoS the acknowledgement needs (no payload).
    publish: Publish,
    done: bool,
}

#[derive(Debug, Default)]
pub struct Outbox {
    items: VecDeque<Item>,
    held: VecDeque<Held>,
    next_token: u64,
}

impl Outbox {
    /// Queues a message that must go out.
    pub fn publish(&mut self, topic: String, payload: Vec<u8>, qos: QoS, retain: bool) {
        self.items.push_back(Item::Publish {
            topic,
            payload,
            qos,
            retain,
        });
    }

    /// Queues a telemetry message unless the link is backed up; returns whether it was
    /// queued.
    pub fn telemetry(&mut self, topic: String, payload: Vec<u8>) -> bool {
        if self.items.len() > TELEMETRY_BACKLOG {
            return false;
        }
        // Retained, so that a controller that subscribes sees the latest at once.
        self.publish(topic, payload, QoS::AtMostOnce, true);
        true
    }

    /// Holds the acknowledgement of an incoming message until [`Self::release`]; `None`
    /// for QoS 0, which is not acknowledged.
    pub fn hold(&mut self, incoming: &Publish) -> Option<AckToken> {
        if incoming.qos == QoS::AtMostOnce {
            return None;
        }
        let token = self.next_token;
        self.next_token += 1;
        let mut publish = Publish::new("", incoming.qos, Vec::new());
        publish.pkid = incoming.pkid;
        self.held.push_back(Held {
            token,
            publish,
            done: false,
        });
        Some(AckToken(token))
    }

    /// The message is handled (its reply queued): its acknowledgement, and those of
    /// later messages already handled, follow in arrival order.
    pub fn release(&mut self, token: Option<AckToken>) {
        let Some(AckToken(token)) = token else {
            return;
        };
        if let Some(h) = self.held.iter_mut().find(|h| h.token == token) {
            h.done = true;
        }
        while self.held.front().is_some_and(|h| h.done) {
            if let Some(h) = self.held.pop_front() {
                self.items.push_back(Item::Ack(h.publish));
            }
        }
    }

    /// Whether the acknowledgement of `token` still waits (its message, or an earlier
    /// one, is not handled yet).
    pub fn is_held(&self, token: AckToken) -> bool {
        self.held.iter().any(|h| h.token == token.0)
    }

    /// The connection is gone: the broker will send unacknowledged messages again, and
    /// acknowledgements of the old connection's packet ids must not be sent.
    pub fn connection_lost(&mut self) {
        self.held.clear();
        self.items.retain(|i| matches!(i, Item::Publish { .. }));
    }

    /// Hands waiting items to the client, in order, while it takes them.
    pub fn drain(&mut self, client: &AsyncClient) {
        while let Some(item) = self.items.pop_front() {
            if let Err(back) = send(client, item) {
                self.items.push_front(back);
                return;
            }
        }
    }

    /// Messages waiting for the client.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Hands one item to the client; gives it back when the request channel is full. A
/// topic the client would refuse whatever its state is dropped with a warning rather
/// than retried for ever.
fn send(client: &AsyncClient, item: Item) -> Result<(), Item> {
    match item {
        Item::Publish { topic, .. } if !valid_topic(&topic) => {
            tracing::warn!(
                topic_bytes = topic.len(),
                "MQTT message with an invalid topic dropped"
            );
            Ok(())
        }
        Item::Publish {
            topic,
            payload,
            qos,
            retain,
        } => match client.try_publish(topic, qos, retain, payload) {
            Ok(()) => Ok(()),
            Err(
                ClientError::TryRequest(Request::Publish(p))
                | ClientError::Request(Request::Publish(p)),
            ) => Err(Item::Publish {
                topic: p.topic,
                payload: Vec::from(p.payload),
                qos: p.qos,
                retain: p.retain,
            }),
            // try_publish only ever hands back the publish it was given.
            Err(_) => Ok(()),
        },
        Item::Ack(p) => client.try_ack(&p).map_err(|_| Item::Ack(p)),
    }
}

/// A topic a PUBLISH may carry: not empty, no wildcard or NUL, length fits 16 bits.
fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= usize::from(u16::MAX) && !topic.contains(['+', '#', '\0'])
}

#[cfg(test)]
mod tests {
    use rumqttc::MqttOptions;

    use super::*;

    fn incoming(pkid: u16, qos: QoS) -> Publish {
        let mut p = Publish::new("edgecam/x/cmd/ping", qos, b"{}".to_vec());
        p.pkid = pkid;
        p
    }

    #[test]
    fn nothing_is_dropped_when_the_client_is_full_and_acks_follow_replies_in_order() {
        // A client whose channel holds 2 requests and whose event loop never runs.
        let (client, _eventloop) = AsyncClient::new(MqttOptions::new("t", "127.0.0.1", 1), 2);
        let mut o = Outbox::default();
        let a = o.hold(&incoming(1, QoS::AtLeastOnce));
        let b = o.hold(&incoming(2, QoS::AtLeastOnce));
        assert_eq!(o.hold(&incoming(0, QoS::AtMostOnce)), None);
        // The second command finishes first: its ack waits for the first one's.
        o.publish("r/2".into(), b"two".to_vec(), QoS::AtLeastOnce, false);
        o.release(b);
        assert_eq!(o.len(), 1, "ack 2 held back behind message 1");
        o.publish("r/1".into(), b"one".to_vec(), QoS::AtLeastOnce, false);
        assert!(
            o.is_held(b.expect("QoS 1 is held")),
            "released but behind message 1"
        );
        o.release(a);
        assert!(!o.is_held(b.expect("QoS 1 is held")));
        assert_eq!(o.len(), 4);
        o.drain(&client);
        assert_eq!(o.len(), 2, "the client took what fits");
        o.drain(&client);
        assert_eq!(o.len(), 2, "still waiting, not dropped");
        for _ in 0..TELEMETRY_BACKLOG {
            o.publish("r".into(), Vec::new(), QoS::AtLeastOnce, false);
        }
        assert!(
            !o.telemetry("h".into(), Vec::new()),
            "telemetry skipped when backed up"
        );
    }

    #[test]
    fn invalid_topics_are_dropped_not_retried() {
        let (client, _eventloop) = AsyncClient::new(MqttOptions::new("t", "127.0.0.1", 1), 8);
        let mut o = Outbox::default();
        o.publish("a/+/b".into(), Vec::new(), QoS::AtLeastOnce, false);
        o.publish("x".repeat(70_000), Vec::new(), QoS::AtLeastOnce, false);
        o.publish("ok".into(), Vec::new(), QoS::AtLeastOnce, false);
        o.drain(&client);
        assert!(o.is_empty());
    }

    #[test]
    fn a_lost_connection_forgets_acks_but_keeps_messages() {
        let mut o = Outbox::default();
        let t = o.hold(&incoming(9, QoS::AtLeastOnce));
        o.publish("r".into(), Vec::new(), QoS::AtLeastOnce, false);
        o.release(t);
        assert_eq!(o.len(), 2);
        o.connection_lost();
        assert_eq!(o.len(), 1);
    }
}
