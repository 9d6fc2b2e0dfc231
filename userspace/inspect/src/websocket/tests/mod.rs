//! Frame reader tests: every split point, fragmentation, masking, each refusal.

use super::{Frame, FrameReader, Opcode, Sender, WsError, WsEvent, accept_key};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const MAX: u64 = 1 << 20;

/// Wire bytes of one frame: `b0` is FIN/RSV/opcode, the length in its shortest form.
fn frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![b0];
    let m = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xffff {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        None => out.extend_from_slice(payload),
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().zip(k.iter().cycle()).map(|(b, k)| b ^ k));
        }
    }
    out
}

const FIN: u8 = 0x80;

/// An owned event, with adjacent payload pieces merged so that chunkings compare equal.
#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Frame(Frame),
    Payload(Opcode, Vec<u8>),
    End(bool),
}

/// Feeds `input` split at `cuts`; returns the events, the raw bytes they carried, and the
/// first error.
fn read(sender: Sender, input: &[u8], cuts: &[usize]) -> (Vec<Ev>, Vec<u8>, Option<WsError>) {
    let mut r = FrameReader::new(sender, MAX);
    let mut evs: Vec<Ev> = Vec::new();
    let mut raw = Vec::new();
    let mut from = 0;
    for &at in cuts.iter().chain(std::iter::once(&input.len())) {
        let at = at.clamp(from, input.len());
        let result = r.feed(&input[from..at], &mut |e| match e {
            WsEvent::Frame { frame, raw: r } => {
                raw.extend_from_slice(r);
                evs.push(Ev::Frame(frame));
            }
            WsEvent::Payload {
                message,
                data,
                raw: r,
            } => {
                assert_eq!(data.len(), r.len());
                raw.extend_from_slice(r);
                match evs.last_mut() {
                    Some(Ev::Payload(op, d)) if *op == message => d.extend_from_slice(data),
                    _ => evs.push(Ev::Payload(message, data.to_vec())),
                }
            }
            WsEvent::FrameEnd { message_end } => evs.push(Ev::End(message_end)),
        });
        if let Err(e) = result {
            return (evs, raw, Some(e));
        }
        from = at;
    }
    (evs, raw, None)
}

/// A server stream and a client stream exercising each length form and opcode.
fn streams() -> Vec<(Sender, Vec<u8>)> {
    let big = vec![b'x'; 300];
    let huge: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let mut out = Vec::new();
    for (sender, mask) in [(Sender::Server, None), (Sender::Client, Some(KEY))] {
        let mut s = Vec::new();
        s.extend(frame(FIN | 1, b"hello", mask));
        s.extend(frame(FIN | 2, &big, mask));
        s.extend(frame(FIN | 9, b"", mask));
        s.extend(frame(FIN | 2, &huge, mask));
        s.extend(frame(2, b"frag", mask));
        s.extend(frame(FIN | 10, b"pong", mask));
        s.extend(frame(FIN, b"ment", mask));
        s.extend(frame(FIN | 8, &[3, 232], mask));
        out.push((sender, s));
    }
    out
}

#[test]
fn every_split_point_gives_the_same_events_and_bytes() {
    for (sender, input) in streams() {
        let (whole, raw, err) = read(sender, &input, &[]);
        assert_eq!(err, None);
        assert_eq!(raw, input);
        assert_eq!(whole.len(), 23, "{sender:?}");
        // Every prefix of the interesting part, then a sample of the long payload.
        let points = (0..=400)
            .chain((400..input.len()).step_by(997))
            .chain([input.len()]);
        for at in points {
            let (evs, raw, err) = read(sender, &input, &[at]);
            assert_eq!(
                (evs, err),
                (whole.clone(), None),
                "{sender:?} split at {at}"
            );
            assert_eq!(raw, input);
        }
        let small: Vec<u8> = input[..400].to_vec();
        let bytewise: Vec<usize> = (1..small.len()).collect();
        let (a, _, _) = read(sender, &small, &bytewise);
        let (b, _, _) = read(sender, &small, &[]);
        assert_eq!(a, b);
    }
}

