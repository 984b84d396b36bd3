//! The HTTP/2 `:authority` front: real grpc-core bytes, HPACK round trips, framing rules, caps.

use loona_hpack::Decoder;

use super::hpack::{HpackError, STATIC_TABLE, encode_integer, encode_literal_without_indexing};
use super::*;

/// grpcio 1.85's bytes for two FetchJWTSVID calls on one connection (see the file's header).
const GRPC_CORE_CAPTURE: &str = include_str!("../testdata/grpc-core-1.85-fetch-jwtsvid.hex");

type Fields = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    frame_type: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    fn new(frame_type: u8, flags: u8, stream: u32, payload: &[u8]) -> Self {
        Self {
            frame_type,
            flags,
            stream,
            payload: payload.to_vec(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame_header(
            &mut out,
            FrameHeader {
                len: u32::try_from(self.payload.len()).unwrap(),
                frame_type: self.frame_type,
                flags: self.flags,
                stream: self.stream,
            },
        );
        out.extend_from_slice(&self.payload);
        out
    }
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// The captured frames, one per non-comment line.
fn capture() -> Vec<u8> {
    GRPC_CORE_CAPTURE
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .flat_map(hex)
        .collect()
}

fn with_preface(frames: &[Frame]) -> Vec<u8> {
    let mut bytes = PREFACE.to_vec();
    for frame in frames {
        bytes.extend(frame.bytes());
    }
    bytes
}

fn rewrite_in_chunks(input: &[u8], chunk: usize) -> Result<Vec<u8>, FrontError> {
    let mut rewriter = FrameRewriter::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        rewriter.feed(piece, &mut out)?;
    }
    Ok(out)
}

fn rewrite(input: &[u8]) -> Result<Vec<u8>, FrontError> {
    rewrite_in_chunks(input, input.len().max(1))
}

fn parse_frames(bytes: &[u8]) -> Vec<Frame> {
    assert!(bytes.starts_with(PREFACE), "output starts with the preface");
    let mut rest = &bytes[PREFACE.len()..];
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let header = parse_frame_header(&rest[..FRAME_HEADER_LEN]);
        let end = FRAME_HEADER_LEN + header.len as usize;
        frames.push(Frame::new(
            header.frame_type,
            header.flags,
            header.stream,
            &rest[FRAME_HEADER_LEN..end],
        ));
        rest = &rest[end..];
    }
    frames
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn decode_with(decoder: &mut Decoder<'_>, block: &[u8]) -> Fields {
    decoder
        .decode(block)
        .unwrap()
        .into_iter()
        .map(|(n, v)| (text(&n), text(&v)))
        .collect()
}

/// The header blocks of an input stream as the client's encoder meant them: one decoder for
/// the whole connection, padding and priority fields removed.
fn client_view(frames: &[Frame]) -> Vec<(u32, Fields)> {
    let mut decoder = Decoder::new();
    let mut blocks = Vec::new();
    let mut block = Vec::new();
    for frame in frames {
        match frame.frame_type {
            TYPE_HEADERS => {
                let header = FrameHeader {
                    len: 0,
                    frame_type: frame.frame_type,
                    flags: frame.flags,
                    stream: frame.stream,
                };
                let (_, fragment) = split_headers_payload(header, &frame.payload).unwrap();
                block = fragment.to_vec();
            }
            TYPE_CONTINUATION => block.extend_from_slice(&frame.payload),
            _ => continue,
        }
        if frame.flags & FLAG_END_HEADERS != 0 {
            blocks.push((frame.stream, decode_with(&mut decoder, &block)));
        }
    }
    blocks
}

/// The header blocks of the output as h2 decodes them, each with a FRESH decoder: passing
/// proves no block depends on the server's dynamic table.
fn server_view(frames: &[Frame]) -> Vec<(u32, Fields)> {
    let mut blocks = Vec::new();
    let mut block = Vec::new();
    for frame in frames {
        match frame.frame_type {
            TYPE_HEADERS => {
                assert_eq!(frame.flags & FLAG_PADDED, 0, "the front never pads");
                let skip = if frame.flags & FLAG_PRIORITY != 0 {
                    PRIORITY_LEN
                } else {
                    0
                };
                block = frame.payload[skip..].to_vec();
            }
            TYPE_CONTINUATION => block.extend_from_slice(&frame.payload),
            _ => continue,
        }
        assert!(frame.payload.len() <= MAX_FRAME_SIZE as usize);
        if frame.flags & FLAG_END_HEADERS != 0 {
            blocks.push((frame.stream, decode_with(&mut Decoder::new(), &block)));
        }
    }
    blocks
}

fn non_header_frames(frames: &[Frame]) -> Vec<Frame> {
    frames
        .iter()
        .filter(|f| !matches!(f.frame_type, TYPE_HEADERS | TYPE_CONTINUATION))
        .cloned()
        .collect()
}

fn authority_of(fields: &Fields) -> Vec<&str> {
    fields
        .iter()
        .filter(|(n, _)| n == ":authority")
        .map(|(_, v)| v.as_str())
        .collect()
}

fn with_authority(fields: &Fields, authority: &str) -> Fields {
    fields
        .iter()
        .map(|(n, v)| {
            let v = if n == ":authority" { authority } else { v };
            (n.clone(), v.to_owned())
        })
        .collect()
}

fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_literal_without_indexing(&mut out, name.as_bytes(), value.as_bytes());
    out
}

