//! `cork-vm-bench` (`cargo xtask bench-vm`): what cork's tap enforcement costs a guest,
//! measured side by side in one run. The same test guest boots twice in one throwaway
//! World — once on a bare tap (`cork-vm-boot`: the launcher, static addresses, plain
//! routing) and once as a VM bottle (`cork vm`: DHCP, tc program, nftables, proxies) —
//! and runs the same in-process loops (`guest-https --connects/--send/--requests`): TCP
//! connects per second, bulk send throughput, and HTTPS requests per second (direct to the
//! upstream on the bare tap, through the inspecting proxy in the bottle). Prints each
//! figure, the ratio bottle/bare, and the time from launch to the guest's first probe line.
//! Under TCG the guest's CPU is emulated: the ratios are the point, not the absolutes.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cork_integration::dns_server::Zone;
use cork_integration::https_upstream::{TestCa, UpstreamConfig};
use cork_integration::process::Spawned;
use cork_integration::vm::{
    Guest, TAP_V4, TAP_V6, cork_vm, make_room_for_pools, route_guest_subnets, static_net_append,
};
use cork_integration::{Side, World};

const CONNECTS: u32 = 300;
const SEND_MIB: u32 = 64;
const REQUESTS: u32 = 30;
const TIMEOUT: Duration = Duration::from_secs(600);

/// The loops, against `api_ip` for HTTPS (the upstream itself, or a name the bottle's
/// DNS proxy resolves first).
fn probe(api: &str) -> String {
    format!(
        "n=0; while [ $n -lt 100 ] && ! ip -4 -o addr show dev eth0 | grep -q inet; do sleep 0.1; n=$((n + 1)); done\n\
         {api}\n\
         echo \"R connects $(guest-https --connects 198.51.100.10 8080 {CONNECTS})\"\n\
         echo \"R send $(guest-https --send 198.51.100.10 9000 {SEND_MIB})\"\n\
         echo \"R requests $(guest-https --requests \"$api\" api.vm.test /bench {REQUESTS})\"\n"
    )
}

/// A TCP sink in the internet netns: reads each connection to its end, then closes.
fn sink(world: &World, stop: Arc<AtomicBool>) -> Result<()> {
    world.add_internet_ip("198.51.100.10".parse()?)?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    world.internet().spawn("sink", move || {
        let l = TcpListener::bind("198.51.100.10:9000")?;
        l.set_nonblocking(true)?;
        let _ = ready_tx.send(());
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut c, _)) => {
                    c.set_nonblocking(false)?;
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 1 << 16];
                        while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        Ok(())
    })?;
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .context("sink did not start")
}

/// Runs a guest command line and collects its `R name value...` lines and the time from
/// launch to the probe's start.
fn measure(cmd: &mut Command) -> Result<(Duration, Vec<(String, String)>)> {
    let start = Instant::now();
    let mut run = Spawned::start(cmd)?;
    run.wait_line("CORK-PROBE-BEGIN", TIMEOUT)?;
    let boot = start.elapsed();
    let lines = run.wait_line("CORK-PROBE-END rc=0", TIMEOUT)?;
    let out = run.finish(Duration::from_secs(60))?;
    if out.code() != 0 {
        bail!("guest run exited {}:\n{out}", out.code());
    }
    let results = lines
        .iter()
        .filter_map(|l| l.trim_end().strip_prefix("R "))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Ok((boot, results))
}

/// The value of `key=` in a result line.
fn figure(results: &[(String, String)], name: &str, key: &str) -> Result<f64> {
    let line = results
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .with_context(|| format!("no {name} result in {results:?}"))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {key}= in {name}: {line}"))
}

fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("exe dir")?.join(name))
}

fn main() -> Result<()> {
    let guest = Guest::locate()?;
    let world = World::new("cork-vm-bench")?;
    let stop = Arc::new(AtomicBool::new(false));
    sink(&world, stop.clone())?;
    world.tcp_server(Side::Internet, "198.51.100.10:8080")?;
    let ca = TestCa::new()?;
    let ca_path = world.path("upstream-ca", "pem");
    ca.write_pem(&ca_path)?;
    let _api = world.https_upstream(
        &ca,
        UpstreamConfig::new()
            .name("api.vm.test")
            .tls("198.51.100.30:443".parse()?),
    )?;
    let _dns = world.dns_server(
        "198.51.100.53:53",
        Zone::new().a("api.vm.test", "198.51.100.30", 300),
    )?;

    // Bare: the launcher alone, static addresses, the World routes the guest subnet.
    route_guest_subnets(&world)?;
    let bare_probe = world.path("bare-probe", "sh");
    std::fs::write(&bare_probe, probe("api=198.51.100.30"))?;
    let tap = format!("{}t", world.id());
    let mut bare = world.command(
        Side::Bottle,
        &sibling("cork-vm-boot")?.display().to_string(),
    );
    bare.args(["--accel", "tcg", "--memory", "256", "--tap", &tap])
        .args(["--tap-addr", TAP_V4, "--tap-addr", TAP_V6])
        .arg("--kernel")
        .arg(&guest.kernel)
        .arg("--initrd")
        .arg(&guest.initrd)
        .arg("--probe")
        .arg(&bare_probe)
        .arg("--fw-cfg")
        .arg(format!("opt/cork/ca.pem={}", ca_path.display()))
        .args([
            "--append",
            &format!("quiet panic=-1 {}", static_net_append()),
        ]);
    let (bare_boot, bare_r) = measure(&mut bare).context("bare tap")?;

    // The bottle: cork vm, the same loops; HTTPS through the inspecting proxy.
    make_room_for_pools(&world)?;
    let manifest = world.manifest(
        "bench",
        &format!(
            "[[egress.allow]]\ncidr = \"198.51.100.10/32\"\nports = [8080, 9000]\n\n\
             [[egress.allow]]\ndomain = \"api.vm.test\"\nports = [443]\n\n\
             [dns]\nupstream = [\"198.51.100.53\"]\n\n[tls]\nupstream_ca = [\"{}\"]\n",
            ca_path.display()
        ),
    )?;
    let corked_probe = world.path("corked-probe", "sh");
    let resolve = "api=$(nslookup -type=a api.vm.test 2>/dev/null | awk '/^Address/ {print $2}' | grep -v ':53$' | tail -1)";
    std::fs::write(&corked_probe, probe(resolve))?;
    let (cork_boot, cork_r) = measure(&mut cork_vm(
        &world,
        &guest,
        &manifest,
        "bench",
        Path::new(&corked_probe),
        "cork.dhcp=1",
    ))
    .context("cork vm")?;
    stop.store(true, Ordering::Relaxed);

    println!("cork-vm-bench: TCG guest, {} CPUs on the host", num_cpus());
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "measure", "bare tap", "cork vm", "ratio"
    );
    let rows = [
        ("TCP connects/s", "connects", "per_sec"),
        ("bulk send MiB/s", "send", "mib_per_sec"),
        (
            "HTTPS req/s (new conn; bottle: inspected)",
            "requests",
            "per_sec",
        ),
    ];
    for (label, name, key) in rows {
        let (b, c) = (figure(&bare_r, name, key)?, figure(&cork_r, name, key)?);
        println!("{label:<44} {b:>12.1} {c:>12.1} {:>8.2}", c / b);
    }
    println!(
        "{:<44} {:>11.2}s {:>11.2}s",
        "launch to first probe line",
        bare_boot.as_secs_f64(),
        cork_boot.as_secs_f64()
    );
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
