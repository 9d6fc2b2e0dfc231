//! The `cork` command line: check manifests, run a command in a bottle, boot a guest in
//! a VM bottle, clean up after agents that were killed, scan files with the proxy's DLP
//! offline.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cork::dlp_scan;
use cork::run::{self, RunOptions};
use cork_daemon::audit_query;

#[derive(Parser)]
#[command(
    name = "cork",
    version,
    about = "Kernel-enforced egress control for sandboxed AI agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate a manifest: exit 0, or 1 with FILE:LINE:COL and what is wrong.
    Check {
        /// The manifest (TOML).
        manifest: PathBuf,
        /// Check it for a VM bottle (`cork vm`): keys that mean nothing for a guest
        /// (`[env]`, `[files]`) are refused.
        #[arg(long)]
        vm: bool,
    },
    /// Run CMD in a new bottle enforcing the manifest; exits with CMD's status
    /// (128+N if it died of signal N, 125 if cork itself failed, 126/127 if CMD could not
    /// be executed / was not found).
    Run {
        /// The bottle's manifest (TOML).
        #[arg(long, short = 'm')]
        manifest: PathBuf,
        /// Append audit events (JSON lines) to this file instead of standard error.
        #[arg(long)]
        audit_log: Option<PathBuf>,
        /// Run CMD as UID[:GID] (numbers or names).
        #[arg(long, value_parser = parse_user)]
        user: Option<run::UserSpec>,
        /// The command and its arguments.
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<OsString>,
    },
    /// Boot a guest (QEMU, KVM by default) whose only NIC is a tap enforcing the manifest;
    /// its serial console is stdin/stdout. Exits 0 when the guest powers off, 128+N when
    /// stopped or killed by signal N, 125 when cork itself failed.
    Vm(VmArgs),
    /// The agent daemon: standing bottles behind a host-only control socket (HTTP/1.1 +
    /// JSON). Runs until SIGINT/SIGTERM, then tears its bottles down.
    Daemon {
        /// The control socket (default $CORK_SOCKET, else /run/cork/cork.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Append audit events (JSON lines) to this file instead of standard error.
        #[arg(long)]
        audit_log: Option<PathBuf>,
        /// Each standing bottle's state, so that a restarted daemon takes its bottles back
        /// (default /var/lib/cork; root only, it holds the bottles' CA keys).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Also append every audit event to this file as an OCSF event (one JSON object
        /// per line, OCSF 1.8.0), for a SIEM; the --audit-log stays cork's own record.
        #[arg(long)]
        ocsf_log: Option<PathBuf>,
    },
    /// Run CMD in a daemon's standing bottle, hardened as `cork run` hardens its command;
    /// exits with CMD's status (128+N for signal N, 125 if cork failed, 126/127).
    Exec {
        /// The standing bottle's name.
        name: String,
        /// The control socket (default $CORK_SOCKET, else /run/cork/cork.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Append this command's audit events (env scrub, refused sockets) to this file
        /// instead of standard error.
        #[arg(long)]
        audit_log: Option<PathBuf>,
        /// Run CMD as UID[:GID] (numbers or names).
        #[arg(long, value_parser = parse_user)]
        user: Option<run::UserSpec>,
        /// The command and its arguments.
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<OsString>,
    },
    /// The daemon's audit events (its recent history, in memory), one JSON object per
    /// line, oldest first; with --follow, new ones as they happen.
    Audit(AuditArgs),
    /// Requests held for an operator (DLP action `supervise`, `[[egress.ask]]` rules).
    Approvals(cork::approvals_verb::ApprovalsArgs),
    /// Release a held request (it goes upstream as it came); with --for, requests of the
    /// same bottle, host, method and route go through without a hold for that long.
    Approve {
        #[command(flatten)]
        args: cork::approvals_verb::DecideArgs,
        /// Remember the approval this long ("90s", "10m", "2h"; at most 24h).
        #[arg(long = "for", value_name = "DURATION")]
        remember: Option<String>,
    },
    /// Refuse a held request (the bottle gets a 403 with reason approval_denied).
    Deny(cork::approvals_verb::DecideArgs),
    /// Standing bottles, through the daemon's control socket.
    Bottle {
        /// The control socket (default $CORK_SOCKET, else /run/cork/cork.sock).
        #[arg(long, global = true)]
        socket: Option<PathBuf>,
        #[command(subcommand)]
        command: BottleCmd,
    },
    /// Remove cgroups and pins left by cork agents that no longer run (killing any
    /// processes still in those bottles).
    Clean,
    /// Inside a bottle: check every promise its manifest implies (denied and allowed
    /// destinations, sockets, capabilities, seccomp, cgroup, mounts, control socket,
    /// loopback, DNS, CA trust, placeholders), each with its evidence. Exit 0 when every
    /// hard probe passed, 1 when one failed, 2 when it could not run.
    Probe(cork::probe::ProbeArgs),
    /// The inspecting proxy's DLP, offline.
    Dlp {
        #[command(subcommand)]
        command: DlpCmd,
    },
}

