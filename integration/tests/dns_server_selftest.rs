//! The test DNS server alone, without cork: a client in the bottle netns (outside any
//! bottle) asks it over UDP and TCP, on IPv4 and IPv6, and checks answers and the record
//! of queries.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cork_integration::World;
use cork_integration::dns_server::{DnsServer, ECH_CONFIG, HTTPS_TTL, Zone};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::svcb::{Alpn, SvcParamKey, SvcParamValue};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HTTPS, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

const WAIT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

fn query(id: u16, name: &str, qtype: RecordType, edns: bool) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m
}

/// Sends `msg` to `to` from the bottle netns; `None` when no reply came within `timeout`.
fn ask_raw(
    world: &World,
    to: SocketAddr,
    transport: Transport,
    msg: &Message,
    timeout: Duration,
) -> Result<Option<Message>> {
    let bytes = msg.to_vec()?;
    let reply = world.bottle().run(move || -> Result<Option<Vec<u8>>> {
        match transport {
            Transport::Udp => {
                let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                let s = UdpSocket::bind(bind)?;
                s.set_read_timeout(Some(timeout))?;
                s.send_to(&bytes, to)
                    .with_context(|| format!("send to {to}"))?;
                let mut buf = vec![0u8; 65536];
                match s.recv(&mut buf) {
                    Ok(n) => Ok(Some(buf[..n].to_vec())),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Transport::Tcp => {
                let mut s = TcpStream::connect_timeout(&to, WAIT)
                    .with_context(|| format!("connect {to}"))?;
                s.set_read_timeout(Some(timeout))?;
                let mut framed = u16::try_from(bytes.len())?.to_be_bytes().to_vec();
                framed.extend_from_slice(&bytes);
                s.write_all(&framed)?;
                let mut len = [0u8; 2];
                match s.read_exact(&mut len) {
                    Ok(()) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        return Ok(None);
                    }
                    Err(e) => return Err(e.into()),
                }
                let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                s.read_exact(&mut buf)?;
                Ok(Some(buf))
            }
        }
    })?;
    reply
        .map(|b| Message::from_vec(&b).context("parse reply"))
        .transpose()
}

/// Asks and expects an answer that echoes the id and the question, with AA set.
fn ask(
    world: &World,
    dns: &DnsServer,
    transport: Transport,
    name: &str,
    qtype: RecordType,
) -> Result<Message> {
    let id = 0x4000 | (dns.queries().len() as u16);
    let q = query(id, name, qtype, false);
    let Some(reply) = ask_raw(world, dns.addr(), transport, &q, WAIT)? else {
        bail!("no reply to {name} {qtype} over {transport:?}");
    };
    assert_eq!(reply.metadata.id, id);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    assert!(reply.metadata.authoritative, "{reply:?}");
    assert!(reply.metadata.recursion_desired, "{reply:?}");
    assert!(!reply.metadata.truncation, "{reply:?}");
    assert_eq!(reply.queries, q.queries);
    Ok(reply)
}

fn n(name: &str) -> Name {
    Name::from_ascii(name).unwrap()
}

fn rec(name: &str, ttl: u32, data: RData) -> Record {
    Record::from_rdata(n(name), ttl, data)
}

fn a(name: &str, ip: &str, ttl: u32) -> Record {
    rec(name, ttl, RData::A(A(ip.parse().unwrap())))
}

fn zone() -> Zone {
    Zone::new()
        .a("api.example.test", "198.51.100.10", 300)
        .a("api.example.test", "198.51.100.11", 30)
        .aaaa("api.example.test", "2001:db8::10", 120)
        .cname("www.example.test", "edge.example.test", 60)
        .cname("edge.example.test.", "API.example.test", 45)
        .cname("dangling.example.test", "gone.example.test", 60)
        .txt("txt.example.test", "v=test1 hello", 90)
        .https("api.example.test", true)
        .https("plain.example.test", false)
}

fn expect_ech(reply: &Message, owner: &str, with_ech: bool) {
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 1, "{reply:?}");
    let r = &reply.answers[0];
    assert_eq!((r.name.clone(), r.ttl), (n(owner), HTTPS_TTL));
    let RData::HTTPS(HTTPS(svcb)) = &r.data else {
        panic!("not HTTPS: {r:?}");
    };
    assert_eq!(svcb.svc_priority, 1);
    assert!(svcb.target_name.is_root());
    assert_eq!(
        svcb.svc_params[0],
        (
            SvcParamKey::Alpn,
            SvcParamValue::Alpn(Alpn(vec!["h2".into()]))
        )
    );
    let ech: Vec<_> = svcb
        .svc_params
        .iter()
        .filter(|(k, _)| *k == SvcParamKey::EchConfigList)
        .collect();
    if with_ech {
        assert_eq!(ech.len(), 1, "{svcb:?}");
        let SvcParamValue::EchConfigList(list) = &ech[0].1 else {
            panic!("{svcb:?}");
        };
        assert_eq!(list.0, ECH_CONFIG);
        assert_eq!(u16::from(SvcParamKey::EchConfigList), 5);
    } else {
        assert!(ech.is_empty(), "{svcb:?}");
    }
}

