//! A small tokio driver for [`Session`]: connect/accept over any `AsyncRead + AsyncWrite`,
//! channels as byte streams, global requests as futures.
//!
//! Two tasks own the stream halves: the reader feeds received bytes to the session and
//! dispatches its events; the writer sends what the session produced. Application tasks call
//! into the session under a short mutex (never held across an await) and wake the writer.

mod channel;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::channel::ChannelId;
use crate::config::{ClientConfig, PasswordCheck, ServerConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::PublicKey;
use crate::session::{Event, RequestId, Session};
use crate::wire::WriteExt;

pub use channel::Channel;

/// Above this many unsent bytes, channel writers wait for the writer task to catch up.
const TX_HIGH_WATER: usize = 1024 * 1024;
/// Socket read sizes: the first, and the most a busy connection grows to.
const MIN_READ: usize = 16 * 1024;
const MAX_READ: usize = 256 * 1024;
/// How long the last writes (a DISCONNECT) may take once the connection is closing.
const CLOSE_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Inbound channel opens and global requests queued for the application; more are refused.
const INCOMING_QUEUE: usize = 256;

/// Something the peer asked of us.
#[derive(Debug)]
#[non_exhaustive]
pub enum Incoming {
    /// The peer wants to open a channel.
    Channel(IncomingChannel),
    /// The peer sent a global request.
    GlobalRequest(IncomingRequest),
}

struct Inner {
    session: Session,
    read_wakers: HashMap<ChannelId, Waker>,
    write_wakers: HashMap<ChannelId, Waker>,
    tx_wakers: Vec<Waker>,
    open_waiters: HashMap<ChannelId, oneshot::Sender<Result<()>>>,
    reply_waiters: HashMap<RequestId, oneshot::Sender<(bool, Vec<u8>)>>,
    auth_waiter: Option<oneshot::Sender<Result<()>>>,
    incoming: Option<mpsc::Sender<Incoming>>,
    /// Why the connection ended, once it has.
    closed: Option<(ErrorKind, String)>,
    closed_tx: watch::Sender<Option<(ErrorKind, String)>>,
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the writer task: there is something to send, or the connection closed.
    writer: Notify,
    closed_rx: watch::Receiver<Option<(ErrorKind, String)>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug; the state is still consistent enough
        // to close down, so recover rather than propagate the poison.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the session, then dispatches the events it produced and wakes the writer.
    pub(crate) fn with<T>(self: &Arc<Self>, f: impl FnOnce(&mut Session) -> T) -> T {
        let mut inner = self.lock();
        let r = f(&mut inner.session);
        self.after(&mut inner);
        r
    }

    fn after(self: &Arc<Self>, inner: &mut Inner) {
        dispatch(self, inner);
        if inner.session.pending_transmit() > 0 || inner.session.is_closed() {
            self.writer.notify_one();
        }
    }
}

fn close_inner(inner: &mut Inner, kind: ErrorKind, why: String) {
    if inner.closed.is_some() {
        return;
    }
    inner.closed = Some((kind, why.clone()));
    let _ = inner.closed_tx.send(Some((kind, why)));
    for (_, w) in inner.read_wakers.drain() {
        w.wake();
    }
    for (_, w) in inner.write_wakers.drain() {
        w.wake();
    }
    for w in inner.tx_wakers.drain(..) {
        w.wake();
    }
    for (_, tx) in inner.open_waiters.drain() {
        let _ = tx.send(Err(Error::ConnectionClosed));
    }
    inner.reply_waiters.clear();
    inner.incoming = None;
}

/// Queues an item for the application, or hands it back when nobody listens or the queue is
/// full.
fn offer(inner: &Inner, item: Incoming) -> std::result::Result<(), Incoming> {
    match &inner.incoming {
        Some(tx) => tx
            .try_send(item)
            .map_err(mpsc::error::TrySendError::into_inner),
        None => Err(item),
    }
}

/// Marks an item as answered so its `Drop` does not take the lock we already hold.
fn defuse(item: Incoming) {
    match item {
        Incoming::Channel(mut c) => c.decided = true,
        Incoming::GlobalRequest(mut r) => r.answered = true,
    }
}

fn dispatch(shared: &Arc<Shared>, inner: &mut Inner) {
    while let Some(ev) = inner.session.poll_event() {
        match ev {
            Event::HandshakeDone { .. } | Event::Banner(_) | Event::Rekeyed => {}
            Event::Authenticated { .. } => {
                if let Some(tx) = inner.auth_waiter.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            Event::ChannelReadable(id) | Event::ChannelClosed(id) => {
                if let Some(w) = inner.read_wakers.remove(&id) {
                    w.wake();
                }
                if let Some(w) = inner.write_wakers.remove(&id) {
                    w.wake();
                }
            }
            Event::ChannelWritable(id) => {
                if let Some(w) = inner.write_wakers.remove(&id) {
                    w.wake();
                }
            }
            Event::ChannelOpened { id, .. } => {
                if let Some(tx) = inner.open_waiters.remove(&id) {
                    let _ = tx.send(Ok(()));
                }
            }
            Event::ChannelOpenFailed {
                id,
                reason,
                description,
            } => {
                if let Some(tx) = inner.open_waiters.remove(&id) {
                    let _ = tx.send(Err(Error::ChannelOpenFailed {
                        reason,
                        description,
                    }));
                }
            }
            Event::ChannelOpenRequest { id, kind, extra } => {
                let item = Incoming::Channel(IncomingChannel {
                    shared: Arc::clone(shared),
                    id,
                    kind,
                    extra,
                    decided: false,
                });
                if let Err(item) = offer(inner, item) {
                    defuse(item);
                    let _ = inner.session.reject_channel(
                        id,
                        crate::msg::open_failure::RESOURCE_SHORTAGE,
                        "busy",
                    );
                }
            }
            Event::GlobalRequest {
                id,
                name,
                want_reply,
                data,
            } => {
                let item = Incoming::GlobalRequest(IncomingRequest {
                    shared: Arc::clone(shared),
                    id,
                    name,
                    want_reply,
                    data,
                    answered: false,
                });
                if let Err(item) = offer(inner, item) {
                    defuse(item);
                    if want_reply {
                        let _ = inner.session.reply_global_request(id, false, &[]);
                    }
                }
            }
            Event::GlobalReply { id, success, data } => {
                if let Some(tx) = inner.reply_waiters.remove(&id) {
                    let _ = tx.send((success, data));
                }
            }
        }
    }
    if inner.session.pending_transmit() < TX_HIGH_WATER {
        for w in inner.tx_wakers.drain(..) {
            w.wake();
        }
    }
    if inner.session.is_closed() {
        fail(inner, Error::ConnectionClosed);
    }
}

/// Ends the connection because of `err`: the handshake waiter (if any) gets the error itself,
/// everyone else learns its kind and text.
fn fail(inner: &mut Inner, err: Error) {
    let (kind, text) = (err.kind(), err.to_string());
    if let Some(tx) = inner.auth_waiter.take() {
        let _ = tx.send(Err(err));
    }
    close_inner(inner, kind, text);
}

/// An established, authenticated SSH connection. Dropping it disconnects.
#[derive(Debug)]
pub struct Connection {
    handle: Handle,
    incoming: mpsc::Receiver<Incoming>,
    tasks: [JoinHandle<()>; 2],
}

/// A cloneable handle for opening channels and sending requests on a [`Connection`].
#[derive(Debug, Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.handle.disconnect();
        // The writer sends the DISCONNECT and exits; the reader would wait for the peer.
        self.tasks[0].abort();
    }
}

