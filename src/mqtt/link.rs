//! The MQTT connection's own task: the only place the rumqttc event loop is polled. A
//! poll is never cancelled half-way (rumqttc's connect is not cancel-safe: a CONNECT
//! dropped before its CONNACK closes the connection and starts another), so the service
//! receives what happens over a channel instead of polling in its `select!`. Between
//! failed attempts the task waits as [`Reconnect`] says. Before every attempt it takes
//! the next session number and makes it the last will's ([`super::session`]).

use std::time::Duration;

use rumqttc::{Event, EventLoop, LastWill, Outgoing, Packet, QoS};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::birth::{self, Birth};
use super::reconnect::Reconnect;
use super::session::Sessions;

/// How long the connection is read after DISCONNECT went out, until the broker closes
/// it. Closing a socket with unread data in it (the broker's last acknowledgements)
/// resets the connection, and a reset makes the broker's kernel drop what it has not
/// read yet: the acknowledgement of the last command among it, which the broker would
/// then deliver again to the next session.
const LINGER: Duration = Duration::from_millis(300);

/// What the connection reports.
#[derive(Debug)]
pub enum Link {
    /// The next attempt's session: its birth is to carry it, as its will does.
    Session(Birth),
    Event(Event),
    /// An attempt failed or the connection was lost; the next attempt comes after
    /// `retry_in`.
    Lost {
        error: String,
        retry_in: Duration,
        attempt: u32,
    },
}

/// Polls `eventloop` until `stop` is cancelled, the receiver is gone, or a DISCONNECT
/// went out and the broker closed the connection (bounded by [`LINGER`]).
pub async fn run(
    mut eventloop: EventLoop,
    mut reconnect: Reconnect,
    mut sessions: Sessions,
    status_topic: String,
    tx: mpsc::Sender<Link>,
    stop: CancellationToken,
) {
    let mut attempt_next = true;
    loop {
        if std::mem::take(&mut attempt_next) {
            let birth = Birth::new(sessions.next());
            eventloop.mqtt_options.set_last_will(LastWill::new(
                &status_topic,
                birth::will(&birth),
                QoS::AtLeastOnce,
                true,
            ));
            if tx.send(Link::Session(birth)).await.is_err() {
                return;
            }
        }
        let polled = tokio::select! {
            _ = stop.cancelled() => return,
            polled = eventloop.poll() => polled,
        };
        match polled {
            Ok(event) => {
                if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                    reconnect.connected(Instant::now());
                }
                let done = matches!(event, Event::Outgoing(Outgoing::Disconnect));
                if done {
                    let _ = tokio::time::timeout(LINGER, async {
                        while eventloop.poll().await.is_ok() {}
                    })
                    .await;
                }
                if tx.send(Link::Event(event)).await.is_err() || done {
                    return;
                }
            }
            Err(e) => {
                attempt_next = true;
                let retry_in = reconnect.failed(Instant::now());
                let lost = Link::Lost {
                    error: e.to_string(),
                    retry_in,
                    attempt: reconnect.attempts(),
                };
                if tx.send(lost).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(retry_in) => {}
                }
            }
        }
    }
}