/// The full set of answers over one transport; returns the queries it made.
fn exercise(
    world: &World,
    dns: &DnsServer,
    t: Transport,
) -> Result<Vec<(String, String, &'static str)>> {
    let r = ask(world, dns, t, "api.example.test.", RecordType::A)?;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        r.answers,
        [
            a("api.example.test.", "198.51.100.10", 300),
            a("api.example.test.", "198.51.100.11", 30)
        ]
    );

    let r = ask(world, dns, t, "api.example.test.", RecordType::AAAA)?;
    let want = rec(
        "api.example.test.",
        120,
        RData::AAAA(AAAA("2001:db8::10".parse().unwrap())),
    );
    assert_eq!(r.answers, [want]);

    // Two CNAMEs, then the target's records; the first owner is spelled as asked.
    let r = ask(world, dns, t, "WWW.Example.TEST.", RecordType::A)?;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        r.answers,
        [
            rec(
                "WWW.Example.TEST.",
                60,
                RData::CNAME(CNAME(n("edge.example.test.")))
            ),
            rec(
                "edge.example.test.",
                45,
                RData::CNAME(CNAME(n("api.example.test.")))
            ),
            a("api.example.test.", "198.51.100.10", 300),
            a("api.example.test.", "198.51.100.11", 30),
        ]
    );
    assert!(r.answers[0].name.eq_case(&n("WWW.Example.TEST.")));

    // Asking for the CNAME itself does not follow it.
    let r = ask(world, dns, t, "www.example.test.", RecordType::CNAME)?;
    assert_eq!(r.answers.len(), 1, "{r:?}");
    assert_eq!(r.answers[0].record_type(), RecordType::CNAME);

    let r = ask(world, dns, t, "txt.example.test.", RecordType::TXT)?;
    let want = rec(
        "txt.example.test.",
        90,
        RData::TXT(TXT::new(vec!["v=test1 hello".into()])),
    );
    assert_eq!(r.answers, [want]);

    let r = ask(world, dns, t, "api.example.test.", RecordType::HTTPS)?;
    expect_ech(&r, "api.example.test.", true);
    let r = ask(world, dns, t, "plain.example.test.", RecordType::HTTPS)?;
    expect_ech(&r, "plain.example.test.", false);

    let r = ask(world, dns, t, "nowhere.example.test.", RecordType::A)?;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.answers.is_empty());

    // A name that exists, without records of the type: NOERROR, no answers.
    let r = ask(world, dns, t, "txt.example.test.", RecordType::AAAA)?;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());

    // A chain that ends outside the zone: the CNAME, and NXDOMAIN (RFC 6604).
    let r = ask(world, dns, t, "dangling.example.test.", RecordType::A)?;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.answers.len(), 1, "{r:?}");

    let tn = t.name();
    let q = |name: &str, qtype: &str| (name.to_owned(), qtype.to_owned(), tn);
    Ok(vec![
        q("api.example.test", "A"),
        q("api.example.test", "AAAA"),
        q("www.example.test", "A"),
        q("www.example.test", "CNAME"),
        q("txt.example.test", "TXT"),
        q("api.example.test", "HTTPS"),
        q("plain.example.test", "HTTPS"),
        q("nowhere.example.test", "A"),
        q("txt.example.test", "AAAA"),
        q("dangling.example.test", "A"),
    ])
}