/// Connects as a client over `stream` and authenticates. Wrap it in a timeout: a silent peer
/// makes it wait forever.
pub async fn connect<S>(stream: S, config: ClientConfig) -> Result<Connection>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let session = Session::client(config, Instant::now())?;
    start(stream, session).await
}

/// Accepts a client over `stream` and waits until it authenticates. Wrap it in a timeout (a
/// Psiphon server allows 30 s): a client that never finishes makes it wait forever.
pub async fn accept<S>(
    stream: S,
    config: ServerConfig,
    check_password: PasswordCheck,
) -> Result<Connection>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let session = Session::server(config, check_password, Instant::now())?;
    start(stream, session).await
}

async fn start<S>(stream: S, session: Session) -> Result<Connection>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (auth_tx, auth_rx) = oneshot::channel();
    let (in_tx, in_rx) = mpsc::channel(INCOMING_QUEUE);
    let (closed_tx, closed_rx) = watch::channel(None);
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            session,
            read_wakers: HashMap::new(),
            write_wakers: HashMap::new(),
            tx_wakers: Vec::new(),
            open_waiters: HashMap::new(),
            reply_waiters: HashMap::new(),
            auth_waiter: Some(auth_tx),
            incoming: Some(in_tx),
            closed: None,
            closed_tx,
        }),
        writer: Notify::new(),
        closed_rx,
    });
    let (rd, wr) = tokio::io::split(stream);
    let reader = tokio::spawn(read_loop(Arc::clone(&shared), rd));
    let writer = tokio::spawn(write_loop(Arc::clone(&shared), wr));
    shared.writer.notify_one();
    let conn = Connection {
        handle: Handle { shared },
        incoming: in_rx,
        tasks: [reader, writer],
    };
    match auth_rx.await {
        Ok(Ok(())) => Ok(conn),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::ClosedDuring("handshake")),
    }
}

