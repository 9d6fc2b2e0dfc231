//! The World itself, without cork: setup, servers on both sides, reachability from the
//! bottle netns, UDP sentinels, and a teardown that leaves nothing behind.

use std::time::Duration;

use anyhow::{Context, Result};
use cork_integration::addr::{BOTTLE_V4, v4, v6};
use cork_integration::{Side, World, host, netns, process};

#[test]
fn world_sets_up_and_tears_down_without_residue() -> Result<()> {
    let (id, b, i);
    {
        let world = World::new("world_sets_up_and_tears_down_without_residue")?;
        id = world.id().to_owned();
        b = world.bottle().name().to_owned();
        i = world.internet().name().to_owned();
        assert!(b.len() <= 15 && i.len() <= 15);
        let names = netns::list();
        assert!(names.contains(&b) && names.contains(&i), "{names:?}");

        // Only connected routes: nothing leads out of the two namespaces.
        let routes = world.bottle().ip(&["route", "show"])?;
        assert!(!routes.contains("default"), "{routes}");
        let routes6 = world.bottle().ip(&["-6", "route", "show"])?;
        assert!(!routes6.contains("default"), "{routes6}");

        let tcp4 = world.tcp_server(Side::Internet, "198.51.100.10:8080")?;
        let tcp6 = world.tcp_server(Side::Internet, "[2001:db8::10]:8080")?;
        world.connect_from_bottle(tcp4.addr)?;
        world.connect_from_bottle(tcp6.addr)?;
        let p4 = tcp4.wait_peers(1, Duration::from_secs(5))?;
        let p6 = tcp6.wait_peers(1, Duration::from_secs(5))?;
        assert_eq!(p4[0].ip(), std::net::IpAddr::V4(BOTTLE_V4), "{p4:?}");
        assert_eq!(p6[0].ip().to_string(), "2001:db8::1", "{p6:?}");

        // A host loopback service in the bottle netns is invisible from the internet side
        // and reachable on loopback from the bottle side.
        let local = world.tcp_server(Side::Bottle, "127.0.0.1:0")?;
        world.connect_from_bottle(local.addr)?;
        assert_eq!(local.wait_peers(1, Duration::from_secs(5))?.len(), 1);

        let udp = world.udp_server(Side::Internet, "[2001:db8::11]:5353")?;
        world.udp_sentinel(&udp)?;
        assert_eq!(udp.payloads().len(), 1);
        assert_eq!(udp.datagrams()[0].peer.ip().to_string(), "2001:db8::1");
        let _ = (v4(10), v6(0x10));
    }
    let names = netns::list();
    assert!(
        !names.contains(&b) && !names.contains(&i),
        "netns left: {names:?}"
    );
    assert!(host::cork_cgroups(&id).is_empty());
    assert!(
        !std::path::Path::new(cork_integration::sweep::TMP_DIR)
            .join(&id)
            .exists()
    );
    assert!(!cork_integration::sweep::lock_path(&id).exists());
    Ok(())
}

#[test]
fn real_clients_run_in_the_bottle_netns_without_cork() -> Result<()> {
    let world = World::new("real_clients_run_in_the_bottle_netns_without_cork")?;
    let srv = world.tcp_server(Side::Internet, "198.51.100.10:9000")?;
    let udp = world.udp_server(Side::Internet, "198.51.100.10:9001")?;
    let probe = cork_integration::Probe::new()
        .tcp(&srv.ip(), srv.port())?
        .tcp("2001:db8::2", 9)?
        .udp_sendto(&udp.ip(), udp.port(), "hello")?
        .socket("inet", "dgram", "icmp")
        .listen("127.0.0.1", 0)?
        .tcp("127.0.0.1", "@")?;
    let argv = probe.argv();
    let out = world.run(world.command(Side::Bottle, &argv[0]).args(&argv[1..]))?;
    assert_eq!(out.code(), 0, "{out}");
    let lines = out.lines();
    assert_eq!(lines[0], "ok", "{out}");
    // Nothing listens there: the internet netns answers with a reset.
    assert_eq!(lines[1], "ECONNREFUSED", "{out}");
    assert_eq!(lines[2], "ok", "{out}");
    assert_eq!(
        lines[3], "ok",
        "ping sockets are open to root in the bottle netns: {out}"
    );
    assert!(lines[4].starts_with("ok "), "{out}");
    assert_eq!(lines[5], "ok", "{out}");
    assert_eq!(srv.wait_peers(1, Duration::from_secs(5))?.len(), 1);
    assert_eq!(udp.wait_payload("hello", Duration::from_secs(5))?.len(), 1);
    Ok(())
}

#[test]
fn processes_left_in_the_world_are_killed_on_drop() -> Result<()> {
    let pid;
    {
        let world = World::new("processes_left_in_the_world_are_killed_on_drop")?;
        let child = world.command(Side::Bottle, "sleep").arg("600").spawn()?;
        pid = child.id() as i32;
        assert_eq!(process::netns_inode_of(pid), Some(world.bottle().inode()));
        // `child` is deliberately leaked: the World must still end it.
        std::mem::forget(child);
    }
    // Killed (a zombie until reaped has no netns any more).
    assert_eq!(process::netns_inode_of(pid), None);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    Ok(())
}

#[test]
fn addresses_outside_the_test_ranges_are_refused() -> Result<()> {
    let world = World::new("addresses_outside_the_test_ranges_are_refused")?;
    // Refused by the guard itself (not, say, by a failed bind), before any socket exists.
    fn by_the_guard<T: std::fmt::Debug>(r: Result<T>) -> Result<()> {
        let e = r
            .err()
            .context("an address outside the test ranges was accepted")?;
        anyhow::ensure!(
            format!("{e:#}").contains("is outside the test ranges"),
            "refused for another reason: {e:#}"
        );
        Ok(())
    }
    by_the_guard(world.tcp_server(Side::Internet, "192.0.2.1:80"))?;
    by_the_guard(world.udp_server(Side::Internet, "[2001:4860::1]:53"))?;
    by_the_guard(cork_integration::Probe::new().tcp("203.0.113.5", 443))?;
    Ok(())
}

#[test]
fn sweeper_removes_only_dead_world_leftovers() -> Result<()> {
    let live = World::new("sweeper_removes_only_dead_world_leftovers")?;
    // A dead world: its netns exists but nobody holds its lock.
    let dead_id = format!("ck{:06x}", (std::process::id() & 0xff_ffff) ^ 0x5a_5a5a);
    let dead = netns::Netns::create(&format!("{dead_id}b"))?;
    drop(dead);
    // Not a world name: never touched, even with the ck prefix.
    let foreign = netns::Netns::create("ckforeign1")?;

    let removed = cork_integration::cleanup_stale()?;
    let names = netns::list();
    let foreign_kept = names.contains(&"ckforeign1".to_owned());
    foreign.delete()?;
    assert!(
        removed.contains(&format!("netns {dead_id}b")),
        "{removed:?}"
    );
    assert!(!names.contains(&format!("{dead_id}b")), "{names:?}");
    assert!(
        names.contains(&live.bottle().name().to_owned()),
        "a live world is kept: {names:?}"
    );
    assert!(foreign_kept, "only world names are swept: {names:?}");
    Ok(())
}
