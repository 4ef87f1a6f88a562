//! What the device subscribes to: its own, its groups' and the fleet's commands and
//! desired configuration, its own status, Home Assistant's status; on every connection
//! (a session the broker lost has none), and again for the groups when they change.

use rumqttc::{AsyncClient, QoS};
use tracing::info;

use super::desired::Layer;
use super::publisher::Publisher;
use super::topics::Audience;

/// Subscribes on every connection (a session the broker lost has no subscriptions): the
/// device's, its groups' and the fleet's commands and desired configuration, its own
/// status (to overwrite a stale death), and Home Assistant's status.
pub fn subscribe(client: &AsyncClient, p: &Publisher, groups: &[String]) {
    for topic in [
        p.topics.commands(),
        p.topics.audience_commands(&Audience::Fleet),
        p.topics.desired(&Layer::Device),
        p.topics.desired(&Layer::Fleet),
        p.topics.status(),
    ] {
        let _ = client.try_subscribe(topic, QoS::AtLeastOnce);
    }
    for g in groups {
        subscribe_group(client, p, g);
    }
    if p.ha_enabled() {
        let _ = client.try_subscribe(p.ha_status_topic(), QoS::AtLeastOnce);
    }
}

fn group_topics(p: &Publisher, group: &str) -> [String; 2] {
    [
        p.topics
            .audience_commands(&Audience::Group(group.to_owned())),
        p.topics.desired(&Layer::Group(group.to_owned())),
    ]
}

fn subscribe_group(client: &AsyncClient, p: &Publisher, group: &str) {
    for topic in group_topics(p, group) {
        let _ = client.try_subscribe(topic, QoS::AtLeastOnce);
    }
}

/// The groups changed: subscribes to the new ones' topics and leaves the old ones'.
pub fn regroup(client: &AsyncClient, p: &Publisher, subscribed: &mut Vec<String>, now: &[String]) {
    if subscribed.as_slice() == now {
        return;
    }
    for g in subscribed.iter().filter(|g| !now.contains(g)) {
        for topic in group_topics(p, g) {
            let _ = client.try_unsubscribe(topic);
        }
    }
    for g in now.iter().filter(|g| !subscribed.contains(g)) {
        subscribe_group(client, p, g);
    }
    info!(groups = ?now, "MQTT: groups changed");
    *subscribed = now.to_vec();
}