/// A minimal GET with the given `:authority` representation appended.
fn request_block(authority: &[u8]) -> Vec<u8> {
    // :method GET, :scheme http, :path / (static table 2, 6, 4).
    let mut block = vec![0x82, 0x86, 0x84];
    block.extend_from_slice(authority);
    block
}

fn headers(flags: u8, stream: u32, block: &[u8]) -> Frame {
    Frame::new(TYPE_HEADERS, flags, stream, block)
}

// --- Real clients -------------------------------------------------------------------------

#[test]
fn grpc_core_authority_is_replaced_and_everything_else_is_kept() {
    let input = [&PREFACE[..], &capture()].concat();
    let in_frames = parse_frames(&input);
    let client = client_view(&in_frames);
    assert_eq!(client.len(), 2, "two requests in the capture");
    for (_, fields) in &client {
        assert_eq!(authority_of(fields), ["tmp%2Frepro%2Fcap%2Fw.sock"]);
        assert!(http::uri::Authority::try_from("tmp%2Frepro%2Fcap%2Fw.sock").is_err());
    }

    let mut rewriter = FrameRewriter::new();
    let mut output = Vec::new();
    rewriter.feed(&input, &mut output).unwrap();
    assert_eq!(
        rewriter.rewritten(),
        2,
        "both requests, the second by index"
    );
    let out_frames = parse_frames(&output);

    let server = server_view(&out_frames);
    let expected: Vec<(u32, Fields)> = client
        .iter()
        .map(|(stream, fields)| (*stream, with_authority(fields, "localhost")))
        .collect();
    assert_eq!(server, expected);
    assert_eq!(
        non_header_frames(&out_frames),
        non_header_frames(&in_frames)
    );
    let flags: Vec<u8> = out_frames
        .iter()
        .filter(|f| f.frame_type == TYPE_HEADERS)
        .map(|f| f.flags)
        .collect();
    assert_eq!(flags, [FLAG_END_HEADERS, FLAG_END_HEADERS]);
}

#[test]
fn output_is_the_same_for_every_split_of_the_input() {
    let input = [&PREFACE[..], &capture()].concat();
    let whole = rewrite(&input).unwrap();
    for chunk in [1, 2, 7, 9, 24, 100] {
        assert_eq!(
            rewrite_in_chunks(&input, chunk).unwrap(),
            whole,
            "chunk {chunk}"
        );
    }
}

// --- HPACK round trips ----------------------------------------------------------------------

