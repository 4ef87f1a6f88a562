//! The topic tree under `<topic_prefix>/<device_id>`.

/// Builds every topic of one device.
#[derive(Debug, Clone)]
pub struct Topics {
    base: String,
}

impl Topics {
    pub fn new(prefix: &str, device_id: &str) -> Self {
        Topics {
            base: format!("{prefix}/{device_id}"),
        }
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
}