#[derive(clap::Args)]
struct VmArgs {
    /// Only run the preflight checks (KVM, QEMU, /dev/net/tun) and print the result.
    #[arg(long)]
    preflight: bool,
    /// The bottle's manifest (TOML).
    #[arg(long, short = 'm', required_unless_present = "preflight")]
    manifest: Option<PathBuf>,
    /// The guest kernel (bzImage/vmlinuz).
    #[arg(long, required_unless_present = "preflight")]
    kernel: Option<PathBuf>,
    /// The guest's initramfs.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// A disk image (raw or qcow2, detected), as a virtio disk; repeatable.
    #[arg(long = "disk")]
    disks: Vec<PathBuf>,
    /// Kernel command line; `console=ttyS0` is added unless it names a console.
    #[arg(long, default_value = "")]
    append: String,
    /// Accelerator: kvm (default, checked by the preflight) or tcg (emulation, slow).
    #[arg(long, default_value = "kvm")]
    accel: cork_kvm::Accel,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u32,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u32,
    /// IPv4 pool the guest's /30 comes from (default 10.239.0.0/16).
    #[arg(long)]
    pool4: Option<cork_policy::Prefix>,
    /// IPv6 pool the guest's /64 comes from (default fd63:6f72:6b00::/48).
    #[arg(long)]
    pool6: Option<cork_policy::Prefix>,
    /// Append audit events (JSON lines) to this file instead of standard error.
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Hand FILE to the guest as fw_cfg entry NAME (`opt/...`; cork's own `opt/cork/ca.pem`,
    /// `opt/cork/env` and `opt/cork/manifest` are reserved); repeatable.
    #[arg(long = "fw-cfg", value_name = "NAME=FILE")]
    fw_cfg: Vec<String>,
}

#[derive(clap::Args)]
struct AuditArgs {
    /// Only this bottle's events.
    #[arg(long, value_parser = audit_query::parse_bottle)]
    bottle: Option<String>,
    /// Only events with this verdict: allow or deny (lifecycle events have none).
    #[arg(long, value_parser = audit_query::parse_verdict)]
    verdict: Option<String>,
    /// Only events since then: a duration back from now (10m, 2h, 30s) or an RFC 3339
    /// time (2026-11-30T07:00:00Z).
    #[arg(long, value_parser = audit_query::Since::parse)]
    since: Option<audit_query::Since>,
    /// Keep printing new events until interrupted (SIGINT/SIGTERM).
    #[arg(long, conflicts_with_all = ["file", "flow", "verify"])]
    follow: bool,
    /// Read this JSON-lines audit log (an `--audit-log` file) instead of the daemon.
    #[arg(long, conflicts_with = "socket")]
    file: Option<PathBuf>,
    /// The story of one socket, by its cookie (the `cookie` of its kernel events): the DNS
    /// answer that made its destination reachable, its kernel verdicts, the proxy's events.
    #[arg(long, value_name = "COOKIE")]
    flow: Option<u64>,
    /// Check FILE's hash chain: exit 0 intact, 1 broken (the line is named), 2 unreadable.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["file", "socket", "bottle", "verdict", "since", "flow"])]
    verify: Option<PathBuf>,
    /// The control socket (default $CORK_SOCKET, else /run/cork/cork.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// How to print each event: json (the audit line as written) or ocsf (an OCSF 1.8.0
    /// event: Network, HTTP, DNS Activity, Application Lifecycle, Base Event).
    #[arg(long, value_enum, default_value_t = cork::audit_verb::Format::Json, conflicts_with = "verify")]
    format: cork::audit_verb::Format,
}

#[derive(Subcommand)]
enum BottleCmd {
    /// Create a standing bottle from a manifest (enforced and verified when this returns).
    Create {
        #[arg(long, short = 'm')]
        manifest: PathBuf,
    },
    /// List the standing bottles.
    Ls,
    /// One bottle, as JSON.
    Show { name: String },
    /// Replace a running bottle's policy as one generation: the kernel switches from the
    /// old policy to the new one in one write (no connect sees a mix); open connections
    /// stay open. Only egress rules, domains, host ports and unix names may change.
    Update {
        name: String,
        #[arg(long, short = 'm')]
        manifest: PathBuf,
    },
    /// Remove a bottle (its processes are killed while still enforced).
    Rm { name: String },
}

#[derive(Subcommand)]
enum DlpCmd {
    /// Scan FILE (`-` for standard input) with the proxy's detectors and print the
    /// findings as JSON: exit 0 if none, 1 if any, 2 if the scan could not run.
    Scan {
        /// What to scan; `-` reads standard input.
        file: PathBuf,
        /// Use this manifest's `[dlp]` settings (its detectors and actions).
        #[arg(long, short = 'm')]
        manifest: Option<PathBuf>,
    },
    /// List the built-in detectors (id, family, severity, title) as JSON lines.
    Detectors,
}

fn parse_user(s: &str) -> Result<run::UserSpec, String> {
    run::parse_user(s)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CORK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Check { manifest, vm } => check(&manifest, vm),
        Cmd::Vm(args) => vm(args),
        Cmd::Run {
            manifest,
            audit_log,
            user,
            command,
        } => {
            match run::run(RunOptions {
                manifest,
                audit_log,
                user,
                command,
            }) {
                Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
                Err(e) => {
                    eprintln!("cork run: {}", cork_audit::error_chain(&e));
                    ExitCode::from(e.exit_code() as u8)
                }
            }
        }
        Cmd::Clean => clean(),
        Cmd::Daemon {
            socket,
            audit_log,
            state_dir,
            ocsf_log,
        } => daemon(socket, audit_log, state_dir, ocsf_log),
        Cmd::Exec {
            name,
            socket,
            audit_log,
            user,
            command,
        } => match run::exec(run::ExecOptions {
            socket: cork::control::socket(socket),
            name,
            audit_log,
            user,
            command,
        }) {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("cork exec: {}", cork_audit::error_chain(&e));
                ExitCode::from(e.exit_code() as u8)
            }
        },
        Cmd::Audit(a) => {
            if let Some(file) = &a.verify {
                return ExitCode::from(cork::audit_verb::verify(file));
            }
            let source = match a.file {
                Some(file) => cork::audit_verb::Source::File(file),
                None => cork::audit_verb::Source::Daemon(cork::control::socket(a.socket)),
            };
            ExitCode::from(cork::audit_verb::run(
                &source,
                &audit_query::AuditQuery {
                    bottle: a.bottle,
                    verdict: a.verdict,
                    since: a.since,
                    follow: a.follow,
                },
                a.flow,
                a.format,
            ))
        }
        Cmd::Probe(a) => ExitCode::from(cork::probe::probe(&a.options())),
        Cmd::Bottle { socket, command } => bottle(&cork::control::socket(socket), command),
        Cmd::Approvals(a) => ExitCode::from(cork::approvals_verb::approvals(a)),
        Cmd::Approve { args, remember } => ExitCode::from(cork::approvals_verb::decide(
            args,
            cork_daemon::api::Decision::Approve,
            remember,
        )),
        Cmd::Deny(args) => ExitCode::from(cork::approvals_verb::decide(
            args,
            cork_daemon::api::Decision::Deny,
            None,
        )),
        Cmd::Dlp {
            command: DlpCmd::Scan { file, manifest },
        } => dlp_scan(&file, manifest.as_deref()),
        Cmd::Dlp {
            command: DlpCmd::Detectors,
        } => {
            for d in cork_dlp::builtin_detectors() {
                let line = serde_json::json!({
                    "id": d.name,
                    "family": d.family.as_str(),
                    "severity": d.severity.as_str(),
                    "title": d.title,
                });
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
    }
}

fn dlp_scan(file: &Path, manifest: Option<&Path>) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("cork dlp scan: {msg}");
        ExitCode::from(2)
    };
    let policy = match manifest {
        None => None,
        Some(path) => {
            let src = match std::fs::read_to_string(path) {
                Ok(s) => s,
                Err(e) => return fail(format!("reading {}: {e}", path.display())),
            };
            match cork_policy::compile(&src, &path.display().to_string()) {
                Ok(p) => Some(p),
                Err(e) => return fail(e.to_string()),
            }
        }
    };
    let scanner = match &policy {
        Some(p) => cork_agent::web::offline_scanner(p),
        None => cork_dlp::Scanner::new(&cork_dlp::Config::default()).map_err(Into::into),
    };
    let scanner = match scanner {
        Ok(s) => s,
        Err(e) => return fail(cork_audit::error_chain(&e)),
    };
    let input = match dlp_scan::open(file) {
        Ok(r) => r,
        Err(e) => return fail(format!("reading {}: {e}", file.display())),
    };
    let action = |detector: &str| match &policy {
        None => "block",
        Some(p) => p.dlp.resolve(None, detector).map_or("off", |a| a.as_str()),
    };
    let source = file.display().to_string();
    let report = match dlp_scan::scan(&source, input, &scanner, action) {
        Ok(r) => r,
        Err(e) => return fail(format!("reading {}: {e}", file.display())),
    };
    let json = match serde_json::to_string_pretty(&report) {
        Ok(json) => json,
        Err(e) => return fail(e.to_string()),
    };
    // A closed pipe (`| head`) is the reader's choice, not a crash: write, don't println!.
    if let Err(e) = writeln!(std::io::stdout().lock(), "{json}")
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return fail(format!("writing the report: {e}"));
    }
    if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn daemon(
    socket: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    ocsf_log: Option<PathBuf>,
) -> ExitCode {
    // One seam: CORK_TEST_DAEMON_LOCK, a lock of the test's own, so that a test's daemon
    // does not take the host's one-daemon lock from other tests running at the same time.
    // Any other CORK_TEST_*, or this one without the marker, refuses the boot.
    const LOCK_SEAM: &str = "CORK_TEST_DAEMON_LOCK";
    if let Err(e) = cork::seams::active(cork::seams::env(), &[LOCK_SEAM]) {
        eprintln!("cork daemon: {e}");
        return ExitCode::from(125);
    }
    let socket = cork::control::socket(socket);
    let lock = std::env::var_os(LOCK_SEAM)
        .map_or_else(|| PathBuf::from(cork_daemon::LOCK_PATH), PathBuf::from);
    let audit_mirror = match ocsf_log.as_deref().map(cork::ocsf::OcsfLog::open) {
        None => None,
        Some(Ok(log)) => Some(Box::new(log) as Box<dyn cork_audit::LineMirror>),
        Some(Err(e)) => {
            eprintln!("cork daemon: --ocsf-log: {}", cork_audit::error_chain(&e));
            return ExitCode::from(125);
        }
    };
    let cfg = cork_daemon::server::DaemonConfig {
        socket,
        lock,
        audit_log,
        audit_mirror,
        state_dir: state_dir
            .unwrap_or_else(|| PathBuf::from(cork_daemon::state_dir::DEFAULT_STATE_DIR)),
    };
    let ready = |path: &Path| {
        println!("cork daemon: serving on {}", path.display());
        cork_daemon::notify::ready();
    };
    match cork_daemon::server::run(cfg, ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cork daemon: {}", cork_audit::error_chain(&e));
            ExitCode::from(125)
        }
    }
}