#[test]
fn a_valid_huffman_coded_authority_is_kept() {
    // RFC 7541 C.4.1: `:authority: www.example.com`, Huffman coded, with incremental indexing;
    // then C.4.2, which refers to it in the dynamic table (index 62 = 0xbe).
    let first = hex("828684418cf1e3c2e5f23a6ba0ab90f4ff");
    let second = hex("828684be5886a8eb10649cbf");
    let input = with_preface(&[
        headers(FLAG_END_HEADERS | FLAG_END_STREAM, 1, &first),
        headers(FLAG_END_HEADERS | FLAG_END_STREAM, 3, &second),
    ]);
    let frames = parse_frames(&rewrite(&input).unwrap());
    let server = server_view(&frames);
    assert_eq!(server, client_view(&parse_frames(&input)));
    assert_eq!(authority_of(&server[0].1), ["www.example.com"]);
    assert_eq!(authority_of(&server[1].1), ["www.example.com"]);
    assert!(
        server[1]
            .1
            .contains(&("cache-control".into(), "no-cache".into()))
    );
    assert!(frames.iter().all(|f| f.flags & FLAG_END_STREAM != 0));
}

#[test]
fn a_huffman_coded_refused_authority_is_replaced() {
    // `tmp%2fw.sock`, Huffman coded (H bit set, 9 octets), literal with incremental indexing
    // and the static name `:authority` (index 1); then the same by dynamic index 62.
    let huffman = hex("89 4d35aa297c2e8393af");
    let mut first = vec![0x41];
    first.extend_from_slice(&huffman);
    let input = with_preface(&[
        headers(FLAG_END_HEADERS, 1, &request_block(&first)),
        headers(FLAG_END_HEADERS, 3, &request_block(&[0xbe])),
    ]);
    let client = client_view(&parse_frames(&input));
    assert_eq!(
        authority_of(&client[0].1),
        ["tmp%2fw.sock"],
        "fixture is right"
    );
    assert_eq!(
        authority_of(&client[1].1),
        ["tmp%2fw.sock"],
        "fixture is right"
    );
    let server = server_view(&parse_frames(&rewrite(&input).unwrap()));
    assert_eq!(authority_of(&server[0].1), ["localhost"]);
    assert_eq!(authority_of(&server[1].1), ["localhost"]);
    assert_eq!(
        &server[0].1[..3],
        &client[0].1[..3],
        "other fields kept in order"
    );
}

#[test]
fn authorities_h2_accepts_are_never_touched() {
    for authority in [
        "localhost",
        "example.org:8443",
        "user%40x@host",
        "[::1]:80",
        "a",
    ] {
        assert!(
            http::uri::Authority::try_from(authority).is_ok(),
            "{authority}"
        );
        let input = with_preface(&[headers(
            FLAG_END_HEADERS,
            1,
            &request_block(&literal(":authority", authority)),
        )]);
        let server = server_view(&parse_frames(&rewrite(&input).unwrap()));
        assert_eq!(authority_of(&server[0].1), [authority]);
    }
    for refused in ["", "tmp%2Fa.sock", "a b", "a/b", "é"] {
        let input = with_preface(&[headers(
            FLAG_END_HEADERS,
            1,
            &request_block(&literal(":authority", refused)),
        )]);
        let server = server_view(&parse_frames(&rewrite(&input).unwrap()));
        assert_eq!(authority_of(&server[0].1), ["localhost"], "{refused:?}");
    }
}

#[test]
fn a_field_named_like_authority_but_not_the_pseudo_header_is_kept() {
    let block = [
        request_block(&literal(":authority", "localhost")),
        literal("authority", "tmp%2Fa"),
        literal("host", "tmp%2Fa"),
    ]
    .concat();
    let input = with_preface(&[headers(FLAG_END_HEADERS, 1, &block)]);
    let server = server_view(&parse_frames(&rewrite(&input).unwrap()));
    assert!(
        server[0]
            .1
            .contains(&("authority".into(), "tmp%2Fa".into()))
    );
    assert!(server[0].1.contains(&("host".into(), "tmp%2Fa".into())));
}

