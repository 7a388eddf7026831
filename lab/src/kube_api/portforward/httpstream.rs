//! Port-forward over SPDY/3.1 streams, as kubelet serves it to kubectl (kubernetes
//! `staging/src/k8s.io/kubelet/pkg/cri/streaming/portforward/httpstream.go`, with moby/spdystream's
//! connection rules): for each local connection kubectl opens an `error` stream, then a `data`
//! stream, both with headers `streamtype`, `port` and `requestid`. The server replies to each
//! SYN_STREAM, pairs them by request id, and once both are there copies between the data stream
//! and a TCP connection to [`LabHooks::port_forward_target`]; a failure is reported as JSON on the
//! error stream. When the target closes, both streams get a FIN; a FIN from kubectl half-closes
//! the target; a reset drops it. PINGs from the client are echoed; GOAWAY ends the connection.

use super::spdy::{self, Frame, FrameReader, FrameWriter, Headers, FLAG_FIN};
use crate::kube_api::LabHooks;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Streams open at once on one connection (two per forwarded local connection), and pairs still
/// waiting for a stream: past either a new stream is refused, so a client cannot make the server
/// hold more.
const MAX_OPEN_STREAMS: usize = 64;
/// kubelet's default `StreamCreationTimeout`: how long an error stream waits for its data stream.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Data pieces queued towards one target before the connection waits for it.
const TARGET_QUEUE: usize = 4;

/// The pod whose ports are forwarded.
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub hooks: Arc<dyn LabHooks>,
}

impl Pod {
    fn describe(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What the connection tells a forward about its data stream.
enum ToTarget {
    Data(Bytes),
    /// kubectl closed its side: no more data.
    Fin,
}

enum StreamKind {
    Error,
    Data {
        /// Towards the target; taken by the forward once the pair is complete.
        to_target: mpsc::Sender<ToTarget>,
        pending: Option<mpsc::Receiver<ToTarget>>,
        forwarding: bool,
    },
}

struct OpenStream {
    request_id: String,
    kind: StreamKind,
}

#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    created: Option<Instant>,
}

/// Serves one upgraded connection until the client goes away or sends GOAWAY.
pub async fn serve<IO>(io: IO, pod: Pod)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read_half, write_half) = tokio::io::split(io);
    let (out, out_rx) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(write_frames(write_half, out_rx));
    // Frames are read by their own task: a half-read frame is never dropped by a `select!`.
    let (frames_tx, mut frames) = mpsc::channel::<Frame>(4);
    let reader = tokio::spawn(async move {
        let mut reader = FrameReader::new(read_half);
        loop {
            match reader.next().await {
                Ok(Some(frame)) => {
                    if frames_tx.send(frame).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(error) => {
                    tracing::debug!(%error, "port-forward: SPDY connection ends");
                    return;
                }
            }
        }
    });
    let (done_tx, mut done) = mpsc::channel::<(u32, u32)>(MAX_OPEN_STREAMS);
    let mut session = Session {
        pod: Arc::new(pod),
        out,
        done: done_tx,
        next_stream_id: 1,
        streams: HashMap::new(),
        pairs: HashMap::new(),
    };
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(Frame::GoAway { .. }) | None => break,
                Some(frame) => {
                    if session.on_frame(frame).await.is_err() {
                        break;
                    }
                }
            },
            Some((data, error)) = done.recv() => {
                session.streams.remove(&data);
                session.streams.remove(&error);
            }
            _ = sweep.tick() => {
                if session.expire_pairs().await.is_err() {
                    break;
                }
            }
        }
    }
    reader.abort();
    // Dropping the session drops every sender towards the targets: their forwards end, the
    // writer sends what they queued and closes.
    drop(session);
    let _ = writer.await;
}

async fn write_frames<W: AsyncWrite>(
    mut io: tokio::io::WriteHalf<W>,
    mut frames: mpsc::Receiver<Frame>,
) {
    let mut writer = FrameWriter::new();
    let mut bytes = Vec::new();
    while let Some(frame) = frames.recv().await {
        bytes.clear();
        if let Err(error) = writer.encode(&frame, &mut bytes) {
            tracing::debug!(%error, "port-forward: frame not encodable");
            continue;
        }
        if io.write_all(&bytes).await.is_err() || io.flush().await.is_err() {
            return;
        }
    }
    let _ = io.shutdown().await;
}

