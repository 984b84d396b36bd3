//! An HTTP/2 front on each Workload API connection that replaces a `:authority` which h2 would
//! refuse, so grpc-core (Python, C++, Ruby) and grpc-java clients are served as SPIRE serves them.
//!
//! # Why
//!
//! On a Unix socket, grpc-core sends the percent-encoded socket path as `:authority`
//! (`tmp%2Fagent%2Fapi.sock`; captured from grpcio 1.85 in `testdata/`). h2, under hyper and
//! tonic, parses every `:authority` with the `http` crate's `Authority` parser, which refuses `%`
//! outside userinfo, and resets the stream with `PROTOCOL_ERROR` before hyper or tonic see the
//! request (`h2::server::Peer::convert_poll_message`; hyperium/h2 PR 487 is still open). Neither
//! tonic, hyper nor h2 offers a hook in front of that check, and h2's HPACK codec is private.
//!
//! # What
//!
//! [`AuthorityFront`] wraps the accepted socket and rewrites the client-to-server byte stream
//! before h2 reads it; the server-to-client direction passes through untouched. The rewriting is
//! done by a synchronous [`FrameRewriter`] (bytes in, bytes out):
//!
//! - The connection preface and every frame other than `HEADERS` and `CONTINUATION` are copied
//!   verbatim, streamed without buffering their payloads.
//! - Each header block (a `HEADERS` frame and its `CONTINUATION`s) is collected, stripped of
//!   padding, and decoded by [`hpack::Decoder`], which follows the client's dynamic table and
//!   its size updates (Huffman strings through [`loona_hpack`]). A `:authority` the `http`
//!   crate refuses becomes [`REPLACEMENT_AUTHORITY`]; every other field stays as sent, in order,
//!   so h2 still applies all of its own rules to them.
//! - The block is re-encoded as literals without indexing (never-indexed ones stay so), with no
//!   dynamic table size update, and
//!   split to at most [`MAX_FRAME_SIZE`] per frame. The server's HPACK dynamic table therefore
//!   stays empty for the life of the connection and can never disagree with what the client's
//!   encoder assumes; only the client's table, tracked here, is ever used.
//!
//! A client that breaks an HTTP/2 framing or HPACK rule, or exceeds a cap
//! ([`MAX_HEADER_BLOCK_BYTES`], [`MAX_HEADER_LIST_BYTES`], [`MAX_CONTINUATION_FRAMES`],
//! [`MAX_FRAME_SIZE`]), gets its connection closed: once a header block is not decoded, the
//! HPACK state is lost, so there is nothing safe to forward (RFC 9113 §4.3 makes that a
//! connection error too). Every refusal is a [`FrontError`] naming the rule.
//!
//! The simpler alternatives do not work: a byte-level search for `:authority` misses Huffman-coded
//! and dynamic-table references, and rewriting only some blocks would desynchronize the two
//! dynamic tables. Serving the Workload API with another HTTP/2 stack would mean a second server.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use svid_broker_identity::report::ErrorChain;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::{Connected, UdsConnectInfo};

use self::hpack::{Decoder, Field, HpackError, encode_literal};

mod hpack;

/// What replaces a `:authority` that h2 would refuse. The Workload API has a single service per
/// socket, so the authority carries no meaning for it.
pub(crate) const REPLACEMENT_AUTHORITY: &[u8] = b"localhost";
/// Largest frame payload the front accepts and emits: the HTTP/2 default
/// `SETTINGS_MAX_FRAME_SIZE`, which the server advertises explicitly (see `server.rs`).
pub(crate) const MAX_FRAME_SIZE: u32 = 16_384;
/// Largest HPACK-encoded header block (HEADERS plus CONTINUATIONs) the front buffers.
pub(crate) const MAX_HEADER_BLOCK_BYTES: usize = 64 * 1024;
/// Largest decoded header list (RFC 9113 §6.5.2 size: name + value + 32 per field). Above the
/// server's own 16 KiB limit, so a moderately large block still reaches h2 and gets its usual
/// stream-level answer; this cap only stops HPACK bombs (one byte referencing a 4 KiB entry).
pub(crate) const MAX_HEADER_LIST_BYTES: usize = 64 * 1024;
/// Most CONTINUATION frames in one header block. A block at [`MAX_HEADER_BLOCK_BYTES`] split at
/// [`MAX_FRAME_SIZE`] needs 3; the margin is for clients that split smaller. Without a count,
/// empty CONTINUATIONs would be free to send forever.
pub(crate) const MAX_CONTINUATION_FRAMES: usize = 16;
/// The HPACK dynamic table size the client's encoder may use: the HTTP/2 default
/// `SETTINGS_HEADER_TABLE_SIZE`, which the server (h2 via hyper) never changes.
pub(crate) const CLIENT_HEADER_TABLE_SIZE: usize = 4096;