#[test]
fn dynamic_table_size_updates_are_followed_and_capped() {
    // Index a field, shrink the table to 0 (evicting it), grow back: the entry is gone.
    let indexed = [vec![0x40], literal("x-a", "1")[1..].to_vec()].concat();
    let input = with_preface(&[
        headers(FLAG_END_HEADERS, 1, &request_block(&indexed)),
        headers(
            FLAG_END_HEADERS,
            3,
            &[&[0x20, 0x3f, 0xe1, 0x1f][..], &request_block(&[0xbe])].concat(),
        ),
    ]);
    assert!(matches!(
        rewrite(&input),
        Err(FrontError::Hpack {
            stream: 3,
            source: HpackError::BadIndex { index: 62 }
        })
    ));

    // Without the size update, the second block refers to the entry and it decodes.
    let input = with_preface(&[
        headers(FLAG_END_HEADERS, 1, &request_block(&indexed)),
        headers(
            FLAG_END_HEADERS,
            3,
            &[&[0x3f, 0xe1, 0x1f][..], &request_block(&[0xbe])].concat(),
        ),
    ]);
    let server = server_view(&parse_frames(&rewrite(&input).unwrap()));
    assert!(server[1].1.contains(&("x-a".into(), "1".into())));

    // 4097 is above the table size the server allows.
    let input = with_preface(&[headers(
        FLAG_END_HEADERS,
        1,
        &[&[0x3f, 0xe2, 0x1f][..], &request_block(&[])].concat(),
    )]);
    assert!(matches!(
        rewrite(&input),
        Err(FrontError::Hpack {
            source: HpackError::TableSizeAboveLimit {
                size: 4097,
                max: 4096
            },
            ..
        })
    ));
}

#[test]
fn malformed_hpack_closes_the_connection() {
    for block in [
        vec![0x80],                   // index 0
        vec![0xff, 0xff, 0xff, 0xff], // truncated integer
        vec![0x00, 0x05, b'a'],       // string longer than the block
        vec![0x00, 0x81, 0xff],       // Huffman padding of 8 bits
        vec![0x82, 0xc0],             // dynamic index 64 in an empty table
    ] {
        let input = with_preface(&[headers(FLAG_END_HEADERS, 1, &block)]);
        assert!(
            matches!(rewrite(&input), Err(FrontError::Hpack { stream: 1, .. })),
            "{block:02x?}"
        );
    }
}

// --- Framing --------------------------------------------------------------------------------

#[test]
fn padding_is_dropped_and_priority_kept() {
    let block = request_block(&literal(":authority", "tmp%2Fa.sock"));
    let priority = [0x80, 0, 0, 0x01, 0xff];
    let mut payload = vec![3];
    payload.extend_from_slice(&priority);
    payload.extend_from_slice(&block);
    payload.extend_from_slice(&[0, 0, 0]);
    let input = with_preface(&[headers(
        FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM,
        5,
        &payload,
    )]);
    let frames = parse_frames(&rewrite(&input).unwrap());
    assert_eq!(frames.len(), 1);
    assert_eq!(
        frames[0].flags,
        FLAG_END_HEADERS | FLAG_PRIORITY | FLAG_END_STREAM
    );
    assert_eq!(frames[0].payload[..PRIORITY_LEN], priority);
    let server = server_view(&frames);
    assert_eq!(authority_of(&server[0].1), ["localhost"]);
}

#[test]
fn continuations_are_joined_and_large_blocks_resplit_to_the_frame_size() {
    let big = "v".repeat(40_000);
    let block = [
        request_block(&literal(":authority", "tmp%2Fa.sock")),
        literal("x-big", &big),
    ]
    .concat();
    let parts: Vec<&[u8]> = block.chunks(10_000).collect();
    let mut frames = vec![headers(FLAG_END_STREAM, 7, parts[0])];
    for (i, part) in parts[1..].iter().enumerate() {
        let last = i + 2 == parts.len();
        let flags = if last { FLAG_END_HEADERS } else { 0 };
        frames.push(Frame::new(TYPE_CONTINUATION, flags, 7, part));
    }
    let input = with_preface(&frames);
    let out = parse_frames(&rewrite(&input).unwrap());
    let kinds: Vec<(u8, u8)> = out.iter().map(|f| (f.frame_type, f.flags)).collect();
    assert_eq!(
        kinds,
        [
            (TYPE_HEADERS, FLAG_END_STREAM),
            (TYPE_CONTINUATION, 0),
            (TYPE_CONTINUATION, FLAG_END_HEADERS)
        ]
    );
    assert!(
        out[..2]
            .iter()
            .all(|f| f.payload.len() == MAX_FRAME_SIZE as usize)
    );
    let server = server_view(&out);
    assert_eq!(authority_of(&server[0].1), ["localhost"]);
    assert!(server[0].1.contains(&("x-big".into(), big)));
}