/// The writer is gone: the connection is over.
struct Closed;

struct Session {
    pod: Arc<Pod>,
    out: mpsc::Sender<Frame>,
    done: mpsc::Sender<(u32, u32)>,
    /// spdystream's `receivedStreamId`: a client stream id below it is a protocol error.
    next_stream_id: u32,
    streams: HashMap<u32, OpenStream>,
    pairs: HashMap<String, Pair>,
}

impl Session {
    async fn send(&self, frame: Frame) -> Result<(), Closed> {
        self.out.send(frame).await.map_err(|_| Closed)
    }

    async fn on_frame(&mut self, frame: Frame) -> Result<(), Closed> {
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => self.on_new_stream(stream_id, flags, &headers).await,
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let Some(OpenStream {
                    kind:
                        StreamKind::Data {
                            to_target,
                            forwarding,
                            ..
                        },
                    ..
                }) = self.streams.get(&stream_id)
                else {
                    // Data on an error stream (kubectl only closes it) or a gone stream.
                    return Ok(());
                };
                let mut messages = Vec::with_capacity(2);
                if !data.is_empty() {
                    messages.push(ToTarget::Data(data));
                }
                if flags & FLAG_FIN != 0 {
                    messages.push(ToTarget::Fin);
                }
                for message in messages {
                    if *forwarding {
                        // Waits while the target is slow: back-pressure, not buffering.
                        let _ = to_target.send(message).await;
                    } else if to_target.try_send(message).is_err() {
                        tracing::debug!(stream_id, "port-forward: data before its pair, dropped");
                    }
                }
                Ok(())
            }
            Frame::RstStream { stream_id, .. } => {
                // Dropping the sender without a FIN tells the forward to drop its target.
                self.streams.remove(&stream_id);
                Ok(())
            }
            // A ping from the client (odd id) is echoed; the server sends none of its own.
            Frame::Ping { id } if id % 2 == 1 => self.send(Frame::Ping { id }).await,
            _ => Ok(()),
        }
    }

    async fn on_new_stream(
        &mut self,
        stream_id: u32,
        flags: u8,
        headers: &Headers,
    ) -> Result<(), Closed> {
        if stream_id % 2 == 0 || stream_id < self.next_stream_id {
            return self
                .send(Frame::RstStream {
                    stream_id,
                    status: spdy::RST_PROTOCOL_ERROR,
                })
                .await;
        }
        self.next_stream_id = stream_id.saturating_add(2);
        // httpStreamReceived: a valid port and stream type, or the stream is reset.
        let port = headers
            .get("port")
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p > 0);
        let stream_type = headers.get("streamtype");
        let (Some(_), Some(stream_type @ ("error" | "data"))) = (port, stream_type) else {
            tracing::debug!(stream_id, ?headers, "port-forward: stream rejected");
            return self
                .send(Frame::RstStream {
                    stream_id,
                    status: spdy::RST_CANCEL,
                })
                .await;
        };
        // Older clients send no request id: kubelet derives one from the stream ids.
        let request_id = match headers.get("requestid").filter(|id| !id.is_empty()) {
            Some(id) => id.to_owned(),
            None if stream_type == "error" => stream_id.to_string(),
            None => i64::from(stream_id).saturating_sub(2).to_string(),
        };
        let new_pair = !self.pairs.contains_key(&request_id);
        if self.streams.len() >= MAX_OPEN_STREAMS
            || new_pair && self.pairs.len() >= MAX_OPEN_STREAMS
        {
            return self
                .send(Frame::RstStream {
                    stream_id,
                    status: spdy::RST_REFUSED_STREAM,
                })
                .await;
        }
        self.send(Frame::SynReply {
            stream_id,
            flags: 0,
            headers: Headers::default(),
        })
        .await?;
        let pair = self.pairs.entry(request_id.clone()).or_default();
        pair.created.get_or_insert_with(Instant::now);
        let slot = if stream_type == "error" {
            &mut pair.error
        } else {
            &mut pair.data
        };
        if slot.is_some() {
            let message = format!(
                "error processing stream for request {request_id}: {stream_type} stream already assigned"
            );
            return self.print_error(&request_id, message).await;
        }
        *slot = Some(stream_id);
        let kind = if stream_type == "error" {
            StreamKind::Error
        } else {
            let (to_target, pending) = mpsc::channel(TARGET_QUEUE);
            if flags & FLAG_FIN != 0 {
                let _ = to_target.try_send(ToTarget::Fin);
            }
            StreamKind::Data {
                to_target,
                pending: Some(pending),
                forwarding: false,
            }
        };
        self.streams.insert(
            stream_id,
            OpenStream {
                request_id: request_id.clone(),
                kind,
            },
        );
        if let Some(Pair {
            error: Some(error),
            data: Some(data),
            ..
        }) = self.pairs.get(&request_id)
        {
            let (error, data) = (*error, *data);
            self.pairs.remove(&request_id);
            self.start_forward(data, error, port.unwrap_or_default());
        }
        Ok(())
    }

    /// Writes `message` on the pair's error stream, if it has one (kubelet's `printError`).
    async fn print_error(&self, request_id: &str, message: String) -> Result<(), Closed> {
        let error_stream = self.pairs.get(request_id).and_then(|p| p.error);
        match error_stream {
            Some(stream_id) => {
                self.send(Frame::Data {
                    stream_id,
                    flags: 0,
                    data: message.into(),
                })
                .await
            }
            None => Ok(()),
        }
    }

    /// Pairs still missing a stream after [`STREAM_CREATION_TIMEOUT`] are given up.
    async fn expire_pairs(&mut self) -> Result<(), Closed> {
        let expired: Vec<String> = self
            .pairs
            .iter()
            .filter(|(_, p)| {
                p.created
                    .is_some_and(|c| c.elapsed() > STREAM_CREATION_TIMEOUT)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for request_id in expired {
            let message = format!("(request={request_id}) timed out waiting for streams");
            self.print_error(&request_id, message).await?;
            if let Some(pair) = self.pairs.remove(&request_id) {
                for stream_id in pair.error.into_iter().chain(pair.data) {
                    self.streams.remove(&stream_id);
                }
            }
        }
        Ok(())
    }

    fn start_forward(&mut self, data: u32, error: u32, port: u16) {
        let Some(OpenStream {
            kind:
                StreamKind::Data {
                    pending,
                    forwarding,
                    ..
                },
            request_id,
        }) = self.streams.get_mut(&data)
        else {
            return;
        };
        let Some(from_client) = pending.take() else {
            return;
        };
        *forwarding = true;
        tracing::debug!(%request_id, port, "port-forward: forwarding");
        let forward = Forward {
            pod: self.pod.clone(),
            port,
            data,
            error,
            out: self.out.clone(),
        };
        let done = self.done.clone();
        tokio::spawn(async move {
            forward.run(from_client).await;
            let _ = done.send((data, error)).await;
        });
    }
}

/// One forwarded connection: a data stream and its error stream, bridged to a TCP connection.
struct Forward {
    pod: Arc<Pod>,
    port: u16,
    data: u32,
    error: u32,
    out: mpsc::Sender<Frame>,
}

impl Forward {
    async fn run(self, mut from_client: mpsc::Receiver<ToTarget>) {
        let target =
            self.pod
                .hooks
                .port_forward_target(&self.pod.namespace, &self.pod.name, self.port);
        let connection = match target {
            Some(address) => TcpStream::connect(address).await.map_err(|e| e.to_string()),
            None => Err(super::NOTHING_LISTENS.to_owned()),
        };
        match connection {
            Err(error) => {
                // kubelet's portForwardErrResponse: the client logs it and closes the connection.
                let message = super::forward_error(
                    self.port,
                    &self.pod.describe(),
                    Some(&self.pod.uid),
                    &error,
                );
                let report = serde_json::json!({"closeConnection": true, "message": message});
                let _ = self
                    .out
                    .send(Frame::Data {
                        stream_id: self.error,
                        flags: 0,
                        data: format!("{report}\n").into(),
                    })
                    .await;
            }
            Ok(connection) => {
                let _ = connection.set_nodelay(true);
                let (mut from_target, mut to_target) = connection.into_split();
                let upstream = async {
                    while let Some(message) = from_client.recv().await {
                        match message {
                            ToTarget::Data(bytes) => {
                                if to_target.write_all(&bytes).await.is_err() {
                                    return false;
                                }
                            }
                            ToTarget::Fin => {
                                let _ = to_target.shutdown().await;
                                return true;
                            }
                        }
                    }
                    // The stream was reset or the connection ended.
                    false
                };
                let downstream = async {
                    let mut buffer = vec![0u8; spdy::DATA_CHUNK];
                    loop {
                        match from_target.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                let frame = Frame::Data {
                                    stream_id: self.data,
                                    flags: 0,
                                    data: Bytes::copy_from_slice(&buffer[..n]),
                                };
                                if self.out.send(frame).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                };
                tokio::pin!(upstream, downstream);
                tokio::select! {
                    // kubectl is done sending: the target answers what it has, then closes
                    // (as containerd's copy, give it a second).
                    finished = &mut upstream => {
                        if finished {
                            let _ = tokio::time::timeout(Duration::from_secs(1), downstream).await;
                        }
                    }
                    () = &mut downstream => {}
                }
            }
        }
        for stream_id in [self.data, self.error] {
            let _ = self
                .out
                .send(Frame::Data {
                    stream_id,
                    flags: FLAG_FIN,
                    data: Bytes::new(),
                })
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    struct To(Option<SocketAddr>);

    impl LabHooks for To {
        fn port_forward_target(&self, _: &str, _: &str, port: u16) -> Option<SocketAddr> {
            self.0.filter(|_| port == 8012)
        }
    }

    /// A client end: frames out through its own header deflater, frames in through its own
    /// inflater, as spdystream's client side.
    struct Client {
        writer: FrameWriter,
        io: tokio::io::WriteHalf<tokio::io::DuplexStream>,
        reader: FrameReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>,
    }

    impl Client {
        async fn start(target: Option<SocketAddr>) -> Client {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let pod = Pod {
                namespace: "default".into(),
                name: "hello-1".into(),
                uid: "1234".into(),
                hooks: Arc::new(To(target)),
            };
            tokio::spawn(serve(server, pod));
            let (read, write) = tokio::io::split(client);
            Client {
                writer: FrameWriter::new(),
                io: write,
                reader: FrameReader::new(read),
            }
        }

        async fn send(&mut self, frame: Frame) {
            let mut bytes = Vec::new();
            self.writer.encode(&frame, &mut bytes).unwrap();
            self.io.write_all(&bytes).await.unwrap();
        }

        async fn open(&mut self, stream_id: u32, stream_type: &str, port: &str, request: &str) {
            let headers = Headers(vec![
                ("streamtype".into(), stream_type.into()),
                ("port".into(), port.into()),
                ("requestid".into(), request.into()),
            ]);
            self.send(Frame::SynStream {
                stream_id,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers,
            })
            .await;
        }

        async fn next(&mut self) -> Frame {
            tokio::time::timeout(Duration::from_secs(5), self.reader.next())
                .await
                .expect("a frame within 5 s")
                .unwrap()
                .expect("the connection is open")
        }

        /// Everything the server sends on `stream_id` until its FIN (other frames are kept).
        async fn read_stream(&mut self, stream_id: u32, others: &mut Vec<Frame>) -> Vec<u8> {
            let mut bytes = Vec::new();
            loop {
                match self.next().await {
                    Frame::Data {
                        stream_id: id,
                        flags,
                        data,
                    } if id == stream_id => {
                        bytes.extend_from_slice(&data);
                        if flags & FLAG_FIN != 0 {
                            return bytes;
                        }
                    }
                    other => others.push(other),
                }
            }
        }
    }

    #[tokio::test]
    async fn a_stream_pair_reaches_the_target_and_both_streams_end() {
        // A target that answers whatever it read once the client half-closes.
        let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = target.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut connection, _)) = target.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    connection.read_to_end(&mut request).await.unwrap();
                    let answer = format!("got {}", String::from_utf8_lossy(&request));
                    connection.write_all(answer.as_bytes()).await.unwrap();
                });
            }
        });
        let mut client = Client::start(Some(address)).await;
        client.open(1, "error", "8012", "0").await;
        assert!(matches!(
            client.next().await,
            Frame::SynReply { stream_id: 1, .. }
        ));
        client.open(3, "data", "8012", "0").await;
        assert!(matches!(
            client.next().await,
            Frame::SynReply { stream_id: 3, .. }
        ));
        client
            .send(Frame::Data {
                stream_id: 3,
                flags: 0,
                data: Bytes::from_static(b"hello"),
            })
            .await;
        client.send(Frame::Ping { id: 1 }).await;
        client
            .send(Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::new(),
            })
            .await;
        let mut others = Vec::new();
        assert_eq!(client.read_stream(3, &mut others).await, b"got hello");
        assert_eq!(client.read_stream(1, &mut others).await, b"");
        assert_eq!(others, [Frame::Ping { id: 1 }]);

        // A second pair on the same connection, without request ids (kubelet derives them).
        client.open(5, "error", "8012", "").await;
        client.open(7, "data", "8012", "").await;
        for id in [5, 7] {
            assert!(
                matches!(client.next().await, Frame::SynReply { stream_id, .. } if stream_id == id)
            );
        }
        client
            .send(Frame::Data {
                stream_id: 7,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"again"),
            })
            .await;
        assert_eq!(client.read_stream(7, &mut others).await, b"got again");
    }

    #[tokio::test]
    async fn bad_streams_are_reset_and_failures_reported_on_the_error_stream() {
        let mut client = Client::start(None).await;
        // No port, an unknown stream type, an even (server-side) id, an id going backwards.
        client.open(1, "data", "", "a").await;
        client.open(3, "stdin", "8012", "b").await;
        client.open(4, "data", "8012", "c").await;
        client.open(5, "error", "8012", "d").await;
        client.open(5, "data", "8012", "d").await;
        let expected = [
            (1, spdy::RST_CANCEL),
            (3, spdy::RST_CANCEL),
            (4, spdy::RST_PROTOCOL_ERROR),
        ];
        for (id, code) in expected {
            assert_eq!(
                client.next().await,
                Frame::RstStream {
                    stream_id: id,
                    status: code
                }
            );
        }
        assert!(matches!(
            client.next().await,
            Frame::SynReply { stream_id: 5, .. }
        ));
        assert_eq!(
            client.next().await,
            Frame::RstStream {
                stream_id: 5,
                status: spdy::RST_PROTOCOL_ERROR
            }
        );
        // Nothing listens on the pod's port: kubelet's JSON on the error stream, then FINs.
        client.open(7, "data", "8012", "d").await;
        assert!(matches!(
            client.next().await,
            Frame::SynReply { stream_id: 7, .. }
        ));
        let mut others = Vec::new();
        let report = client.read_stream(5, &mut others).await;
        let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
        assert_eq!(report["closeConnection"], true);
        assert_eq!(
            report["message"],
            format!(
                "error forwarding port 8012 to pod default/hello-1, uid 1234: failed to connect \
                 to localhost:8012: {}",
                super::super::NOTHING_LISTENS
            )
        );
    }

    #[tokio::test]
    async fn open_streams_are_bounded() {
        let mut client = Client::start(None).await;
        // Error streams whose data streams never come: each holds a slot until the timeout.
        for index in 0..=MAX_OPEN_STREAMS as u32 {
            client
                .open(2 * index + 1, "error", "8012", &index.to_string())
                .await;
        }
        for index in 0..MAX_OPEN_STREAMS as u32 {
            assert!(
                matches!(client.next().await, Frame::SynReply { stream_id, .. } if stream_id == 2 * index + 1)
            );
        }
        assert_eq!(
            client.next().await,
            Frame::RstStream {
                stream_id: 2 * MAX_OPEN_STREAMS as u32 + 1,
                status: spdy::RST_REFUSED_STREAM
            }
        );
    }
}
