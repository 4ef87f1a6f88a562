//! The topic tree under `<topic_prefix>/<device_id>`, and the group and fleet-wide
//! topics under `<topic_prefix>/groups/<group>` and `<topic_prefix>/fleet` that a device
//! also takes commands and desired configuration from (docs/fleet.md).

use super::desired::Layer;

/// Builds every topic of one device.
#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
    base: String,
}

/// Who a command was sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    Device,
    Group(String),
    Fleet,
}

impl Topics {
    pub fn new(prefix: &str, device_id: &str) -> Self {
        Topics {
            prefix: prefix.to_owned(),
            base: format!("{prefix}/{device_id}"),
        }
    }

    /// The plain `online`/`offline` topic.
    pub fn availability(&self) -> String {
        format!("{}/availability", self.base)
    }

    /// Where the desired configuration of `layer` is.
    pub fn desired(&self, layer: &Layer) -> String {
        match layer {
            Layer::Device => format!("{}/config/desired", self.base),
            Layer::Group(g) => format!("{}/groups/{g}/config/desired", self.prefix),
            Layer::Fleet => format!("{}/fleet/config/desired", self.prefix),
        }
    }

    pub fn reported(&self) -> String {
        format!("{}/config/reported", self.base)
    }

    /// The layer whose desired configuration `topic` is.
    pub fn desired_layer(&self, topic: &str) -> Option<Layer> {
        if topic.strip_prefix(&self.base) == Some("/config/desired") {
            return Some(Layer::Device);
        }
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        if rest == "fleet/config/desired" {
            return Some(Layer::Fleet);
        }
        let group = rest
            .strip_prefix("groups/")?
            .strip_suffix("/config/desired")?;
        (!group.is_empty() && !group.contains('/')).then(|| Layer::Group(group.to_owned()))
    }

    /// The subscriptions for the commands to a group or to the whole fleet.
    pub fn audience_commands(&self, audience: &Audience) -> String {
        match audience {
            Audience::Device => self.commands(),
            Audience::Group(g) => format!("{}/groups/{g}/cmd/+", self.prefix),
            Audience::Fleet => format!("{}/fleet/cmd/+", self.prefix),
        }
    }

    /// The command name of a topic under a `cmd/` of the device, one of its groups'
    /// (any group: membership is checked by the caller) or the fleet's, and who it was
    /// sent to.
    pub fn addressed_command<'a>(&self, topic: &'a str) -> Option<(&'a str, Audience)> {
        if let Some(name) = self.command_name(topic) {
            return Some((name, Audience::Device));
        }
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let (audience, name) = if let Some(name) = rest.strip_prefix("fleet/cmd/") {
            (Audience::Fleet, name)
        } else {
            let (group, name) = rest.strip_prefix("groups/")?.split_once("/cmd/")?;
            if group.is_empty() || group.contains('/') {
                return None;
            }
            (Audience::Group(group.to_owned()), name)
        };
        (!name.is_empty() && !name.contains('/')).then_some((name, audience))
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }

    pub fn info(&self) -> String {
        format!("{}/info", self.base)
    }

    pub fn health(&self) -> String {
        format!("{}/health", self.base)
    }

    pub fn events(&self) -> String {
        format!("{}/events", self.base)
    }

    pub fn stream(&self, id: &str, leaf: &str) -> String {
        format!("{}/streams/{id}/{leaf}", self.base)
    }

    /// The subscription for commands.
    pub fn commands(&self) -> String {
        format!("{}/cmd/+", self.base)
    }

    pub fn command(&self, name: &str) -> String {
        format!("{}/cmd/{name}", self.base)
    }

    pub fn reply(&self, name: &str) -> String {
        format!("{}/cmd/{name}/reply", self.base)
    }

    /// Where requests on a `cmd/` topic whose name cannot be a command are answered.
    pub fn invalid_reply(&self) -> String {
        format!("{}/cmd/_invalid/reply", self.base)
    }

    /// The command name of a topic under `cmd/`, if it is one.
    pub fn command_name<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let name = topic.strip_prefix(&self.base)?.strip_prefix("/cmd/")?;
        (!name.is_empty() && !name.contains('/')).then_some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree() {
        let t = Topics::new("edgecam", "bench-01");
        assert_eq!(t.status(), "edgecam/bench-01/status");
        assert_eq!(
            t.stream("cam0", "meta"),
            "edgecam/bench-01/streams/cam0/meta"
        );
        assert_eq!(t.commands(), "edgecam/bench-01/cmd/+");
        assert_eq!(t.reply("ping"), "edgecam/bench-01/cmd/ping/reply");
        assert_eq!(
            t.command_name("edgecam/bench-01/cmd/stream.bitrate"),
            Some("stream.bitrate")
        );
        assert_eq!(t.command_name("edgecam/bench-01/cmd/ping/reply"), None);
        assert_eq!(t.command_name("edgecam/other/cmd/ping"), None);
    }

    #[test]
    fn group_and_fleet_topics() {
        let t = Topics::new("edgecam", "bench-01");
        let g = Audience::Group("site-a".into());
        assert_eq!(t.audience_commands(&g), "edgecam/groups/site-a/cmd/+");
        assert_eq!(t.audience_commands(&Audience::Fleet), "edgecam/fleet/cmd/+");
        assert_eq!(
            t.addressed_command("edgecam/groups/site-a/cmd/ping"),
            Some(("ping", g.clone()))
        );
        assert_eq!(
            t.addressed_command("edgecam/fleet/cmd/config.set"),
            Some(("config.set", Audience::Fleet))
        );
        assert_eq!(
            t.addressed_command("edgecam/bench-01/cmd/ping"),
            Some(("ping", Audience::Device))
        );
        assert_eq!(
            t.addressed_command("edgecam/groups/site-a/cmd/ping/reply"),
            None
        );
        assert_eq!(t.addressed_command("edgecam/groups//cmd/ping"), None);
        assert_eq!(t.addressed_command("edgecam/fleet/cmd/"), None);
        for layer in [Layer::Device, Layer::Group("lobby".into()), Layer::Fleet] {
            assert_eq!(t.desired_layer(&t.desired(&layer)), Some(layer));
        }
        assert_eq!(t.desired(&Layer::Fleet), "edgecam/fleet/config/desired");
        assert_eq!(t.desired_layer("edgecam/other/config/desired"), None);
        assert_eq!(t.desired_layer("edgecam/groups/a/b/config/desired"), None);
        assert_eq!(t.reported(), "edgecam/bench-01/config/reported");
    }
}