#[test]
fn other_frames_pass_through_byte_for_byte() {
    let frames = [
        Frame::new(0x4, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]), // SETTINGS
        Frame::new(0x6, 0, 0, b"12345678"),               // PING
        Frame::new(0x0, 0x1, 1, &vec![7; 20_000]),        // DATA larger than a frame: h2's call
        Frame::new(0x0, 0, 1, &[]),                       // empty DATA
        Frame::new(0xfa, 0x3, 9, b"unknown"),             // unknown type
        Frame::new(0x7, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]), // GOAWAY
    ];
    let input = with_preface(&frames);
    assert_eq!(rewrite(&input).unwrap(), input);
}

#[test]
fn framing_rules_are_enforced() {
    type Check = fn(&FrontError) -> bool;
    let ok_block = request_block(&literal(":authority", "a"));
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        (
            "preface",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            |e| matches!(e, FrontError::BadPreface),
        ),
        (
            "interleaved",
            with_preface(&[headers(0, 1, &ok_block), Frame::new(0x6, 0, 0, b"12345678")]),
            |e| {
                matches!(
                    e,
                    FrontError::ContinuationExpected {
                        stream: 1,
                        frame_type: 0x6,
                        got_stream: 0
                    }
                )
            },
        ),
        (
            "continuation of another stream",
            with_preface(&[
                headers(0, 1, &ok_block),
                Frame::new(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, &[]),
            ]),
            |e| {
                matches!(
                    e,
                    FrontError::ContinuationExpected {
                        stream: 1,
                        got_stream: 3,
                        ..
                    }
                )
            },
        ),
        (
            "continuation without headers",
            with_preface(&[Frame::new(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &[])]),
            |e| matches!(e, FrontError::UnexpectedContinuation { stream: 1 }),
        ),
        (
            "push promise",
            with_preface(&[Frame::new(
                TYPE_PUSH_PROMISE,
                FLAG_END_HEADERS,
                1,
                &[0, 0, 0, 2],
            )]),
            |e| matches!(e, FrontError::PushPromise { stream: 1 }),
        ),
        (
            "stream 0",
            with_preface(&[headers(FLAG_END_HEADERS, 0, &ok_block)]),
            |e| matches!(e, FrontError::StreamZero { kind: "HEADERS" }),
        ),
        (
            "padding too long",
            with_preface(&[headers(FLAG_END_HEADERS | FLAG_PADDED, 1, &[9, 0x82])]),
            |e| {
                matches!(
                    e,
                    FrontError::PaddingTooLong {
                        stream: 1,
                        pad_len: 9,
                        len: 2
                    }
                )
            },
        ),
        (
            "no pad length",
            with_preface(&[headers(FLAG_END_HEADERS | FLAG_PADDED, 1, &[])]),
            |e| matches!(e, FrontError::TruncatedHeaders { stream: 1, len: 0 }),
        ),
        (
            "short priority",
            with_preface(&[headers(FLAG_END_HEADERS | FLAG_PRIORITY, 1, &[0, 0])]),
            |e| matches!(e, FrontError::TruncatedHeaders { stream: 1, len: 2 }),
        ),
    ];
    for (case, input, check) in cases {
        let result = rewrite(&input);
        assert!(result.as_ref().is_err_and(check), "{case}: {result:?}");
    }
}

#[test]
fn errors_name_the_rule() {
    let error = FrontError::HeaderBlockTooLarge {
        stream: 3,
        max: MAX_HEADER_BLOCK_BYTES,
    };
    assert_eq!(
        error.to_string(),
        "header block on stream 3 exceeds 65536 bytes"
    );
    let error = FrontError::FrameTooLarge {
        kind: "HEADERS",
        len: 16_385,
        max: MAX_FRAME_SIZE,
    };
    assert_eq!(
        error.to_string(),
        "HEADERS frame of 16385 bytes exceeds the maximum frame size of 16384 bytes"
    );
}

// --- Caps -----------------------------------------------------------------------------------