async fn read_loop<R: AsyncRead>(shared: Arc<Shared>, rd: R) {
    tokio::pin!(rd);
    // Start small (an idle tunnel should cost little) and grow while reads fill the buffer:
    // bulk transfers then take 256 KiB per wake-up, which measured ~20 % faster than 64 KiB.
    let mut buf = vec![0u8; MIN_READ];
    loop {
        let deadline = shared.lock().session.poll_timeout();
        let read = async {
            match deadline {
                Some(d) => {
                    tokio::select! {
                        r = rd.read(&mut buf) => Some(r),
                        () = tokio::time::sleep_until(d.into()) => None,
                    }
                }
                None => Some(rd.read(&mut buf).await),
            }
        };
        let result = read.await;
        let mut inner = shared.lock();
        if inner.closed.is_some() {
            return;
        }
        match result {
            None => {
                if let Err(e) = inner.session.handle_timeout(Instant::now()) {
                    fail(&mut inner, e);
                }
            }
            Some(Ok(0)) => {
                let during = if inner.session.is_authenticated() {
                    "session"
                } else {
                    "handshake"
                };
                fail(&mut inner, Error::ClosedDuring(during));
                shared.writer.notify_one();
                return;
            }
            Some(Ok(n)) => {
                if let Err(e) = inner.session.feed(&buf[..n], Instant::now()) {
                    fail(&mut inner, e);
                }
                if n == buf.len() && buf.len() < MAX_READ {
                    buf.resize(buf.len() * 2, 0);
                }
            }
            Some(Err(e)) => {
                fail(
                    &mut inner,
                    Error::Io {
                        during: "read",
                        source: e,
                    },
                );
                shared.writer.notify_one();
                return;
            }
        }
        shared.after(&mut inner);
        if inner.closed.is_some() {
            return;
        }
    }
}

