//! The `cork` command line: check manifests, run a command in a bottle, boot a guest in
//! a VM bottle, clean up after agents that were killed, scan files with the proxy's DLP
//! offline.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cork::run::{self, RunOptions};
use cork::verbs::{self, bottle::BottleCmd, dlp::DlpCmd, vm::VmArgs};
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
        Cmd::Check { manifest, vm } => verbs::check::check(&manifest, vm),
        Cmd::Vm(args) => verbs::vm::vm(args),
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
        Cmd::Clean => verbs::check::clean(),
        Cmd::Daemon {
            socket,
            audit_log,
            state_dir,
            ocsf_log,
        } => verbs::daemon::daemon(socket, audit_log, state_dir, ocsf_log),
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
        Cmd::Bottle { socket, command } => {
            verbs::bottle::bottle(&cork::control::socket(socket), command)
        }
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
        } => verbs::dlp::scan(&file, manifest.as_deref()),
        Cmd::Dlp {
            command: DlpCmd::Detectors,
        } => verbs::dlp::detectors(),
    }
}