#[test]
fn an_oversize_header_frame_is_refused_from_its_header_alone() {
    let mut input = PREFACE.to_vec();
    write_frame_header(
        &mut input,
        FrameHeader {
            len: MAX_FRAME_SIZE + 1,
            frame_type: TYPE_HEADERS,
            flags: FLAG_END_HEADERS,
            stream: 1,
        },
    );
    // No payload follows: the refusal does not wait for (or buffer) it.
    assert!(matches!(
        rewrite(&input),
        Err(FrontError::FrameTooLarge {
            kind: "HEADERS",
            len: 16_385,
            ..
        })
    ));
}

#[test]
fn an_endless_header_block_is_refused_at_the_cap() {
    let mut frames = vec![headers(0, 1, &vec![0; MAX_FRAME_SIZE as usize])];
    for _ in 0..4 {
        frames.push(Frame::new(
            TYPE_CONTINUATION,
            0,
            1,
            &vec![0; MAX_FRAME_SIZE as usize],
        ));
    }
    let mut rewriter = FrameRewriter::new();
    let mut out = Vec::new();
    let bytes = with_preface(&frames);
    assert!(matches!(
        rewriter.feed(&bytes, &mut out),
        Err(FrontError::HeaderBlockTooLarge { stream: 1, max }) if max == MAX_HEADER_BLOCK_BYTES
    ));
    assert_eq!(out, PREFACE, "nothing of the block reached h2");

    let mut frames = vec![headers(0, 1, &[0x82])];
    frames.extend((0..=MAX_CONTINUATION_FRAMES).map(|_| Frame::new(TYPE_CONTINUATION, 0, 1, &[])));
    assert!(matches!(
        rewrite(&with_preface(&frames)),
        Err(FrontError::TooManyContinuations { stream: 1, .. })
    ));
}

#[test]
fn an_hpack_bomb_is_refused_at_the_list_cap() {
    // One 4,000-byte entry in the dynamic table, then one byte per reference to it: a 100-byte
    // block that would decode to ~400 KB.
    let mut block = vec![0x40];
    block.extend_from_slice(&literal("x-bomb", &"b".repeat(4_000))[1..]);
    block.extend(std::iter::repeat_n(0xbe, 100));
    let input = with_preface(&[headers(FLAG_END_HEADERS, 1, &block)]);
    assert!(matches!(
        rewrite(&input),
        Err(FrontError::Hpack { stream: 1, source: HpackError::ListTooLarge { max } }) if max == MAX_HEADER_LIST_BYTES
    ));

    // Just under the cap decodes.
    let mut block = vec![0x40];
    block.extend_from_slice(&literal("x-bomb", &"b".repeat(4_000))[1..]);
    block.extend(std::iter::repeat_n(0xbe, 14));
    let input = with_preface(&[headers(FLAG_END_HEADERS, 1, &block)]);
    let server = server_view(&parse_frames(&rewrite(&input).unwrap()));
    assert_eq!(server[0].1.len(), 15);
}

// --- Encoding -------------------------------------------------------------------------------

#[test]
fn integers_encode_as_in_rfc_7541_appendix_c1() {
    let mut out = Vec::new();
    encode_integer(&mut out, 10, 5, 0);
    assert_eq!(out, [0x0a]);
    out.clear();
    encode_integer(&mut out, 1337, 5, 0);
    assert_eq!(out, [0x1f, 0x9a, 0x0a]);
    out.clear();
    encode_integer(&mut out, 42, 8, 0);
    assert_eq!(out, [0x2a]);
    out.clear();
    encode_integer(&mut out, 127, 7, 0x80);
    assert_eq!(out, [0xff, 0x00]);
}

#[test]
fn literal_encoding_round_trips_through_a_fresh_decoder() {
    for len in [0, 1, 126, 127, 128, 300, 20_000] {
        let value = "z".repeat(len);
        let block = literal("x-len", &value);
        assert_eq!(block[0], 0x00, "literal without indexing, new name");
        let fields = decode_with(&mut Decoder::new(), &block);
        assert_eq!(fields, [("x-len".to_owned(), value)]);
    }
}

// --- The decoder against an independent one -----------------------------------------------

fn ours(decoder: &mut hpack::Decoder, block: &[u8]) -> Result<Fields, HpackError> {
    Ok(decoder
        .decode(block, MAX_HEADER_LIST_BYTES)?
        .into_iter()
        .map(|f| (text(&f.name), text(&f.value)))
        .collect())
}