#[test]
fn a_fragmented_message_with_an_interleaved_ping_is_one_stream() {
    let mut input = Vec::new();
    input.extend(frame(1, b"Hel", Some(KEY)));
    input.extend(frame(FIN | 9, b"are you there", Some(KEY)));
    input.extend(frame(0, b"lo ", Some(KEY)));
    input.extend(frame(FIN, b"world", Some(KEY)));
    let cuts: Vec<usize> = (1..input.len()).step_by(3).collect();
    let (evs, raw, err) = read(Sender::Client, &input, &cuts);
    assert_eq!((err, raw), (None, input));
    let text: Vec<u8> = evs
        .iter()
        .filter_map(|e| match e {
            Ev::Payload(Opcode::Text, d) => Some(d.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(text, b"Hello world");
    assert!(evs.contains(&Ev::Payload(Opcode::Ping, b"are you there".to_vec())));
    let ends: Vec<bool> = evs
        .iter()
        .filter_map(|e| match e {
            Ev::End(m) => Some(*m),
            _ => None,
        })
        .collect();
    assert_eq!(ends, [false, false, false, true]);
}

#[test]
fn masking_round_trips_and_raw_bytes_stay_masked() {
    let payload: Vec<u8> = (0..=255u8).collect();
    let wire = frame(FIN | 2, &payload, Some(KEY));
    for at in [2, 7, 8, 9, 10, 11, 100] {
        let mut r = FrameReader::new(Sender::Client, MAX);
        let mut data = Vec::new();
        let mut raw = Vec::new();
        for part in [&wire[..at], &wire[at..]] {
            r.feed(part, &mut |e| {
                if let WsEvent::Payload {
                    data: d, raw: w, ..
                } = e
                {
                    data.extend_from_slice(d);
                    raw.extend_from_slice(w);
                }
            })
            .unwrap();
        }
        assert_eq!(data, payload, "split at {at}");
        assert_eq!(raw, wire[8..], "split at {at}");
        assert!(r.at_frame_boundary());
    }
}

#[test]
fn each_violation_is_refused_with_its_reason() {
    let long = vec![0u8; 126];
    let cases: Vec<(Sender, Vec<u8>, WsError, &str)> = vec![
        (
            Sender::Server,
            frame(FIN | 0x40 | 1, b"x", None),
            WsError::ReservedBits,
            "ws-reserved-bits",
        ),
        (
            Sender::Server,
            frame(FIN | 3, b"x", None),
            WsError::ReservedOpcode { opcode: 3 },
            "ws-reserved-opcode",
        ),
        (
            Sender::Server,
            frame(FIN | 0xb, b"x", None),
            WsError::ReservedOpcode { opcode: 0xb },
            "ws-reserved-opcode",
        ),
        (
            Sender::Server,
            frame(FIN | 9, &long, None),
            WsError::ControlTooLong { len: 126 },
            "ws-control-too-long",
        ),
        (
            Sender::Server,
            frame(9, b"x", None),
            WsError::ControlFragmented,
            "ws-control-fragmented",
        ),
        (
            Sender::Client,
            frame(FIN | 1, b"x", None),
            WsError::UnmaskedClientFrame,
            "ws-unmasked-client-frame",
        ),
        (
            Sender::Server,
            frame(FIN | 1, b"x", Some(KEY)),
            WsError::MaskedServerFrame,
            "ws-masked-server-frame",
        ),
        (
            Sender::Server,
            [&[FIN | 2, 127, 0x80][..], &[0; 7]].concat(),
            WsError::LengthMsbSet,
            "ws-length-msb-set",
        ),
        (
            Sender::Server,
            vec![FIN | 2, 126, 0, 5],
            WsError::NonMinimalLength,
            "ws-non-minimal-length",
        ),
        (
            Sender::Server,
            [&[FIN | 2, 127][..], &[0, 0, 0, 0, 0, 0, 1, 0]].concat(),
            WsError::NonMinimalLength,
            "ws-non-minimal-length",
        ),
        (
            Sender::Server,
            frame(FIN, b"x", None),
            WsError::UnexpectedContinuation,
            "ws-unexpected-continuation",
        ),
        (
            Sender::Server,
            [frame(1, b"a", None), frame(FIN | 1, b"b", None)].concat(),
            WsError::ExpectedContinuation,
            "ws-expected-continuation",
        ),
        (
            Sender::Server,
            frame(FIN | 8, b"x", None),
            WsError::BadClosePayload,
            "ws-bad-close-payload",
        ),
        (
            Sender::Server,
            [frame(FIN | 8, b"", None), frame(FIN | 1, b"x", None)].concat(),
            WsError::AfterClose,
            "ws-after-close",
        ),
    ];
    for (sender, input, want, reason) in cases {
        let (_, _, err) = read(sender, &input, &[]);
        assert_eq!(err, Some(want), "{reason}");
        assert_eq!(want.reason(), reason);
        // Refused whatever the chunking, and for good.
        let (_, _, err) = read(sender, &input, &(1..input.len()).collect::<Vec<_>>());
        assert_eq!(err, Some(want), "{reason} bytewise");
    }
    let mut r = FrameReader::new(Sender::Server, MAX);
    assert!(r.feed(&frame(FIN | 3, b"", None), &mut |_| ()).is_err());
    assert_eq!(
        r.feed(&frame(FIN | 1, b"ok", None), &mut |_| ()),
        Err(WsError::ReservedOpcode { opcode: 3 })
    );
}

#[test]
fn message_size_counts_every_fragment() {
    let mut r = FrameReader::new(Sender::Server, 10);
    let ok = [frame(1, b"12345", None), frame(FIN, b"67890", None)].concat();
    r.feed(&ok, &mut |_| ()).unwrap();
    let too_big = [frame(2, b"12345", None), frame(0, b"678901", None)].concat();
    assert_eq!(
        r.feed(&too_big, &mut |_| ()),
        Err(WsError::MessageTooLarge { max: 10 })
    );
    // Refused on the header alone, before the payload arrives.
    let mut r = FrameReader::new(Sender::Server, 10);
    assert_eq!(
        r.feed(&[FIN | 2, 11], &mut |_| ()),
        Err(WsError::MessageTooLarge { max: 10 })
    );
}

#[test]
fn accept_key_matches_the_rfc_example() {
    // RFC 6455 §1.3.
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_eq!(
        accept_key(" dGhlIHNhbXBsZSBub25jZQ== "),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn a_secret_split_across_fragments_is_found_by_dlp() {
    use cork_dlp::{Config, KnownSecret, Scanner};
    const VALUE: &[u8] = b"cork-ws-secret-Zq8Xw2Rt5Yu7";
    let sc = Scanner::new(&Config {
        known_secrets: vec![KnownSecret {
            name: "REAL".into(),
            value: VALUE.to_vec(),
        }],
        ..Config::default()
    })
    .unwrap();
    let mut input = Vec::new();
    input.extend(frame(
        1,
        &[b"{\"q\": \"".as_slice(), &VALUE[..10]].concat(),
        Some(KEY),
    ));
    input.extend(frame(FIN | 9, b"ping", Some(KEY)));
    input.extend(frame(
        FIN,
        &[&VALUE[10..], b"\"}".as_slice()].concat(),
        Some(KEY),
    ));
    let mut r = FrameReader::new(Sender::Client, MAX);
    let mut scan = Some(sc.stream());
    let mut found = Vec::new();
    for chunk in input.chunks(4) {
        r.feed(chunk, &mut |e| match e {
            WsEvent::Payload {
                message: Opcode::Text,
                data,
                ..
            } => {
                found.extend(scan.as_mut().unwrap().feed(data));
            }
            WsEvent::FrameEnd { message_end: true } => {
                found.extend(scan.take().unwrap().finish());
            }
            _ => {}
        })
        .unwrap();
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].start, found[0].len), (7, VALUE.len()));
}
