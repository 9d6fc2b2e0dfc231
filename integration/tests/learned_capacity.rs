//! A prefix trie full of learned addresses: the DNS learner makes room from the addresses
//! whose time is up (an address learned over a static host prefix goes back to that
//! prefix's static value) and never from anything still valid or static. Run on the real
//! maps of a loaded (unattached) program set, judged by the real cgroup_skb program.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use anyhow::{Context, Result};
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Map, MapData};
use cork_bpf::LoadConstants;
use cork_bpf::abi::{CORK_MAX_PREFIXES, cork_prefix_value};
use cork_bpf::learned::MapLearner;
use cork_bpf::test_run::{SkbTestRun, ip_packet};
use cork_integration::verdicts::{PinnedRun, cgroup_consts};

const CONSTS: LoadConstants = cgroup_consts(9);

const MANIFEST: &str = r#"
version = 1
[bottle]
name = "learned-capacity"

[[egress.allow]]
cidr = "2001:db8::5"
ports = [443]

[[egress.allow]]
domain = "fill.example.test"
ports = [9443]
inspect = false

[[egress.allow]]
domain = "keep.example.test"
ports = [9443]
inspect = false
"#;

/// `2001:db8:1::/48` plus `i`: the addresses that fill the trie.
fn filler(i: u32) -> Ipv6Addr {
    let mut o = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0).octets();
    o[12..].copy_from_slice(&i.to_be_bytes());
    Ipv6Addr::from(o)
}

fn host_key(addr: &str) -> Result<Key<[u8; 16]>> {
    let a: Ipv6Addr = addr.parse()?;
    Ok(Key::new(128, a.octets()))
}

#[test]
fn a_full_trie_makes_room_from_expired_learned_addresses() -> Result<()> {
    let policy = Arc::new(cork_policy::compile(MANIFEST, "learned-capacity.toml")?);
    let plan = policy.kernel_plan();
    let mut h = PinnedRun::new("learned", "capacity")?;
    h.run = Some(SkbTestRun::load(CONSTS, &h.pin_dir, &plan)?);
    let learner = MapLearner::open(&h.pin_dir, policy.clone(), 0)?;

    // Learned over the static host prefix, already expired: takes no room of its own.
    learner.learn("2001:db8::5".parse()?, "fill.example.test", 0)?;
    // Valid addresses up to one short of capacity, then one already expired: full.
    let room = CORK_MAX_PREFIXES as usize - plan.v6.len();
    for i in 0..(room - 1) as u32 {
        learner
            .learn(IpAddr::V6(filler(i)), "fill.example.test", 300)
            .with_context(|| format!("filling: address {i} of {room}"))?;
    }
    learner.learn("2001:db8:2::1".parse()?, "fill.example.test", 0)?;

    // The trie is full: this one fits only by sweeping the two expired addresses.
    learner.learn("2001:db8::7".parse()?, "keep.example.test", 300)?;
    // Nothing else has expired: the next address does not fit, and nothing valid went.
    let err = learner
        .learn("2001:db8::8".parse()?, "keep.example.test", 300)
        .expect_err("a trie full of valid entries has no room");
    assert!(err.to_string().contains("2001:db8::8"), "{err}");

    let trie: LpmTrie<MapData, [u8; 16], cork_prefix_value> = LpmTrie::try_from(Map::LpmTrie(
        MapData::from_pin(h.pin_dir.join("cork_rules_v6"))?,
    ))?;
    assert!(
        trie.get(&host_key("2001:db8:2::1")?, 0).is_err(),
        "the expired learned address was removed"
    );
    let restored = trie.get(&host_key("2001:db8::5")?, 0)?;
    assert_eq!(
        (restored.count, restored.static_count),
        (restored.static_count, 1),
        "the static host prefix is back to its static value alone"
    );
    assert!(trie.get(&host_key("2001:db8::7")?, 0).is_ok());
    for i in [0, room as u32 / 2, room as u32 - 2] {
        let a = filler(i);
        assert!(
            trie.get(&Key::new(128, a.octets()), 0).is_ok(),
            "valid learned address {a} was kept"
        );
    }

    let run = h.run.as_mut().expect("loaded");
    let src: IpAddr = "2001:db8::1".parse()?;
    let tcp =
        |dst: &str, port| -> Result<Vec<u8>> { Ok(ip_packet(src, dst.parse()?, 6, 40000, port)) };
    assert!(
        run.passes(&tcp("2001:db8::7", 9443)?)?,
        "the new address is allowed"
    );
    assert!(
        run.passes(&tcp("2001:db8::5", 443)?)?,
        "the static rule stays"
    );
    assert!(
        !run.passes(&tcp("2001:db8::5", 9443)?)?,
        "the expired name's port is gone"
    );
    Ok(())
}
