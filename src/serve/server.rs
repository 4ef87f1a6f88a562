//! The local RTSP server (gst-rtsp-server): one mount per served stream, optional
//! users (basic and/or digest), optional RTSPS, a limit on clients. It runs its own GLib
//! main loop on a thread of its own; stopping closes every client and ends the loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gstreamer::glib;
use gstreamer_rtsp_server as rtsp;
use rtsp::prelude::*;
use tracing::{info, warn};

use super::connections::Connections;
use super::factory::StreamFactory;
use super::registry::Registry;
use super::{ServeError, Serving};
use crate::config::{AuthMethods, ServerConfig, User};

/// The role every configured user (or, without users, every client) has.
const ROLE: &str = "viewer";

/// A running server.
pub struct RtspServer {
    main_loop: glib::MainLoop,
    context: glib::MainContext,
    server: rtsp::RTSPServer,
    thread: Option<std::thread::JoinHandle<()>>,
    port: u16,
}

impl RtspServer {
    /// Binds `config.rtsp_listen`; streams are served as they are offered to the
    /// returned [`Serving`].
    pub fn start(
        config: &ServerConfig,
        users: &[User],
    ) -> Result<(RtspServer, Serving), ServeError> {
        let addr = config
            .rtsp_addr()
            .ok_or_else(|| ServeError::Config("server.rtsp_listen is not set".into()))?;
        let server = rtsp::RTSPServer::new();
        server.set_address(&addr.ip().to_string());
        server.set_service(&addr.port().to_string());
        let auth = auth(config, users)?;
        if let Some(auth) = &auth {
            server.set_auth(Some(auth));
        }
        let mounts = server
            .mount_points()
            .ok_or_else(|| ServeError::Start("the server has no mount points".into()))?;
        let connections = Connections::default();
        let mounts = Mounts {
            mounts,
            roles: auth.is_some(),
            connections: connections.clone(),
        };
        let context = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&context), false);
        server
            .attach(Some(&context))
            .map_err(|e| ServeError::Start(format!("cannot listen on {addr}: {e}")))?;
        let port = u16::try_from(server.bound_port()).unwrap_or(addr.port());
        watch_clients(&server, config.max_clients, connections, port);
        let thread = {
            let (main_loop, context) = (main_loop.clone(), context.clone());
            std::thread::Builder::new()
                .name("rtsp-server".into())
                .spawn(move || {
                    let _ = context.with_thread_default(|| main_loop.run());
                })
                .map_err(|e| ServeError::Start(format!("cannot start the server thread: {e}")))?
        };
        info!(address = %addr, port, auth = auth.is_some(), tls = config.tls(), "RTSP server listening");
        let serving = Serving {
            registry: Arc::new(Registry::default()),
            mounts,
            listen: std::net::SocketAddr::new(addr.ip(), port),
            tls: config.tls(),
        };
        Ok((
            RtspServer {
                main_loop,
                context,
                server,
                thread: Some(thread),
                port,
            },
            serving,
        ))
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes every client and ends the main loop, waiting for it at most `bound`.
    /// Blocking.
    pub fn stop(mut self, bound: Duration) {
        let (server, main_loop) = (self.server.clone(), self.main_loop.clone());
        self.context.invoke(move || {
            server.client_filter(Some(&mut |_, _| rtsp::RTSPFilterResult::Remove));
            main_loop.quit();
        });
        if let Some(thread) = self.thread.take() {
            let deadline = std::time::Instant::now() + bound;
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                warn!("RTSP server slow to stop; leaving it behind");
            }
        }
    }
}

/// The server's mount points, as streams are offered and withdrawn.
#[derive(Clone)]
pub(super) struct Mounts {
    mounts: rtsp::RTSPMountPoints,
    /// Clients must have the viewer role (the server authenticates).
    roles: bool,
    connections: Connections,
}

impl Mounts {
    pub fn mount(&self, id: &str, registry: &Arc<Registry>) {
        let factory = StreamFactory::new(id, registry.clone(), self.connections.clone());
        if self.roles {
            factory.add_role_from_structure(
                &gstreamer::Structure::builder(ROLE)
                    .field(rtsp::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                    .field(rtsp::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                    .build(),
            );
        }
        self.mounts.add_factory(&format!("/{id}"), factory);
    }

    pub fn unmount(&self, id: &str) {
        self.mounts.remove_factory(&format!("/{id}"));
    }
}

/// Users (basic and/or digest) and TLS; `None` when neither is configured.
fn auth(config: &ServerConfig, users: &[User]) -> Result<Option<rtsp::RTSPAuth>, ServeError> {
    if users.is_empty() && !config.tls() {
        return Ok(None);
    }
    let auth = rtsp::RTSPAuth::new();
    let token = rtsp::RTSPToken::builder()
        .field(rtsp::RTSP_TOKEN_MEDIA_FACTORY_ROLE, ROLE)
        .build();
    if users.is_empty() {
        // RTSPS without users: every client may watch.
        auth.set_default_token(Some(&mut token.clone()));
    } else {
        use rtsp::gst_rtsp::RTSPAuthMethod;
        for user in users {
            match config.auth {
                AuthMethods::Basic => {
                    let basic = rtsp::RTSPAuth::make_basic(&user.name, &user.password);
                    auth.add_basic(&basic, &token);
                }
                AuthMethods::Digest => auth.add_digest(&user.name, &user.password, &token),
            }
        }
        auth.set_supported_methods(match config.auth {
            AuthMethods::Basic => RTSPAuthMethod::Basic,
            AuthMethods::Digest => RTSPAuthMethod::Digest,
        });
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
        let cert = rtsp::gio::TlsCertificate::from_files(cert, key)
            .map_err(|e| ServeError::Config(format!("server.tls_cert_file: {e}")))?;
        auth.set_tls_certificate(Some(&cert));
        auth.set_tls_authentication_mode(rtsp::gio::TlsAuthenticationMode::None);
    }
    Ok(Some(auth))
}

/// Notes each client's connection as it is accepted on `port`, and refuses clients
/// beyond `max` at once (closes them as they connect).
fn watch_clients(server: &rtsp::RTSPServer, max: u32, connections: Connections, port: u16) {
    let connected = Arc::new(AtomicU32::new(0));
    server.connect_client_connected(move |_, client| {
        if connected.fetch_add(1, Ordering::Relaxed) >= max {
            // Not counted, not watched: a client closed while it is being connected is
            // not reported closed.
            connected.fetch_sub(1, Ordering::Relaxed);
            warn!(max, "RTSP client refused: server.max_clients reached");
            client.close();
            return;
        }
        connections.accepted(client, port);
        // A client that reads slower than the stream fills its own media's queue, where
        // its feed drops whole frames to the next keyframe (the server's own backlog
        // would drop RTP packets, leaving broken frames).
        client.set_drop_backlog(false);
        let (count, connections) = (connected.clone(), connections.clone());
        client.connect_closed(move |client| {
            count.fetch_sub(1, Ordering::Relaxed);
            connections.closed(client);
        });
    });
}