/// How much the front reads from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const PRIORITY_LEN: usize = 5;

const TYPE_HEADERS: u8 = 0x1;
const TYPE_PUSH_PROMISE: u8 = 0x5;
const TYPE_CONTINUATION: u8 = 0x9;

const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// Why the front closed a client connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FrontError {
    /// The connection did not start with the HTTP/2 client preface (RFC 9113 §3.4).
    #[error("connection does not start with the HTTP/2 client preface")]
    BadPreface,
    /// A HEADERS or CONTINUATION frame is larger than the server's maximum frame size.
    #[error("{kind} frame of {len} bytes exceeds the maximum frame size of {max} bytes")]
    FrameTooLarge {
        /// `HEADERS` or `CONTINUATION`.
        kind: &'static str,
        /// The payload length its frame header declares, in bytes (the payload is not read).
        len: u32,
        /// Always [`MAX_FRAME_SIZE`], in bytes.
        max: u32,
    },
    /// A header-carrying frame on stream 0 (RFC 9113 §6.2).
    #[error("{kind} frame on stream 0")]
    StreamZero {
        /// `HEADERS` or `CONTINUATION`.
        kind: &'static str,
    },
    /// A HEADERS frame too short for the padding length or priority fields its flags announce.
    #[error("HEADERS frame on stream {stream} is too short ({len} bytes) for its flags")]
    TruncatedHeaders {
        /// The frame's stream id (never 0).
        stream: u32,
        /// The whole payload's length, in bytes, flag-announced fields included.
        len: usize,
    },
    /// The padding length is not smaller than the payload (RFC 9113 §6.2).
    #[error(
        "HEADERS frame on stream {stream} has {pad_len} bytes of padding in a {len}-byte payload"
    )]
    PaddingTooLong {
        /// The frame's stream id (never 0).
        stream: u32,
        /// The Pad Length field's value, in bytes.
        pad_len: usize,
        /// The whole payload's length, in bytes, Pad Length and priority fields included.
        len: usize,
    },
    /// A frame other than the CONTINUATION of the open header block arrived (RFC 9113 §6.10).
    #[error(
        "expected CONTINUATION for stream {stream}, got frame type {frame_type:#x} on stream {got_stream}"
    )]
    ContinuationExpected {
        /// The stream whose header block is open.
        stream: u32,
        /// The arriving frame's type byte (`0x9` when only its stream was wrong).
        frame_type: u8,
        /// The arriving frame's stream id (may be 0).
        got_stream: u32,
    },
    /// A CONTINUATION frame without an open header block (RFC 9113 §6.10).
    #[error("CONTINUATION on stream {stream} without a preceding HEADERS")]
    UnexpectedContinuation {
        /// The frame's stream id (never 0).
        stream: u32,
    },
    /// Clients never send PUSH_PROMISE (RFC 9113 §8.4).
    #[error("client sent PUSH_PROMISE on stream {stream}")]
    PushPromise {
        /// The stream id the frame header names (may be 0).
        stream: u32,
    },
    /// The encoded header block exceeds [`MAX_HEADER_BLOCK_BYTES`].
    #[error("header block on stream {stream} exceeds {max} bytes")]
    HeaderBlockTooLarge {
        /// The stream whose header block is open.
        stream: u32,
        /// Always [`MAX_HEADER_BLOCK_BYTES`], in bytes of encoded block (padding excluded).
        max: usize,
    },
    /// The header block spans more than [`MAX_CONTINUATION_FRAMES`] CONTINUATION frames.
    #[error("header block on stream {stream} spans more than {max} CONTINUATION frames")]
    TooManyContinuations {
        /// The stream whose header block is open.
        stream: u32,
        /// Always [`MAX_CONTINUATION_FRAMES`].
        max: usize,
    },
    /// The header block is not valid HPACK (RFC 7541), asks for a dynamic table above
    /// [`CLIENT_HEADER_TABLE_SIZE`], or decodes to more than [`MAX_HEADER_LIST_BYTES`].
    #[error("header block on stream {stream} refused")]
    Hpack {
        /// The stream whose header block failed to decode.
        stream: u32,
        /// The decoder's finding.
        #[source]
        source: HpackError,
    },
}

