//! The TCP connection of each client of the local server, found as the server accepts
//! it (gst-rtsp-server does not hand it out): what the served sessions' feeds measure
//! their clients by.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gstreamer::glib::object::ObjectType;
use gstreamer_rtsp_server as rtsp;

use crate::delivery::TcpSocket;

#[derive(Clone, Default)]
pub struct Connections(Arc<Mutex<HashMap<usize, Arc<TcpSocket>>>>);

fn key(client: &rtsp::RTSPClient) -> usize {
    client.as_ptr() as usize
}

impl Connections {
    /// `client` was just accepted on local `port` (called before the server accepts
    /// another).
    pub fn accepted(&self, client: &rtsp::RTSPClient, port: u16) {
        let Some(socket) = TcpSocket::accepted(port) else {
            tracing::debug!(port, "the accepted client's connection was not found");
            return;
        };
        if let Ok(mut map) = self.0.lock() {
            map.insert(key(client), Arc::new(socket));
        }
    }

    pub fn closed(&self, client: &rtsp::RTSPClient) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&key(client));
        }
    }

    pub fn get(&self, client: &rtsp::RTSPClient) -> Option<Arc<TcpSocket>> {
        self.0.lock().ok()?.get(&key(client)).cloned()
    }
}