#[test]
fn the_static_table_matches_loona_hpacks() {
    let mut theirs = Decoder::new();
    for (i, (name, value)) in STATIC_TABLE.iter().enumerate() {
        let index = u8::try_from(i + 1).unwrap();
        let expected = vec![((*name).to_owned(), (*value).to_owned())];
        assert_eq!(
            decode_with(&mut theirs, &[0x80 | index]),
            expected,
            "index {index}"
        );
        let mut mine = hpack::Decoder::new(CLIENT_HEADER_TABLE_SIZE);
        assert_eq!(ours(&mut mine, &[0x80 | index]).unwrap(), expected);
    }
    let mut mine = hpack::Decoder::new(CLIENT_HEADER_TABLE_SIZE);
    assert_eq!(
        ours(&mut mine, &[0x80 | 62]),
        Err(HpackError::BadIndex { index: 62 })
    );
}

#[test]
fn blocks_from_an_indexing_encoder_decode_as_it_meant_them() {
    // loona-hpack's encoder indexes every new name and refers back to it, so the blocks lean
    // on the dynamic table; 200 distinct 60-byte fields overflow 4,096 bytes and force eviction.
    let mut encoder = loona_hpack::Encoder::new();
    let mut mine = hpack::Decoder::new(CLIENT_HEADER_TABLE_SIZE);
    let mut theirs = Decoder::new();
    for round in 0..20 {
        let list: Vec<(String, String)> = (0..10)
            .map(|i| {
                (
                    format!("x-field-{}", (round * 7 + i) % 200),
                    format!("{round}-{i}-{}", "v".repeat(40)),
                )
            })
            .chain([(":authority".to_owned(), "tmp%2Fa.sock".to_owned())])
            .collect();
        let block = encoder.encode(list.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
        let decoded = ours(&mut mine, &block).unwrap();
        assert_eq!(decoded, list, "round {round}");
        assert_eq!(decoded, decode_with(&mut theirs, &block), "round {round}");
    }
}

#[test]
fn decoder_rules_from_rfc_7541() {
    let fresh = || hpack::Decoder::new(CLIENT_HEADER_TABLE_SIZE);
    // §4.2: a size update after a field.
    assert_eq!(
        ours(&mut fresh(), &[0x82, 0x20]),
        Err(HpackError::LateTableSizeUpdate)
    );
    // §5.1: an integer longer than any capped block needs.
    assert_eq!(
        ours(&mut fresh(), &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
        Err(HpackError::IntegerTooLong)
    );
    // §4.4: an entry larger than the table empties it and is not added.
    let mut decoder = fresh();
    let small = [vec![0x40], literal("x-a", "1")[1..].to_vec()].concat();
    let large = [vec![0x40], literal("x-b", &"b".repeat(4_100))[1..].to_vec()].concat();
    ours(&mut decoder, &small).unwrap();
    assert_eq!(
        ours(&mut decoder, &[0xbe]).unwrap(),
        [("x-a".into(), "1".into())]
    );
    ours(&mut decoder, &large).unwrap();
    assert_eq!(
        ours(&mut decoder, &[0xbe]),
        Err(HpackError::BadIndex { index: 62 })
    );
    // §5.2: EOS inside a Huffman string (30 one-bits, then padding).
    assert!(matches!(
        ours(&mut fresh(), &[0x00, 0x84, 0xff, 0xff, 0xff, 0xff]),
        Err(HpackError::Huffman { .. })
    ));
}

#[test]
fn never_indexed_fields_stay_never_indexed() {
    // 0x10: literal never indexed, new name.
    let mut block = request_block(&literal(":authority", "localhost"));
    block.push(0x10);
    block.extend_from_slice(&literal("authorization", "Bearer x")[1..]);
    let input = with_preface(&[headers(FLAG_END_HEADERS, 1, &block)]);
    let out = parse_frames(&rewrite(&input).unwrap());
    let payload = &out[0].payload;
    let tail = [
        vec![0x10],
        literal("authorization", "Bearer x")[1..].to_vec(),
    ]
    .concat();
    assert!(payload.ends_with(&tail), "{payload:02x?}");
}
