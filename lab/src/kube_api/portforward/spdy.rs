//! SPDY/3.1 framing, as kubectl's port-forward speaks it: the frame layout and the zlib-compressed
//! header blocks of moby/spdystream's `spdy` package (`types.go`, `read.go`, `write.go`,
//! `dictionary.go`), which follows the SPDY/3 draft. SPDY was retired for HTTP/2 and no
//! maintained Rust crate implements it, so the handful of frames kubectl uses are written out
//! here; zlib itself is flate2's.
//!
//! Every frame starts with 8 bytes. A control frame: the control bit, a 15-bit version (3), a
//! 16-bit type, 8 bits of flags and a 24-bit length. A data frame: a 31-bit stream id, 8 bits of
//! flags and a 24-bit length. Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are one zlib stream
//! per direction and connection, primed with SPDY/3's dictionary and sync-flushed after each
//! block.
//!
//! Memory stays bounded whatever a peer sends: a control frame above [`MAX_CONTROL_PAYLOAD`] or a
//! header block inflating past [`MAX_HEADER_BLOCK`] is an error, and a data frame is handed on in
//! pieces of at most [`DATA_CHUNK`] bytes (the pieces carry the frame's FIN on the last one), so a
//! 16 MiB frame is never held at once.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;

/// Control frames kubectl sends are tens of bytes (a SYN_STREAM's header block is ~60).
pub const MAX_CONTROL_PAYLOAD: usize = 64 * 1024;
/// A header block, once inflated.
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// The largest piece of a data frame's payload handed on at once (kubectl writes 32 KiB).
pub const DATA_CHUNK: usize = 32 * 1024;
/// The 24-bit length field's limit.
const MAX_LENGTH: usize = (1 << 24) - 1;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes (spdystream's `RstStreamStatus`).
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;

/// Name/value pairs of a header block; a value may hold several, NUL-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The first value of `name` (names are lowercase on the wire).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.split('\0').next().unwrap_or_default())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// Read and ignored, as spdystream ignores it.
    Settings,
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// A control frame of a type SPDY/3 does not define: skipped, as the draft says.
    Unknown {
        frame_type: u16,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPDY version {0} (only 3 is spoken)")]
    Version(u16),
    #[error("control frame of {length} bytes (at most {MAX_CONTROL_PAYLOAD})")]
    TooLarge { length: usize },
    #[error("frame type {frame_type} of {length} bytes is malformed")]
    Malformed { frame_type: u16, length: usize },
    #[error("header block: {0}")]
    HeaderBlock(String),
    #[error("stream id 0 is not allowed here")]
    ZeroStreamId,
}

fn u32_at(payload: &[u8], at: usize) -> Option<u32> {
    let bytes = payload.get(at..at + 4)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// The reading side of one connection: frames from `io`, header blocks through its inflater.
pub struct FrameReader<R> {
    io: R,
    inflater: HeaderInflater,
    /// What is left of a data frame handed on in pieces: stream, flags, bytes still to read.
    pending_data: Option<(u32, u8, usize)>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> Self {
        FrameReader {
            io,
            inflater: HeaderInflater::new(),
            pending_data: None,
        }
    }

    /// The next frame; `None` when the peer closed the connection between frames. A connection
    /// closed inside a frame is an error.
    pub async fn next(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some((stream_id, flags, remaining)) = self.pending_data.take() {
            return self.data_piece(stream_id, flags, remaining).await.map(Some);
        }
        let mut head = [0u8; 8];
        let first = self.io.read(&mut head).await?;
        if first == 0 {
            return Ok(None);
        }
        self.io.read_exact(&mut head[first..]).await?;
        let flags = head[4];
        let length = usize::from(head[5]) << 16 | usize::from(head[6]) << 8 | usize::from(head[7]);
        if head[0] & 0x80 == 0 {
            let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            if stream_id == 0 {
                return Err(FrameError::ZeroStreamId);
            }
            return self.data_piece(stream_id, flags, length).await.map(Some);
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        let frame_type = u16::from_be_bytes([head[2], head[3]]);
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        if length > MAX_CONTROL_PAYLOAD {
            return Err(FrameError::TooLarge { length });
        }
        let mut payload = vec![0u8; length];
        self.io.read_exact(&mut payload).await?;
        parse_control(frame_type, flags, &payload, &mut self.inflater).map(Some)
    }

    /// Up to [`DATA_CHUNK`] bytes of a data frame; the rest is remembered for the next call.
    async fn data_piece(
        &mut self,
        stream_id: u32,
        flags: u8,
        remaining: usize,
    ) -> Result<Frame, FrameError> {
        let take = remaining.min(DATA_CHUNK);
        let mut data = vec![0u8; take];
        self.io.read_exact(&mut data).await?;
        let left = remaining - take;
        let piece_flags = if left == 0 {
            flags
        } else {
            self.pending_data = Some((stream_id, flags, left));
            flags & !FLAG_FIN
        };
        Ok(Frame::Data {
            stream_id,
            flags: piece_flags,
            data: data.into(),
        })
    }
}

/// A control frame from its type, flags and payload.
pub fn parse_control(
    frame_type: u16,
    flags: u8,
    payload: &[u8],
    inflater: &mut HeaderInflater,
) -> Result<Frame, FrameError> {
    let malformed = || FrameError::Malformed {
        frame_type,
        length: payload.len(),
    };
    let word = |at: usize| u32_at(payload, at).ok_or_else(malformed);
    let stream_word = |at: usize| -> Result<u32, FrameError> {
        match word(at)? & 0x7fff_ffff {
            0 => Err(FrameError::ZeroStreamId),
            id => Ok(id),
        }
    };
    let frame = match frame_type {
        TYPE_SYN_STREAM => {
            let stream_id = stream_word(0)?;
            let associated_to = word(4)? & 0x7fff_ffff;
            let priority = payload.get(8).ok_or_else(malformed)? >> 5;
            let block = payload.get(10..).ok_or_else(malformed)?;
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers: inflater.inflate(block)?,
            }
        }
        TYPE_SYN_REPLY | TYPE_HEADERS => {
            let stream_id = stream_word(0)?;
            let block = payload.get(4..).ok_or_else(malformed)?;
            let headers = inflater.inflate(block)?;
            if frame_type == TYPE_SYN_REPLY {
                Frame::SynReply {
                    stream_id,
                    flags,
                    headers,
                }
            } else {
                Frame::Headers {
                    stream_id,
                    flags,
                    headers,
                }
            }
        }
        TYPE_RST_STREAM if payload.len() == 8 => Frame::RstStream {
            stream_id: stream_word(0)?,
            status: word(4)?,
        },
        TYPE_SETTINGS => {
            let entries = word(0)? as usize;
            if payload.len() != 4 + entries.checked_mul(8).ok_or_else(malformed)? {
                return Err(malformed());
            }
            Frame::Settings
        }
        TYPE_PING if payload.len() == 4 => Frame::Ping { id: word(0)? },
        TYPE_GOAWAY if payload.len() == 8 => Frame::GoAway {
            last_good_stream_id: word(0)? & 0x7fff_ffff,
            status: word(4)?,
        },
        TYPE_WINDOW_UPDATE if payload.len() == 8 => Frame::WindowUpdate {
            stream_id: word(0)? & 0x7fff_ffff,
            delta: word(4)? & 0x7fff_ffff,
        },
        TYPE_RST_STREAM | TYPE_PING | TYPE_GOAWAY | TYPE_WINDOW_UPDATE => return Err(malformed()),
        frame_type => Frame::Unknown { frame_type },
    };
    Ok(frame)
}

/// Inflates the peer's header blocks: one zlib stream for the connection, primed with
/// [`HEADER_DICTIONARY`] when its header asks for it (it always does: spdystream's writer is
/// `zlib.NewWriterLevelDict`).
pub struct HeaderInflater(Decompress);

impl HeaderInflater {
    pub fn new() -> Self {
        HeaderInflater(Decompress::new(true))
    }

    pub fn inflate(&mut self, compressed: &[u8]) -> Result<Headers, FrameError> {
        let error = |message: String| FrameError::HeaderBlock(message);
        let mut block = Vec::with_capacity(256);
        let mut consumed = 0usize;
        loop {
            if block.len() == block.capacity() {
                if block.len() >= MAX_HEADER_BLOCK {
                    return Err(error(format!("inflates past {MAX_HEADER_BLOCK} bytes")));
                }
                block.reserve((block.len() * 2).min(MAX_HEADER_BLOCK) - block.len());
            }
            let (before_in, before_out) = (self.0.total_in(), self.0.total_out());
            let result =
                self.0
                    .decompress_vec(&compressed[consumed..], &mut block, FlushDecompress::Sync);
            let progressed = self.0.total_in() != before_in || self.0.total_out() != before_out;
            consumed += usize::try_from(self.0.total_in() - before_in).unwrap_or(usize::MAX);
            match result {
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(_) => {
                        self.0
                            .set_dictionary(HEADER_DICTIONARY)
                            .map_err(|e| error(format!("dictionary: {e}")))?;
                        continue;
                    }
                    None => return Err(error(e.to_string())),
                },
            }
            if consumed >= compressed.len() && block.len() < block.capacity() {
                break;
            }
            if !progressed && block.len() < block.capacity() {
                return Err(error("truncated".into()));
            }
        }
        parse_header_block(&block)
    }
}

impl Default for HeaderInflater {
    fn default() -> Self {
        Self::new()
    }
}

fn parse_header_block(block: &[u8]) -> Result<Headers, FrameError> {
    let truncated = || FrameError::HeaderBlock(format!("{} bytes, truncated", block.len()));
    let count = u32_at(block, 0).ok_or_else(truncated)? as usize;
    // Each pair takes at least 8 bytes: a count past that is a lie, not a reason to allocate.
    if count > block.len() / 8 {
        return Err(truncated());
    }
    let mut at = 4;
    let string = |at: &mut usize| -> Result<String, FrameError> {
        let length = u32_at(block, *at).ok_or_else(truncated)? as usize;
        let bytes = block
            .get(*at + 4..(*at + 4).saturating_add(length))
            .ok_or_else(truncated)?;
        *at += 4 + length;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    };
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let name = string(&mut at)?.to_ascii_lowercase();
        let value = string(&mut at)?;
        pairs.push((name, value));
    }
    Ok(Headers(pairs))
}