async fn write_loop<W: AsyncWrite>(shared: Arc<Shared>, wr: W) {
    tokio::pin!(wr);
    let mut out = Vec::new();
    loop {
        let (finished, closing) = {
            let mut inner = shared.lock();
            inner.session.take_transmit(&mut out);
            if inner.session.pending_transmit() < TX_HIGH_WATER {
                for w in inner.tx_wakers.drain(..) {
                    w.wake();
                }
            }
            let closing = inner.closed.is_some() || inner.session.is_closed();
            (out.is_empty() && closing, closing)
        };
        if finished {
            let _ = wr.shutdown().await;
            let mut inner = shared.lock();
            close_inner(&mut inner, ErrorKind::Local, "closed".to_owned());
            return;
        }
        if out.is_empty() {
            shared.writer.notified().await;
            continue;
        }
        // The whole buffer goes in one write call: the OSSH layer below needs a NEWKEYS packet
        // and everything before it to arrive together.
        let write = async {
            wr.write_all(&out).await?;
            wr.flush().await
        };
        // Once closing, a peer that stops reading must not pin this task (and the socket).
        let r = if closing {
            tokio::time::timeout(CLOSE_WRITE_TIMEOUT, write)
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        } else {
            write.await
        };
        if let Err(e) = r {
            fail(
                &mut shared.lock(),
                Error::Io {
                    during: "write",
                    source: e,
                },
            );
            return;
        }
    }
}

impl Connection {
    /// A handle for opening channels and sending requests.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The next channel open or global request from the peer; `None` once the connection has
    /// closed. Items not taken are refused when the queue is full.
    pub async fn next_incoming(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
    }

    /// Waits until the connection has closed; returns why.
    pub async fn closed(&self) -> Error {
        self.handle.closed().await
    }
}

impl Handle {
    /// The server's host key.
    pub fn host_key(&self) -> Option<PublicKey> {
        self.shared.lock().session.host_key().cloned()
    }

    /// The peer's identification line.
    pub fn peer_version(&self) -> Option<String> {
        self.shared
            .lock()
            .session
            .peer_version()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Opens a channel and waits for the peer to confirm it.
    pub async fn open_channel(&self, kind: &str, extra: &[u8]) -> Result<Channel> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut inner = self.shared.lock();
            if inner.closed.is_some() {
                return Err(Error::ConnectionClosed);
            }
            let id = inner.session.open_channel(kind, extra)?;
            inner.open_waiters.insert(id, tx);
            self.shared.after(&mut inner);
            id
        };
        // If this future is dropped before the answer, the channel must still be closed.
        let guard = channel::OpenGuard::new(Arc::clone(&self.shared), id);
        match rx.await {
            Ok(Ok(())) => Ok(guard.into_channel()),
            Ok(Err(e)) => {
                guard.forget();
                Err(e)
            }
            Err(_) => {
                guard.forget();
                Err(Error::ConnectionClosed)
            }
        }
    }

    /// Opens a `direct-tcpip` channel to `host:port` (the server resolves names).
    pub async fn open_direct_tcpip(&self, host: &str, port: u16) -> Result<Channel> {
        self.open_channel(
            crate::msg::channel_type::DIRECT_TCPIP,
            &direct_tcpip_extra(host, port),
        )
        .await
    }

    /// Sends a global request and waits for the reply: `Some(data)` on success, `None` on
    /// failure.
    pub async fn global_request(&self, name: &str, data: &[u8]) -> Result<Option<Vec<u8>>> {
        let (tx, rx) = oneshot::channel();
        {
            let mut inner = self.shared.lock();
            if inner.closed.is_some() {
                return Err(Error::ConnectionClosed);
            }
            let id = inner.session.global_request(name, data, true)?;
            let id = id.ok_or(Error::Internal("request id"))?;
            inner.reply_waiters.insert(id, tx);
            self.shared.after(&mut inner);
        }
        match rx.await {
            Ok((true, data)) => Ok(Some(data)),
            Ok((false, _)) => Ok(None),
            Err(_) => Err(Error::ConnectionClosed),
        }
    }

    /// Sends a global request that wants no reply.
    pub fn send_global_request(&self, name: &str, data: &[u8]) -> Result<()> {
        let mut inner = self.shared.lock();
        if inner.closed.is_some() {
            return Err(Error::ConnectionClosed);
        }
        inner.session.global_request(name, data, false)?;
        self.shared.after(&mut inner);
        Ok(())
    }

    /// Starts a key re-exchange.
    pub fn rekey(&self) -> Result<()> {
        self.shared.with(|s| s.rekey(Instant::now()))
    }

    /// Sends a disconnect and closes the connection.
    pub fn disconnect(&self) {
        self.shared
            .with(|s| s.disconnect(crate::msg::disconnect::BY_APPLICATION, "bye"));
    }

    /// Waits until the connection has closed; returns why.
    pub async fn closed(&self) -> Error {
        let mut rx = self.shared.closed_rx.clone();
        let why = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        match why {
            Some((kind, reason)) => Error::Closed { kind, reason },
            None => Error::ConnectionClosed,
        }
    }
}