fn bottle(socket: &Path, cmd: BottleCmd) -> ExitCode {
    use cork::control;
    let done = match cmd {
        BottleCmd::Create { manifest } => control::create(socket, &manifest).map(|b| {
            println!("{} {}", b.name, b.key);
            0
        }),
        BottleCmd::Ls => control::list(socket).map(|list| {
            println!(
                "{:<24} {:<40} {:<4} {:<24} STATE",
                "NAME", "KEY", "GEN", "CREATED"
            );
            for b in list {
                println!(
                    "{:<24} {:<40} {:<4} {:<24} {}",
                    b.name, b.key, b.generation, b.created, b.state
                );
            }
            0
        }),
        BottleCmd::Update { name, manifest } => {
            control::update(socket, &name, &manifest).map(|u| {
                println!(
                    "{} generation {} -> {} ({} learned addresses carried, manifest sha256 {})",
                    u.name,
                    u.old_generation,
                    u.new_generation,
                    u.learned_carried,
                    u.manifest_sha256
                );
                0
            })
        }
        BottleCmd::Show { name } => control::show(socket, &name).map(|b| {
            println!(
                "{}",
                serde_json::to_string_pretty(&b).unwrap_or_else(|e| e.to_string())
            );
            0
        }),
        BottleCmd::Rm { name } => control::remove(socket, &name).map(|r| {
            for p in &r.problems {
                eprintln!("cork bottle rm: {p}");
            }
            u8::from(!r.problems.is_empty())
        }),
    };
    match done {
        Ok(code) => ExitCode::from(code),
        Err(e) => ExitCode::from(control::fail("bottle", &e)),
    }
}