/// The writing side of one connection: frames to bytes, header blocks through its deflater.
pub struct FrameWriter(Compress);

impl FrameWriter {
    pub fn new() -> Self {
        let mut deflater = Compress::new(Compression::best(), true);
        // Only fails on a stream already under way; this one has not started.
        let _ = deflater.set_dictionary(HEADER_DICTIONARY);
        FrameWriter(deflater)
    }

    /// Appends `frame` to `out`. Fails only for what the format cannot carry (an oversized
    /// data frame, stream id 0).
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let control = |out: &mut Vec<u8>, frame_type: u16, flags: u8, length: usize| {
            out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
            out.extend_from_slice(&frame_type.to_be_bytes());
            out.extend_from_slice(&(u32::from(flags) << 24 | length as u32).to_be_bytes());
        };
        let nonzero = |id: u32| {
            if id == 0 {
                Err(FrameError::ZeroStreamId)
            } else {
                Ok(id & 0x7fff_ffff)
            }
        };
        match frame {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let block = self.deflate(headers)?;
                control(out, TYPE_SYN_STREAM, *flags, block.len() + 10);
                out.extend_from_slice(&nonzero(*stream_id)?.to_be_bytes());
                out.extend_from_slice(&(associated_to & 0x7fff_ffff).to_be_bytes());
                out.extend_from_slice(&[priority << 5, 0]);
                out.extend_from_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            }
            | Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let frame_type = if matches!(frame, Frame::SynReply { .. }) {
                    TYPE_SYN_REPLY
                } else {
                    TYPE_HEADERS
                };
                let block = self.deflate(headers)?;
                control(out, frame_type, *flags, block.len() + 4);
                out.extend_from_slice(&nonzero(*stream_id)?.to_be_bytes());
                out.extend_from_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control(out, TYPE_RST_STREAM, 0, 8);
                out.extend_from_slice(&nonzero(*stream_id)?.to_be_bytes());
                out.extend_from_slice(&status.to_be_bytes());
            }
            Frame::Settings => {
                control(out, TYPE_SETTINGS, 0, 4);
                out.extend_from_slice(&0u32.to_be_bytes());
            }
            Frame::Ping { id } => {
                control(out, TYPE_PING, 0, 4);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control(out, TYPE_GOAWAY, 0, 8);
                out.extend_from_slice(&(last_good_stream_id & 0x7fff_ffff).to_be_bytes());
                out.extend_from_slice(&status.to_be_bytes());
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control(out, TYPE_WINDOW_UPDATE, 0, 8);
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
            }
            Frame::Unknown { frame_type } => control(out, *frame_type, 0, 0),
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_LENGTH {
                    return Err(FrameError::TooLarge { length: data.len() });
                }
                out.extend_from_slice(&nonzero(*stream_id)?.to_be_bytes());
                out.extend_from_slice(&(u32::from(*flags) << 24 | data.len() as u32).to_be_bytes());
                out.extend_from_slice(data);
            }
        }
        Ok(())
    }

    fn deflate(&mut self, headers: &Headers) -> Result<Vec<u8>, FrameError> {
        let mut block = Vec::new();
        block.extend_from_slice(&(headers.0.len() as u32).to_be_bytes());
        for (name, value) in &headers.0 {
            for text in [name.to_ascii_lowercase().as_str(), value.as_str()] {
                block.extend_from_slice(&(text.len() as u32).to_be_bytes());
                block.extend_from_slice(text.as_bytes());
            }
        }
        if block.len() > MAX_HEADER_BLOCK {
            return Err(FrameError::HeaderBlock(format!(
                "{} bytes (at most {MAX_HEADER_BLOCK})",
                block.len()
            )));
        }
        let mut compressed = Vec::with_capacity(block.len() + 64);
        let mut consumed = 0usize;
        loop {
            let before = self.0.total_in();
            self.0
                .compress_vec(&block[consumed..], &mut compressed, FlushCompress::Sync)
                .map_err(|e| FrameError::HeaderBlock(e.to_string()))?;
            consumed += usize::try_from(self.0.total_in() - before).unwrap_or(usize::MAX);
            // A sync flush is complete once it stops short of filling the output.
            if consumed >= block.len() && compressed.len() < compressed.capacity() {
                return Ok(compressed);
            }
            compressed.reserve(256);
        }
    }
}