/// The type-specific data of a `direct-tcpip` open (RFC 4254 §7.2), with the originator
/// `0.0.0.0:0` as psiphon-tunnel-core sends.
pub fn direct_tcpip_extra(host: &str, port: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(host.len() + 24);
    p.put_string(host.as_bytes());
    p.put_u32(u32::from(port));
    p.put_string(b"0.0.0.0");
    p.put_u32(0);
    p
}

/// Parses `direct-tcpip` open data into `(host, port)`.
pub fn parse_direct_tcpip_extra(extra: &[u8]) -> Result<(String, u16)> {
    let mut r = crate::wire::Reader::new(extra);
    let host = r.utf8()?.to_owned();
    let port = u16::try_from(r.u32()?).map_err(|_| Error::protocol("port out of range"))?;
    Ok((host, port))
}

/// A channel the peer wants to open. Dropping it without a decision refuses it.
#[derive(Debug)]
pub struct IncomingChannel {
    shared: Arc<Shared>,
    id: ChannelId,
    kind: String,
    extra: Vec<u8>,
    decided: bool,
}

impl IncomingChannel {
    /// The channel type.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The type-specific data.
    pub fn extra(&self) -> &[u8] {
        &self.extra
    }

    /// Accepts the channel.
    pub fn accept(mut self) -> Result<Channel> {
        self.decided = true;
        self.shared.with(|s| s.accept_channel(self.id))?;
        Ok(Channel::new(Arc::clone(&self.shared), self.id))
    }

    /// Refuses the channel with an RFC 4254 reason code (see [`crate::msg::open_failure`]).
    pub fn reject(mut self, reason: u32, description: &str) {
        self.decided = true;
        let _ = self
            .shared
            .with(|s| s.reject_channel(self.id, reason, description));
    }
}

impl Drop for IncomingChannel {
    fn drop(&mut self) {
        if !self.decided {
            let id = self.id;
            let _ = self.shared.with(|s| {
                s.reject_channel(
                    id,
                    crate::msg::open_failure::ADMINISTRATIVELY_PROHIBITED,
                    "",
                )
            });
        }
    }
}

/// A global request from the peer. Dropping it without an answer answers failure.
#[derive(Debug)]
pub struct IncomingRequest {
    shared: Arc<Shared>,
    id: RequestId,
    name: String,
    want_reply: bool,
    data: Vec<u8>,
    answered: bool,
}

impl IncomingRequest {
    /// The request name, e.g. `psiphon-handshake`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The request-specific data.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Whether the peer waits for a reply.
    pub fn want_reply(&self) -> bool {
        self.want_reply
    }

    /// Answers the request (ignored when the peer wants no reply).
    pub fn reply(mut self, success: bool, data: &[u8]) {
        self.answered = true;
        if self.want_reply {
            let _ = self
                .shared
                .with(|s| s.reply_global_request(self.id, success, data));
        }
    }
}

impl Drop for IncomingRequest {
    fn drop(&mut self) {
        if !self.answered && self.want_reply {
            let id = self.id;
            let _ = self.shared.with(|s| s.reply_global_request(id, false, &[]));
        }
    }
}