// === impl FrameRewriter ===

/// The sans-IO core: turns the client's HTTP/2 byte stream into the one h2 reads, in chunks of
/// any size.
pub(crate) struct FrameRewriter {
    state: State,
    /// Bytes of the preface, of a frame header, or of a header frame's payload, until complete.
    partial: Vec<u8>,
    open_block: Option<OpenBlock>,
    decoder: Decoder,
    rewritten: u64,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Preface,
    FrameHeader,
    PassThrough { remaining: usize },
    HeaderPayload(FrameHeader),
}

#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    len: u32,
    frame_type: u8,
    flags: u8,
    stream: u32,
}

/// A header block whose END_HEADERS has not arrived yet.
#[derive(Debug)]
struct OpenBlock {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    fragment: Vec<u8>,
    continuations: usize,
}

impl fmt::Debug for FrameRewriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameRewriter")
            .field("state", &self.state)
            .field("open_block", &self.open_block.as_ref().map(|b| b.stream))
            .field("rewritten", &self.rewritten)
            .finish_non_exhaustive()
    }
}

impl FrameRewriter {
    pub(crate) fn new() -> Self {
        Self {
            state: State::Preface,
            partial: Vec::with_capacity(FRAME_HEADER_LEN),
            open_block: None,
            decoder: Decoder::new(CLIENT_HEADER_TABLE_SIZE),
            rewritten: 0,
        }
    }

    /// How many `:authority` fields have been replaced so far.
    #[cfg(test)]
    pub(crate) fn rewritten(&self) -> u64 {
        self.rewritten
    }