impl Default for FrameWriter {
    fn default() -> Self {
        Self::new()
    }
}

/// SPDY/3's header compression dictionary (moby/spdystream `spdy/dictionary.go`, from the SPDY/3
/// draft): length-prefixed header names and common values, then status lines, dates and types.
pub const HEADER_DICTIONARY: &[u8; 1423] = b"\
    \0\0\0\x07options\0\0\0\x04head\0\0\0\x04post\0\0\0\x03put\0\0\0\x06delete\0\0\0\x05trace\0\
    \0\0\x06accept\0\0\0\x0eaccept-charset\0\0\0\x0faccept-encoding\0\0\0\x0faccept-language\0\0\
    \0\x0daccept-ranges\0\0\0\x03age\0\0\0\x05allow\0\0\0\x0dauthorization\0\0\0\x0dcache-contro\
    l\0\0\0\x0aconnection\0\0\0\x0ccontent-base\0\0\0\x10content-encoding\0\0\0\x10content-langu\
    age\0\0\0\x0econtent-length\0\0\0\x10content-location\0\0\0\x0bcontent-md5\0\0\0\x0dcontent-\
    range\0\0\0\x0ccontent-type\0\0\0\x04date\0\0\0\x04etag\0\0\0\x06expect\0\0\0\x07expires\0\0\
    \0\x04from\0\0\0\x04host\0\0\0\x08if-match\0\0\0\x11if-modified-since\0\0\0\x0dif-none-match\
    \0\0\0\x08if-range\0\0\0\x13if-unmodified-since\0\0\0\x0dlast-modified\0\0\0\x08location\0\0\
    \0\x0cmax-forwards\0\0\0\x06pragma\0\0\0\x12proxy-authenticate\0\0\0\x13proxy-authorization\
    \0\0\0\x05range\0\0\0\x07referer\0\0\0\x0bretry-after\0\0\0\x06server\0\0\0\x02te\0\0\0\x07t\
    railer\0\0\0\x11transfer-encoding\0\0\0\x07upgrade\0\0\0\x0auser-agent\0\0\0\x04vary\0\0\0\
    \x03via\0\0\0\x07warning\0\0\0\x10www-authenticate\0\0\0\x06method\0\0\0\x03get\0\0\0\x06sta\
    tus\0\0\0\x06200 OK\0\0\0\x07version\0\0\0\x08HTTP/1.1\0\0\0\x03url\0\0\0\x06public\0\0\0\
    \x0aset-cookie\0\0\0\x0akeep-alive\0\0\0\x06origin100101201202205206300302303304305306307402\
    405406407408409410411412413414415416417502504505203 Non-Authoritative Information204 No Cont\
    ent301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Interna\
    l Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept\
    \x20Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,i\
    mage/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicpr\
    ivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    async fn read_all(bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
        let mut reader = FrameReader::new(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = reader.next().await? {
            frames.push(frame);
        }
        Ok(frames)
    }

    #[test]
    fn the_dictionary_is_spdy3s() {
        // The Adler-32 a SPDY/3 peer puts in the zlib header's DICTID.
        let mut deflater = Compress::new(Compression::best(), true);
        assert_eq!(
            deflater.set_dictionary(HEADER_DICTIONARY).unwrap(),
            0xe3c6_a7c2
        );
    }

    #[tokio::test]
    async fn frames_round_trip_with_one_header_stream_per_direction() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: headers(&[
                    ("streamtype", "error"),
                    ("port", "15000"),
                    ("requestid", "0"),
                ]),
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 2,
                flags: 0,
                headers: headers(&[
                    ("streamtype", "data"),
                    ("port", "15000"),
                    ("requestid", "0"),
                ]),
            },
            Frame::SynReply {
                stream_id: 3,
                flags: FLAG_FIN,
                headers: Headers::default(),
            },
            Frame::Headers {
                stream_id: 3,
                flags: 0,
                headers: headers(&[("x", "a\0b")]),
            },
            Frame::Data {
                stream_id: 3,
                flags: 0,
                data: Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n"),
            },
            Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: Bytes::new(),
            },
            Frame::RstStream {
                stream_id: 3,
                status: RST_CANCEL,
            },
            Frame::Settings,
            Frame::Ping { id: 1 },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 65536,
            },
            Frame::GoAway {
                last_good_stream_id: 3,
                status: 0,
            },
        ];
        let mut writer = FrameWriter::new();
        let mut bytes = Vec::new();
        for frame in &frames {
            writer.encode(frame, &mut bytes).unwrap();
        }
        assert_eq!(read_all(&bytes).await.unwrap(), frames);
        let Frame::Headers { headers, .. } = &frames[3] else {
            unreachable!()
        };
        assert_eq!(headers.get("x"), Some("a"));
    }

    #[tokio::test]
    async fn a_big_data_frame_comes_in_bounded_pieces_with_fin_on_the_last() {
        let payload = vec![7u8; 2 * DATA_CHUNK + 5];
        let mut bytes = Vec::new();
        FrameWriter::new()
            .encode(
                &Frame::Data {
                    stream_id: 5,
                    flags: FLAG_FIN,
                    data: payload.clone().into(),
                },
                &mut bytes,
            )
            .unwrap();
        let frames = read_all(&bytes).await.unwrap();
        let mut joined = Vec::new();
        for (index, frame) in frames.iter().enumerate() {
            let Frame::Data {
                stream_id,
                flags,
                data,
            } = frame
            else {
                panic!("{frame:?}")
            };
            assert_eq!(*stream_id, 5);
            assert!(data.len() <= DATA_CHUNK);
            assert_eq!(*flags == FLAG_FIN, index == frames.len() - 1);
            joined.extend_from_slice(data);
        }
        assert_eq!(frames.len(), 3);
        assert_eq!(joined, payload);
    }

    #[tokio::test]
    async fn truncated_oversized_and_garbled_frames_are_errors() {
        let mut writer = FrameWriter::new();
        let mut bytes = Vec::new();
        let syn = Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: headers(&[("port", "8012")]),
        };
        writer.encode(&syn, &mut bytes).unwrap();
        // Cut anywhere inside the frame: an error, never a panic or a frame.
        for cut in 1..bytes.len() {
            assert!(read_all(&bytes[..cut]).await.is_err(), "cut at {cut}");
        }
        // A control frame claiming 16 MiB is refused before anything is allocated for it.
        let huge = [0x80, 0x03, 0x00, 0x01, 0x00, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_all(&huge).await,
            Err(FrameError::TooLarge { .. })
        ));
        // A data frame claiming 16 MiB but cut short.
        let short_data = [0x00, 0x00, 0x00, 0x01, 0x00, 0xff, 0xff, 0xff, 1, 2, 3];
        assert!(read_all(&short_data).await.is_err());
        // Other versions, malformed fixed-size frames, stream id 0.
        for garbled in [
            &[0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1][..],
            &[0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x03, 0, 0, 1][..],
            &[0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1][..],
            &[
                0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 1,
            ][..],
            &[
                0x80, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0xff, 0xff, 0xff, 0xff,
            ][..],
            &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00][..],
        ] {
            assert!(read_all(garbled).await.is_err(), "{garbled:?}");
        }
        // A header block that is not zlib, or lies about its pair count.
        let mut bad_block = vec![0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0x0a, 0, 0, 0, 1];
        bad_block.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0x00, 0x01]);
        assert!(read_all(&bad_block).await.is_err());
        assert!(parse_header_block(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).is_err());
        assert!(parse_header_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'x']).is_err());
        assert!(HeaderInflater::new().inflate(&[]).is_err());
    }

    #[tokio::test]
    async fn a_header_bomb_stops_at_the_bound() {
        // 1 MiB of header value compresses to ~1 kB; inflating it must stop at the bound.
        let big = Headers(vec![("x".into(), "a".repeat(1 << 20))]);
        let mut block = Vec::new();
        block.extend_from_slice(&1u32.to_be_bytes());
        for text in ["x", big.0[0].1.as_str()] {
            block.extend_from_slice(&(text.len() as u32).to_be_bytes());
            block.extend_from_slice(text.as_bytes());
        }
        let mut deflater = Compress::new(Compression::best(), true);
        deflater.set_dictionary(HEADER_DICTIONARY).unwrap();
        let mut compressed = Vec::with_capacity(64 * 1024);
        deflater
            .compress_vec(&block, &mut compressed, FlushCompress::Sync)
            .unwrap();
        assert!(compressed.len() < MAX_CONTROL_PAYLOAD - 4);
        let mut frame = vec![0x80, 0x03, 0x00, 0x02, 0x00];
        frame.extend_from_slice(&((compressed.len() + 4) as u32).to_be_bytes()[1..]);
        frame.extend_from_slice(&1u32.to_be_bytes());
        frame.extend_from_slice(&compressed);
        assert!(matches!(
            read_all(&frame).await,
            Err(FrameError::HeaderBlock(_))
        ));
        // And the writer refuses to make one.
        assert!(FrameWriter::new()
            .encode(
                &Frame::SynReply {
                    stream_id: 1,
                    flags: 0,
                    headers: big
                },
                &mut Vec::new()
            )
            .is_err());
    }
}