fn vm(a: VmArgs) -> ExitCode {
    let fail = |e: &dyn std::error::Error| {
        eprintln!("cork vm: {}", cork_audit::error_chain(e));
        ExitCode::from(cork::vm::EXIT_CORK_FAILED as u8)
    };
    if a.preflight {
        return match cork::vm::preflight_only(a.accel) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    let (Some(manifest), Some(kernel)) = (a.manifest, a.kernel) else {
        eprintln!("cork vm: --manifest and --kernel are required");
        return ExitCode::from(cork::vm::EXIT_CORK_FAILED as u8);
    };
    match cork::vm::vm(cork::vm::VmOptions {
        manifest,
        kernel,
        initrd: a.initrd,
        disks: a.disks,
        append: a.append,
        accel: a.accel,
        memory_mib: a.memory,
        cpus: a.cpus,
        pool4: a.pool4,
        pool6: a.pool6,
        audit_log: a.audit_log,
        fw_cfg: a.fw_cfg,
    }) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => fail(&e),
    }
}

fn check(path: &PathBuf, for_vm: bool) -> ExitCode {
    let src = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cork check: reading {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let origin = path.display().to_string();
    let checked = cork_policy::compile(&src, &origin).and_then(|p| {
        if for_vm {
            cork_policy::check_for_vm(&src, &origin)?;
        }
        Ok(p)
    });
    match checked {
        Ok(policy) => {
            // Located like errors, on stderr, but the manifest is still valid.
            for w in &policy.warnings {
                eprintln!("warning: {w}");
            }
            let plan = policy.kernel_plan();
            println!(
                "{}: ok — bottle {:?}, {} rules, {} IPv4 and {} IPv6 prefixes, {} domain rules, \
                 {} host loopback ports, {} credentials",
                path.display(),
                policy.name,
                policy.rules.len(),
                plan.v4.len(),
                plan.v6.len(),
                policy.domains.len(),
                plan.host_ports.len(),
                policy.credentials.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn clean() -> ExitCode {
    match cork_agent::clean::clean() {
        Ok(report) => {
            for p in &report.removed {
                println!("removed {}", p.display());
            }
            for p in &report.kept_live {
                println!("kept {} (its agent is running)", p.display());
            }
            for p in &report.problems {
                eprintln!("cork clean: {p}");
            }
            if report.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("cork clean: {}", cork_audit::error_chain(&e));
            ExitCode::from(1)
        }
    }
}