    /// Consumes `input` (any split of the stream) and appends what h2 should read to `out`.
    ///
    /// # Errors
    /// [`FrontError`] naming the broken rule; the connection must then be closed.
    pub(crate) fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), FrontError> {
        while !input.is_empty() {
            match self.state {
                State::Preface => {
                    if self.fill(&mut input, PREFACE.len()) {
                        if self.partial != PREFACE {
                            return Err(FrontError::BadPreface);
                        }
                        out.extend_from_slice(PREFACE);
                        self.partial.clear();
                        self.state = State::FrameHeader;
                    }
                }
                State::FrameHeader => {
                    if self.fill(&mut input, FRAME_HEADER_LEN) {
                        let header = parse_frame_header(&self.partial);
                        self.partial.clear();
                        self.start_frame(header, out)?;
                    }
                }
                State::PassThrough { remaining } => {
                    let n = remaining.min(input.len());
                    let (now, rest) = input.split_at(n);
                    out.extend_from_slice(now);
                    input = rest;
                    self.state = if n == remaining {
                        State::FrameHeader
                    } else {
                        State::PassThrough {
                            remaining: remaining - n,
                        }
                    };
                }
                State::HeaderPayload(header) => {
                    if self.fill(&mut input, header.len as usize) {
                        let payload = std::mem::take(&mut self.partial);
                        self.state = State::FrameHeader;
                        self.header_frame(header, &payload, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Moves bytes from `input` into `partial` until it holds `want`; true once it does.
    fn fill(&mut self, input: &mut &[u8], want: usize) -> bool {
        let n = want.saturating_sub(self.partial.len()).min(input.len());
        let (now, rest) = input.split_at(n);
        self.partial.extend_from_slice(now);
        *input = rest;
        self.partial.len() == want
    }

    fn start_frame(&mut self, header: FrameHeader, out: &mut Vec<u8>) -> Result<(), FrontError> {
        if let Some(open) = &self.open_block
            && (header.frame_type != TYPE_CONTINUATION || header.stream != open.stream)
        {
            return Err(FrontError::ContinuationExpected {
                stream: open.stream,
                frame_type: header.frame_type,
                got_stream: header.stream,
            });
        }
        match header.frame_type {
            TYPE_HEADERS | TYPE_CONTINUATION => {
                let kind = frame_kind(header.frame_type);
                if header.len > MAX_FRAME_SIZE {
                    return Err(FrontError::FrameTooLarge {
                        kind,
                        len: header.len,
                        max: MAX_FRAME_SIZE,
                    });
                }
                if header.stream == 0 {
                    return Err(FrontError::StreamZero { kind });
                }
                if header.frame_type == TYPE_CONTINUATION && self.open_block.is_none() {
                    return Err(FrontError::UnexpectedContinuation {
                        stream: header.stream,
                    });
                }
                self.partial.reserve(header.len as usize);
                self.state = State::HeaderPayload(header);
                if header.len == 0 {
                    // No payload bytes will come to complete it.
                    self.state = State::FrameHeader;
                    self.header_frame(header, &[], out)?;
                }
            }
            TYPE_PUSH_PROMISE => {
                return Err(FrontError::PushPromise {
                    stream: header.stream,
                });
            }
            _ => {
                // h2 applies every rule about these frames (sizes included) itself.
                write_frame_header(out, header);
                self.state = match header.len {
                    0 => State::FrameHeader,
                    len => State::PassThrough {
                        remaining: len as usize,
                    },
                };
            }
        }
        Ok(())
    }

    fn header_frame(
        &mut self,
        header: FrameHeader,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FrontError> {
        let mut block = match self.open_block.take() {
            None => {
                let (priority, fragment) = split_headers_payload(header, payload)?;
                OpenBlock {
                    stream: header.stream,
                    end_stream: header.flags & FLAG_END_STREAM != 0,
                    priority,
                    fragment: fragment.to_vec(),
                    continuations: 0,
                }
            }
            Some(mut block) => {
                block.continuations += 1;
                if block.continuations > MAX_CONTINUATION_FRAMES {
                    return Err(FrontError::TooManyContinuations {
                        stream: block.stream,
                        max: MAX_CONTINUATION_FRAMES,
                    });
                }
                if block.fragment.len() + payload.len() > MAX_HEADER_BLOCK_BYTES {
                    return Err(FrontError::HeaderBlockTooLarge {
                        stream: block.stream,
                        max: MAX_HEADER_BLOCK_BYTES,
                    });
                }
                block.fragment.extend_from_slice(payload);
                block
            }
        };
        if header.flags & FLAG_END_HEADERS == 0 {
            self.open_block = Some(block);
            return Ok(());
        }
        let fields = self.decode(block.stream, &block.fragment)?;
        block.fragment.clear();
        let encoded = self.encode_rewritten(block.stream, fields);
        write_header_block(out, &block, &encoded);
        Ok(())
    }

    /// Decodes a complete block against the client's dynamic table, within the list-size cap.
    fn decode(&mut self, stream: u32, block: &[u8]) -> Result<Vec<Field>, FrontError> {
        self.decoder
            .decode(block, MAX_HEADER_LIST_BYTES)
            .map_err(|source| FrontError::Hpack { stream, source })
    }

    /// Replaces refused authorities and encodes the list with no dynamic-table effect.
    fn encode_rewritten(&mut self, stream: u32, fields: Vec<Field>) -> Vec<u8> {
        let mut encoded = Vec::new();
        for mut field in fields {
            if field.name == b":authority"
                && http::uri::Authority::try_from(&field.value[..]).is_err()
            {
                if self.rewritten == 0 {
                    tracing::debug!(
                        stream,
                        authority = %String::from_utf8_lossy(&field.value),
                        "replacing an :authority h2 refuses (grpc-core on a Unix socket)"
                    );
                }
                self.rewritten += 1;
                field.value = REPLACEMENT_AUTHORITY.to_vec();
            }
            encode_literal(&mut encoded, &field);
        }
        encoded
    }
}

fn frame_kind(frame_type: u8) -> &'static str {
    match frame_type {
        TYPE_HEADERS => "HEADERS",
        TYPE_CONTINUATION => "CONTINUATION",
        // Only header-block frames are named in errors; any other type is a bug upstream.
        _ => "non-header",
    }
}

fn parse_frame_header(bytes: &[u8]) -> FrameHeader {
    let b = |i: usize| bytes.get(i).copied().unwrap_or(0);
    FrameHeader {
        len: u32::from_be_bytes([0, b(0), b(1), b(2)]),
        frame_type: b(3),
        flags: b(4),
        // The reserved high bit is ignored on receipt (RFC 9113 §4.1).
        stream: u32::from_be_bytes([b(5), b(6), b(7), b(8)]) & 0x7fff_ffff,
    }
}

fn write_frame_header(out: &mut Vec<u8>, header: FrameHeader) {
    let len = header.len.to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.push(header.frame_type);
    out.push(header.flags);
    out.extend_from_slice(&header.stream.to_be_bytes());
}

/// Splits a HEADERS payload into its priority fields and header block fragment, dropping padding.
fn split_headers_payload(
    header: FrameHeader,
    payload: &[u8],
) -> Result<(Option<[u8; PRIORITY_LEN]>, &[u8]), FrontError> {
    let truncated = || FrontError::TruncatedHeaders {
        stream: header.stream,
        len: payload.len(),
    };
    let mut rest = payload;
    let mut pad_len = 0usize;
    if header.flags & FLAG_PADDED != 0 {
        let (&first, tail) = rest.split_first().ok_or_else(truncated)?;
        pad_len = usize::from(first);
        rest = tail;
    }
    let mut priority = None;
    if header.flags & FLAG_PRIORITY != 0 {
        let (fields, tail) = rest
            .split_first_chunk::<PRIORITY_LEN>()
            .ok_or_else(truncated)?;
        priority = Some(*fields);
        rest = tail;
    }
    let fragment_len = rest
        .len()
        .checked_sub(pad_len)
        .ok_or(FrontError::PaddingTooLong {
            stream: header.stream,
            pad_len,
            len: payload.len(),
        })?;
    Ok((priority, &rest[..fragment_len]))
}

/// Writes `encoded` as one HEADERS frame and as many CONTINUATIONs as [`MAX_FRAME_SIZE`] needs.
fn write_header_block(out: &mut Vec<u8>, block: &OpenBlock, encoded: &[u8]) {
    let max = MAX_FRAME_SIZE as usize;
    let priority_len = block.priority.map_or(0, |_| PRIORITY_LEN);
    let (first, mut rest) = encoded.split_at(encoded.len().min(max - priority_len));
    let mut flags = 0;
    if block.end_stream {
        flags |= FLAG_END_STREAM;
    }
    if block.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    write_frame_header(
        out,
        FrameHeader {
            len: frame_len(priority_len + first.len()),
            frame_type: TYPE_HEADERS,
            flags,
            stream: block.stream,
        },
    );
    if let Some(priority) = &block.priority {
        out.extend_from_slice(priority);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(max));
        rest = tail;
        write_frame_header(
            out,
            FrameHeader {
                len: frame_len(chunk.len()),
                frame_type: TYPE_CONTINUATION,
                flags: if rest.is_empty() { FLAG_END_HEADERS } else { 0 },
                stream: block.stream,
            },
        );
        out.extend_from_slice(chunk);
    }
}

/// Every emitted frame is at most [`MAX_FRAME_SIZE`], so the length always fits.
fn frame_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(MAX_FRAME_SIZE)
}

// === impl AuthorityFront ===

/// A server-side connection whose client-to-server bytes pass through a [`FrameRewriter`].
pub(crate) struct AuthorityFront<S> {
    inner: S,
    rewriter: FrameRewriter,
    /// Rewritten bytes not yet handed to h2, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    scratch: Box<[u8]>,
    failed: bool,
}

impl<S> fmt::Debug for AuthorityFront<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorityFront")
            .field("rewriter", &self.rewriter)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<S> AuthorityFront<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            rewriter: FrameRewriter::new(),
            out: Vec::new(),
            out_pos: 0,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            failed: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFront<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.failed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "connection refused by the HTTP/2 front",
                )));
            }
            if this.out_pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_pos);
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // End of stream; h2 reports a truncated frame itself.
                return Poll::Ready(Ok(()));
            }
            if let Err(error) = this.rewriter.feed(read.filled(), &mut this.out) {
                tracing::warn!(error = %ErrorChain::new(&error), "closing a workload api connection");
                this.failed = true;
                this.out.clear();
                this.out_pos = 0;
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFront<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Connected for AuthorityFront<tokio::net::UnixStream> {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests;