#[test]
fn dns_server_answers_over_udp_and_tcp_on_v4_and_v6() -> Result<()> {
    let world = World::new("dns_server_answers_over_udp_and_tcp_on_v4_and_v6")?;
    let dns4 = world.dns_server("198.51.100.53:53", zone())?;
    let dns6 = world.dns_server("[2001:db8::53]:53", zone())?;
    assert_eq!(dns4.addr(), "198.51.100.53:53".parse()?);
    assert_eq!(dns6.addr(), "[2001:db8::53]:53".parse()?);
    assert_eq!(dns6.ip(), "2001:db8::53");

    for dns in [&dns4, &dns6] {
        let mut want = exercise(&world, dns, Transport::Udp)?;
        want.extend(exercise(&world, dns, Transport::Tcp)?);
        assert_eq!(dns.queries(), want);
    }
    // Each server saw only its own queries.
    assert_eq!(dns4.queries().len(), dns6.queries().len());
    Ok(())
}

#[test]
fn silent_dns_server_records_but_does_not_answer() -> Result<()> {
    let world = World::new("silent_dns_server_records_but_does_not_answer")?;
    let dns = world.dns_server("198.51.100.53:53", zone())?;
    dns.set_silent(true);
    let short = Duration::from_millis(300);
    for t in [Transport::Udp, Transport::Tcp] {
        let q = query(7, "api.example.test.", RecordType::A, false);
        assert!(
            ask_raw(&world, dns.addr(), t, &q, short)?.is_none(),
            "{t:?}"
        );
    }
    let want = vec![
        ("api.example.test".to_owned(), "A".to_owned(), "udp"),
        ("api.example.test".to_owned(), "A".to_owned(), "tcp"),
    ];
    assert_eq!(dns.wait_queries(2, WAIT)?, want);

    dns.set_silent(false);
    let r = ask(
        &world,
        &dns,
        Transport::Udp,
        "api.example.test.",
        RecordType::A,
    )?;
    assert_eq!(r.answers.len(), 2);
    assert_eq!(dns.queries().len(), 3);
    Ok(())
}

#[test]
fn dns_server_truncates_large_udp_replies_and_refuses_bad_zones() -> Result<()> {
    let world = World::new("dns_server_truncates_large_udp_replies_and_refuses_bad_zones")?;
    let mut zone = Zone::new();
    for i in 0..12 {
        zone = zone.txt(
            "big.example.test",
            &format!("{i:02}-{}", "x".repeat(60)),
            60,
        );
    }
    let dns = world.dns_server("[2001:db8::54]:5353", zone)?;

    let q = query(9, "big.example.test.", RecordType::TXT, false);
    let udp = ask_raw(&world, dns.addr(), Transport::Udp, &q, WAIT)?.context("udp reply")?;
    assert!(udp.metadata.truncation && udp.answers.is_empty(), "{udp:?}");
    assert_eq!((udp.metadata.id, &udp.queries), (9, &q.queries));
    let tcp = ask_raw(&world, dns.addr(), Transport::Tcp, &q, WAIT)?.context("tcp reply")?;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 12);
    // With EDNS the UDP reply fits.
    let q = query(10, "big.example.test.", RecordType::TXT, true);
    let udp = ask_raw(&world, dns.addr(), Transport::Udp, &q, WAIT)?.context("udp reply")?;
    assert!(!udp.metadata.truncation);
    assert_eq!(udp.answers.len(), 12);
    assert!(udp.edns.is_some());

    let empty = world.dns_server("198.51.100.55:53", Zone::new())?;
    let q = query(11, "any.example.test.", RecordType::A, false);
    let r = ask_raw(&world, empty.addr(), Transport::Udp, &q, WAIT)?.context("reply")?;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

    for bad in [
        Zone::new().a("api.example.com", "198.51.100.10", 60),
        Zone::new().a("api.example.test", "192.0.2.1", 60),
        Zone::new().a("api.example.test", "2001:db8::1", 60),
        Zone::new().cname("www.example.test", "cdn.example.net", 60),
    ] {
        let err = world
            .dns_server("198.51.100.56:53", bad.clone())
            .expect_err("bad zone accepted");
        assert!(format!("{err:#}").contains("zone record"), "{err:#}");
    }
    let err = world
        .dns_server("192.0.2.53:53", Zone::new())
        .expect_err("address outside the test ranges accepted");
    assert!(
        format!("{err:#}").contains("outside the test ranges"),
        "{err:#}"
    );
    Ok(())
}
