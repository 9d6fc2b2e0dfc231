//! Secrets already on the host stay out of the bottle: token variables are removed from
//! CMD's environment (and audited by name, never by value), credential files of CMD's
//! user, root and the invoking user are masked read-only and empty in the bottle's mount
//! namespace, whatever path leads to them — and the host sees nothing of it.
//!
//! Every home here is a throwaway directory with fake credentials. cork runs in a mount
//! namespace of the test's own in which `/etc/passwd` names those homes (root's included),
//! so the real password database is what cork reads and no real home is touched.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use cork_integration::{Audit, RunOutput, World};
use serde_json::{Value, json};

/// Every default credential path, relative to a home, and what reading it gives once
/// masked: a masked file is empty, a file in a masked directory is gone.
const DEFAULT_FILES: &[(&str, &str)] = &[
    (".aws/credentials", "err:ENOENT"),
    (
        ".config/gcloud/application_default_credentials.json",
        "err:ENOENT",
    ),
    (".azure/msal_token_cache.json", "err:ENOENT"),
    (".ssh/id_ed25519", "err:ENOENT"),
    (".gnupg/private-keys-v1.d/fake.key", "err:ENOENT"),
    (".docker/config.json", "file:"),
    (".kube/config", "file:"),
    (".netrc", "file:"),
    (".git-credentials", "file:"),
    (".config/gh/hosts.yml", "file:"),
    (".npmrc", "file:"),
    (".pypirc", "file:"),
    (".config/pip/pip.conf", "file:"),
    (".cargo/credentials.toml", "file:"),
    (".composer/auth.json", "file:"),
];

const TEST_UID: u32 = 4242;
const SUDO_UID: u32 = 4243;

/// The fake homes of one world and the password file that names them.
struct Homes {
    root: PathBuf,
    user: PathBuf,
    sudo: PathBuf,
    env: PathBuf,
    passwd: PathBuf,
}

fn fake(home: &Path, rel: &str) -> String {
    format!("FAKE-SECRET {} {rel}", home.display())
}

impl Homes {
    fn new(world: &World) -> Result<Self> {
        let base = world.dir().join("homes");
        let h = Homes {
            root: base.join("root"),
            user: base.join("user"),
            sudo: base.join("sudo"),
            env: base.join("env"),
            passwd: world.dir().join("passwd"),
        };
        for home in [&h.root, &h.user, &h.sudo, &h.env] {
            let extra = [".ssh/known_hosts", "notes.txt", ".config/my-tool/token"];
            for rel in DEFAULT_FILES.iter().map(|(r, _)| *r).chain(extra) {
                let p = home.join(rel);
                std::fs::create_dir_all(p.parent().context("parent")?)?;
                std::fs::write(&p, fake(home, rel))?;
            }
        }
        // Readable by the --user test's uid, as its own home would be.
        let out = Command::new("chown")
            .args(["-R", &format!("{TEST_UID}:{TEST_UID}")])
            .arg(&h.user)
            .output()?;
        if !out.status.success() {
            bail!("chown: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut passwd = String::new();
        for line in std::fs::read_to_string("/etc/passwd")?.lines() {
            if line.starts_with("root:") {
                passwd.push_str(&format!("root:x:0:0:root:{}:/bin/sh\n", h.root.display()));
            } else {
                passwd.push_str(line);
                passwd.push('\n');
            }
        }
        passwd.push_str(&format!(
            "corkt:x:{TEST_UID}:{TEST_UID}::{}:/bin/sh\ncorks:x:{SUDO_UID}:{SUDO_UID}::{}:/bin/sh\n",
            h.user.display(),
            h.sudo.display()
        ));
        std::fs::write(&h.passwd, passwd)?;
        std::fs::set_permissions(&h.passwd, std::fs::Permissions::from_mode(0o644))?;
        Ok(h)
    }

    /// `cork run` for bottle `label`, in a private mount namespace where /etc/passwd is
    /// ours, invoked "through sudo" by `corks` with `$HOME` the env home.
    fn cork_run(&self, world: &World, manifest: &Path, label: &str, args: &[&str]) -> Command {
        self.cork_run_binding(world, manifest, label, args, None)
    }

    /// [`Homes::cork_run`] with one more bind mount (`from`, `to`) in cork's view: a bind
    /// mount "the host already has".
    fn cork_run_binding(
        &self,
        world: &World,
        manifest: &Path,
        label: &str,
        args: &[&str],
        bind: Option<(&Path, &Path)>,
    ) -> Command {
        let mut argv = vec![
            "run".to_owned(),
            "--manifest".to_owned(),
            manifest.display().to_string(),
            "--audit-log".to_owned(),
            world.audit_path_for(label).display().to_string(),
        ];
        argv.extend(args.iter().map(|s| s.to_string()));
        let mut cmd = world.cork(argv);
        cmd.env("HOME", &self.env).env("SUDO_USER", "corks");
        let cstr =
            |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("no NUL in a temp path");
        let passwd = cstr(&self.passwd);
        let bind = bind.map(|(from, to)| (cstr(from), cstr(to)));
        // SAFETY: unshare(2) and mount(2) on strings prepared before fork: no allocation.
        unsafe {
            cmd.pre_exec(move || {
                let fail = || Err(std::io::Error::last_os_error());
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return fail();
                }
                let slave = libc::MS_REC | libc::MS_SLAVE;
                if libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    slave,
                    std::ptr::null(),
                ) != 0
                {
                    return fail();
                }
                if libc::mount(
                    passwd.as_ptr(),
                    c"/etc/passwd".as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) != 0
                {
                    return fail();
                }
                if let Some((from, to)) = &bind
                    && libc::mount(
                        from.as_ptr(),
                        to.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ) != 0
                {
                    return fail();
                }
                Ok(())
            });
        }
        cmd
    }
}

/// A python3 program that reports, as one JSON object, what each argument gives:
/// `file:<content>`, `dir:<entries>` or `err:<ERRNO>` for a path; `w:PATH` writes it
/// instead (`written` or the error); `cd:DIR` changes directory, so that later paths can
/// be relative; `parent:PATH` reads PATH through cork's `/proc/PID/root`; `env` lists the environment's names, `environ:PATH` reads an environ file
/// and lists its names (`environ:parent`: cork's own, CMD's parent); `connect:PATH` connects to a unix socket;
/// `handle:DIR=HEX` opens the file whose `struct file_handle` is HEX on DIR's file system;
/// `unshare:DIR` tries
/// to unmount DIR in a new user and mount namespace and read `DIR/credentials` there.
const READER: &str = r#"
import errno, json, os, subprocess, sys
out = {}
for arg in sys.argv[1:]:
    kind, _, p = arg.partition(":") if arg.split(":")[0] in ("w", "cd", "environ", "parent", "connect", "handle") else ("", "", arg)
    try:
        if kind == "environ" and p == "parent":
            p = "/proc/%d/environ" % os.getppid()
        if kind == "parent":
            p = "/proc/%d/root%s" % (os.getppid(), p)
        if kind == "cd":
            os.chdir(p)
            continue
        if arg == "env":
            out[arg] = sorted(os.environ)
        elif kind == "environ":
            with open(p, "rb") as f:
                out[arg] = sorted(v.split(b"=")[0].decode() for v in f.read().split(b"\0") if v)
        elif arg.startswith("unshare:"):
            d = arg[len("unshare:"):]
            r = subprocess.run(["unshare", "-Urm", "sh", "-c", "umount -l %s; cat %s/credentials" % (d, d)],
                               capture_output=True, text=True)
            out[arg] = r.stdout + r.stderr
        elif kind == "handle":
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            mount_dir, handle_hex = p.split("=")
            raw = bytes.fromhex(handle_hex)
            mfd = os.open(mount_dir, os.O_RDONLY | os.O_DIRECTORY)
            fd = libc.open_by_handle_at(mfd, ctypes.c_char_p(raw), os.O_RDONLY)
            if fd < 0:
                raise OSError(ctypes.get_errno(), "open_by_handle_at")
            out[arg] = "file:" + os.read(fd, 4096).decode()
        elif kind == "connect":
            import socket
            socket.socket(socket.AF_UNIX).connect(p)
            out[arg] = "connected"
        elif kind == "w":
            with open(p, "w") as f:
                f.write("x")
            out[arg] = "written"
        elif os.path.isdir(p):
            out[arg] = "dir:" + ",".join(sorted(os.listdir(p)))
        else:
            with open(p) as f:
                out[arg] = "file:" + f.read()
    except OSError as e:
        out[arg] = "err:" + errno.errorcode[e.errno]
print(json.dumps(out))
"#;

fn read_in_bottle(
    world: &World,
    homes: &Homes,
    label: &str,
    body: &str,
    extra: &[&str],
    paths: &[String],
) -> Result<(Value, Audit, RunOutput)> {
    let manifest = world.manifest(label, body)?;
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--", "/usr/bin/python3", "-c", READER]);
    args.extend(paths.iter().map(String::as_str));
    let out = world.run(homes.cork_run(world, &manifest, label, &args))?;
    if out.code() != 0 {
        bail!("cork run exited {}:\n{out}", out.code());
    }
    let seen: Value = serde_json::from_str(out.stdout.trim()).with_context(|| format!("{out}"))?;
    let audit = Audit::read(&world.audit_path_for(label))?;
    Ok((seen, audit, out))
}

fn p(home: &Path, rel: &str) -> String {
    home.join(rel).display().to_string()
}

#[test]
fn default_credential_files_of_every_user_concerned_are_masked() -> Result<()> {
    let world = World::new("default_credential_files_of_every_user_concerned_are_masked")?;
    let h = Homes::new(&world)?;
    let mut paths = Vec::new();
    for home in [&h.root, &h.sudo, &h.env, &h.user] {
        paths.extend(DEFAULT_FILES.iter().map(|(rel, _)| p(home, rel)));
        paths.push(p(home, "notes.txt"));
    }
    paths.push(p(&h.env, ".aws"));
    paths.push(format!("w:{}", p(&h.env, ".npmrc")));
    paths.push(format!("w:{}", p(&h.env, ".aws/new")));
    let (seen, audit, _) = read_in_bottle(&world, &h, "a", "", &[], &paths)?;
    // CMD runs as root: root's, the sudo user's and $HOME's credentials are masked.
    for home in [&h.root, &h.sudo, &h.env] {
        for (rel, view) in DEFAULT_FILES {
            assert_eq!(seen[p(home, rel)], *view, "{rel} in {seen:#}");
        }
        assert_eq!(
            seen[p(home, "notes.txt")],
            format!("file:{}", fake(home, "notes.txt"))
        );
    }
    assert_eq!(seen[p(&h.env, ".aws")], "dir:");
    assert_eq!(seen[format!("w:{}", p(&h.env, ".npmrc"))], "err:EROFS");
    assert_eq!(seen[format!("w:{}", p(&h.env, ".aws/new"))], "err:EROFS");
    // A home nobody concerned owns keeps its files (CMD is not its user here).
    assert_eq!(
        seen[p(&h.user, ".aws/credentials")],
        format!("file:{}", fake(&h.user, ".aws/credentials"))
    );

    let enforced = audit.expect(json!({"event": "enforced", "layer": "cork"}))?;
    let masked = enforced["masked"].as_array().context("masked list")?;
    let listed: Vec<&str> = masked.iter().filter_map(|m| m["path"].as_str()).collect();
    let mut unique = listed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), listed.len(), "each mask once: {listed:?}");
    assert!(
        masked.iter().any(|m| m["path"] == p(&h.sudo, ".ssh")
            && m["kind"] == "dir"
            && m["why"] == "default ~/.ssh of SUDO_USER corks"),
        "{masked:#?}"
    );
    assert!(
        masked.iter().any(|m| m["path"] == p(&h.root, ".netrc")
            && m["kind"] == "file"
            && m["why"] == "default ~/.netrc of CMD's user root (uid 0)"),
        "{masked:#?}"
    );
    // 5 directories and 10 files in each of three homes (the host may add agent sockets).
    let homes = world.dir().join("homes").display().to_string();
    let ours = listed.iter().filter(|l| l.starts_with(&homes)).count();
    assert_eq!(ours, 45, "{listed:#?}");
    Ok(())
}

#[test]
fn symlinks_relative_paths_dotdot_and_proc_root_land_on_the_mask() -> Result<()> {
    let world = World::new("symlinks_relative_paths_dotdot_and_proc_root_land_on_the_mask")?;
    let h = Homes::new(&world)?;
    // ~/.netrc is a symlink to the real file elsewhere; another symlink to ~/.aws.
    let store = h.env.join("store");
    std::fs::create_dir_all(&store)?;
    std::fs::rename(h.env.join(".netrc"), store.join("netrc"))?;
    symlink(store.join("netrc"), h.env.join(".netrc"))?;
    symlink(h.env.join(".aws/credentials"), h.env.join("creds-link"))?;
    symlink("../.ssh", store.join("ssh-rel"))?;
    let paths = vec![
        p(&store, "netrc"),
        p(&h.env, "creds-link"),
        p(&store, "ssh-rel/id_ed25519"),
        format!("/proc/self/root{}", p(&h.env, ".aws/credentials")),
        format!("/proc/self/root{}", p(&h.env, ".git-credentials")),
        format!("{}/../../env/.kube/config", p(&h.env, "store")),
        format!("cd:{}", p(&h.env, ".config")),
        "../.pypirc".to_owned(),
        "../.ssh/id_ed25519".to_owned(),
        "./gh/hosts.yml".to_owned(),
        "../notes.txt".to_owned(),
        format!("parent:{}", p(&h.env, ".netrc")),
    ];
    let (seen, _audit, _) = read_in_bottle(&world, &h, "a", "", &[], &paths)?;
    assert_eq!(
        seen[&paths[0]], "file:",
        "the symlink's target is masked: {seen:#}"
    );
    assert_eq!(seen[&paths[1]], "err:ENOENT", "{seen:#}");
    assert_eq!(seen[&paths[2]], "err:ENOENT", "{seen:#}");
    assert_eq!(seen[&paths[3]], "err:ENOENT", "{seen:#}");
    assert_eq!(seen[&paths[4]], "file:", "{seen:#}");
    assert_eq!(seen[&paths[5]], "file:", "{seen:#}");
    assert_eq!(seen["../.pypirc"], "file:", "{seen:#}");
    assert_eq!(seen["../.ssh/id_ed25519"], "err:ENOENT", "{seen:#}");
    assert_eq!(seen["./gh/hosts.yml"], "file:", "{seen:#}");
    assert_eq!(
        seen["../notes.txt"],
        format!("file:{}", fake(&h.env, "notes.txt")),
        "relative paths work: {seen:#}"
    );
    // cork's own root is the host's view; the bottle may not look through it.
    let parent = seen[format!("parent:{}", p(&h.env, ".netrc"))]
        .as_str()
        .unwrap_or_default();
    assert!(parent == "err:EACCES" || parent == "err:EPERM", "{seen:#}");
    Ok(())
}

#[test]
fn other_bind_mounts_of_a_masked_file_are_masked_too() -> Result<()> {
    let world = World::new("other_bind_mounts_of_a_masked_file_are_masked_too")?;
    let h = Homes::new(&world)?;
    // In cork's view, the env home is mounted a second time elsewhere.
    let alias = world.dir().join("alias");
    std::fs::create_dir_all(&alias)?;
    let manifest = world.manifest("a", "")?;
    let paths = [
        p(&alias, ".aws/credentials"),
        p(&alias, ".netrc"),
        p(&alias, "notes.txt"),
    ];
    let mut args = vec!["--", "/usr/bin/python3", "-c", READER];
    args.extend(paths.iter().map(String::as_str));
    let out =
        world.run(h.cork_run_binding(&world, &manifest, "a", &args, Some((&h.env, &alias))))?;
    assert_eq!(out.code(), 0, "{out}");
    let seen: Value = serde_json::from_str(out.stdout.trim()).with_context(|| format!("{out}"))?;
    assert_eq!(seen[&paths[0]], "err:ENOENT", "{seen:#}");
    assert_eq!(seen[&paths[1]], "file:", "{seen:#}");
    assert_eq!(
        seen[&paths[2]],
        format!("file:{}", fake(&h.env, "notes.txt")),
        "{seen:#}"
    );
    let audit = Audit::read(&world.audit_path_for("a"))?;
    let enforced = audit.expect(json!({"event": "enforced"}))?;
    let masked = enforced["masked"].as_array().context("masked")?;
    assert!(
        masked.iter().any(|m| m["path"] == p(&alias, ".aws")
            && m["why"]
                == format!(
                    "default ~/.aws of $HOME (another mount of {})",
                    p(&h.env, ".aws")
                )),
        "{masked:#?}"
    );
    Ok(())
}

/// Fake token variables: (name, value). Nothing here is a real credential.
const FAKE_VARS: &[(&str, &str)] = &[
    ("GITHUB_TOKEN", "fake-github-token-0001"),
    ("ANTHROPIC_API_KEY", "fake-anthropic-key-0002"),
    ("AWS_ACCESS_KEY_ID", "fake-aws-key-id-0003"),
    ("AWS_SECRET_ACCESS_KEY", "fake-aws-secret-0004"),
    ("AWS_SESSION_TOKEN", "fake-aws-session-0005"),
    (
        "GOOGLE_APPLICATION_CREDENTIALS",
        "/nonexistent/fake-0006.json",
    ),
    ("AZURE_CLIENT_SECRET", "fake-azure-secret-0007"),
    ("GH_TOKEN", "fake-gh-token-0008"),
    ("NPM_TOKEN", "fake-npm-token-0009"),
    ("DB_PASSWORD", "fake-password-0010"),
    ("MY_PAT", "fake-pat-0011"),
    // An innocent name with a value in GitHub's token format.
    (
        "INNOCENT_LOOKING",
        "ghp_FAKEfakeFAKEfake0123456789abcdefghij",
    ),
];

#[test]
fn token_variables_are_removed_and_audited_by_name_only() -> Result<()> {
    let world = World::new("token_variables_are_removed_and_audited_by_name_only")?;
    let h = Homes::new(&world)?;
    let manifest = world.manifest("a", "")?;
    // A stand-in for the invoking user's SSH agent.
    let agent = world.dir().join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&agent)?;
    let connect = format!("connect:{}", agent.display());
    let mut cmd = h.cork_run(
        &world,
        &manifest,
        "a",
        &[
            "--",
            "/usr/bin/python3",
            "-c",
            READER,
            "env",
            "environ:/proc/self/environ",
            "environ:parent",
            &connect,
        ],
    );
    cmd.envs(FAKE_VARS.iter().copied())
        .env("KEEP_ME", "hello")
        .env("SSH_AUTH_SOCK", &agent);
    let out = world.run(cmd)?;
    assert_eq!(out.code(), 0, "{out}");
    let seen: Value = serde_json::from_str(out.stdout.trim()).with_context(|| format!("{out}"))?;
    for key in ["env", "environ:/proc/self/environ"] {
        let names: Vec<&str> = seen[key]
            .as_array()
            .context("names")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(names.contains(&"KEEP_ME"), "{key}: {names:?}");
        for (name, _) in FAKE_VARS {
            assert!(
                !names.contains(name),
                "{name} reached the bottle ({key}): {names:?}"
            );
        }
    }
    // cork's own environment still holds them, and the bottle cannot read it.
    let parent = seen["environ:parent"].as_str().unwrap_or_default();
    assert!(parent == "err:EACCES" || parent == "err:EPERM", "{seen:#}");
    // The agent's socket is masked, not only its variable removed.
    assert_eq!(seen[&connect], "err:ECONNREFUSED", "{seen:#}");

    let audit = Audit::read(&world.audit_path_for("a"))?;
    for (name, why) in [
        ("GITHUB_TOKEN", "name matches *_TOKEN"),
        ("ANTHROPIC_API_KEY", "name matches *_API_KEY"),
        ("AWS_ACCESS_KEY_ID", "name matches *_ACCESS_KEY_ID"),
        ("AWS_SECRET_ACCESS_KEY", "name matches *SECRET*"),
        (
            "GOOGLE_APPLICATION_CREDENTIALS",
            "name matches *_CREDENTIALS",
        ),
        ("DB_PASSWORD", "name matches *PASSWORD*"),
        ("MY_PAT", "name matches *_PAT"),
        ("SSH_AUTH_SOCK", "name matches SSH_AUTH_SOCK"),
        (
            "INNOCENT_LOOKING",
            "value recognised by DLP detector github-token",
        ),
    ] {
        audit.expect(
            json!({"layer": "cork", "event": "env_scrubbed", "variable": name, "why": why}),
        )?;
    }
    let log = std::fs::read_to_string(world.audit_path_for("a"))?;
    for (name, value) in FAKE_VARS {
        assert!(
            !log.contains(value),
            "the value of {name} is in the audit log"
        );
    }
    audit.expect_none(json!({"event": "env_scrubbed", "variable": "KEEP_ME"}))?;
    Ok(())
}

#[test]
fn manifest_pass_scrub_hide_and_allow_are_honoured() -> Result<()> {
    let world = World::new("manifest_pass_scrub_hide_and_allow_are_honoured")?;
    let h = Homes::new(&world)?;
    let shared = world.dir().join("shared");
    std::fs::create_dir_all(&shared)?;
    std::fs::write(shared.join("a.key"), "FAKE-SECRET a.key")?;
    std::fs::write(shared.join("b.txt"), "public b")?;
    let body = format!(
        "[env]\npass = [\"GITHUB_TOKEN\"]\nscrub = [\"MY_COMPANY_*\"]\n\n\
         [files]\nhide = [\"~/.config/my-tool/token\", \"{}/*.key\"]\n\
         allow = [\"~/.ssh/known_hosts\"]\n",
        shared.display()
    );
    let manifest = world.manifest("a", &body)?;
    let paths = [
        "env".to_owned(),
        p(&h.env, ".config/my-tool/token"),
        p(&h.env, ".ssh/known_hosts"),
        p(&h.env, ".ssh/id_ed25519"),
        p(&h.root, ".ssh/known_hosts"),
        p(&shared, "a.key"),
        p(&shared, "b.txt"),
    ];
    let mut args = vec!["--", "/usr/bin/python3", "-c", READER];
    args.extend(paths.iter().map(String::as_str));
    let mut cmd = h.cork_run(&world, &manifest, "a", &args);
    cmd.env("GITHUB_TOKEN", "fake-github-token-0001")
        .env("MY_COMPANY_VALUE", "fake-company-0002")
        .env("MY_COMPANYX", "kept");
    let out = world.run(cmd)?;
    assert_eq!(out.code(), 0, "{out}");
    let seen: Value = serde_json::from_str(out.stdout.trim()).with_context(|| format!("{out}"))?;
    let names: Vec<&str> = seen["env"]
        .as_array()
        .context("env")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(names.contains(&"GITHUB_TOKEN"), "pass keeps it: {names:?}");
    assert!(
        !names.contains(&"MY_COMPANY_VALUE"),
        "scrub removes it: {names:?}"
    );
    assert!(names.contains(&"MY_COMPANYX"), "{names:?}");
    assert_eq!(seen[&paths[1]], "file:", "hide masks it: {seen:#}");
    assert_eq!(
        seen[&paths[2]],
        format!("file:{}", fake(&h.env, ".ssh/known_hosts")),
        "allow punches a hole: {seen:#}"
    );
    assert_eq!(
        seen[&paths[3]], "file:",
        "the rest of ~/.ssh stays masked: {seen:#}"
    );
    assert_eq!(
        seen[&paths[4]],
        format!("file:{}", fake(&h.root, ".ssh/known_hosts")),
        "~ in allow is every home: {seen:#}"
    );
    assert_eq!(seen[&paths[5]], "file:", "absolute globs: {seen:#}");
    assert_eq!(seen[&paths[6]], "file:public b", "{seen:#}");

    let audit = Audit::read(&world.audit_path_for("a"))?;
    audit.expect(
        json!({"event": "env_scrubbed", "variable": "MY_COMPANY_VALUE",
                        "why": "env.scrub[0] \"MY_COMPANY_*\""}),
    )?;
    audit.expect_none(json!({"event": "env_scrubbed", "variable": "GITHUB_TOKEN"}))?;
    let enforced = audit.expect(json!({"event": "enforced"}))?;
    let masked = enforced["masked"].as_array().context("masked")?;
    assert!(
        masked.iter().any(|m| m["path"] == p(&shared, "a.key")
            && m["why"] == format!("files.hide[1] {}/*.key", shared.display())),
        "{masked:#?}"
    );
    Ok(())
}

#[test]
fn pass_of_a_credential_value_env_is_a_check_warning() -> Result<()> {
    let world = World::new("pass_of_a_credential_value_env_is_a_check_warning")?;
    let m = world.manifest(
        "a",
        "[[egress.allow]]\ndomain = \"api.example.test\"\nports = [443]\n\n[[credentials]]\n\
         domain = \"api.example.test\"\nheader = \"x-api-key\"\nplaceholder = \"cork-placeholder-acme\"\n\
         env = \"ACME_API_KEY\"\nvalue_env = \"ACME_REAL_KEY\"\n\n[env]\npass = [\"ACME_REAL_KEY\"]\n",
    )?;
    let out = world.run(world.cork(["check".as_ref(), m.as_os_str()]))?;
    assert_eq!(out.code(), 0, "a warning, not a refusal: {out}");
    assert!(
        out.stderr
            .contains("env.pass[0]: \"ACME_REAL_KEY\" matches credentials[0].value_env"),
        "{out}"
    );
    Ok(())
}

#[test]
fn user_with_its_own_home_gets_it_masked() -> Result<()> {
    let world = World::new("user_with_its_own_home_gets_it_masked")?;
    let h = Homes::new(&world)?;
    let paths = vec![
        p(&h.user, ".aws/credentials"),
        p(&h.user, ".netrc"),
        p(&h.user, "notes.txt"),
        p(&h.user, ".aws"),
        p(&h.root, ".kube/config"),
        format!("w:{}", p(&h.user, ".netrc")),
        format!("w:{}", p(&h.user, "new-file")),
    ];
    let (seen, audit, _) = read_in_bottle(&world, &h, "a", "", &["--user", "corkt"], &paths)?;
    assert_eq!(seen[&paths[0]], "err:ENOENT", "{seen:#}");
    assert_eq!(seen[&paths[1]], "file:", "{seen:#}");
    assert_eq!(
        seen[&paths[2]],
        format!("file:{}", fake(&h.user, "notes.txt")),
        "{seen:#}"
    );
    assert_eq!(seen[&paths[3]], "dir:", "{seen:#}");
    assert_eq!(seen[&paths[4]], "file:", "root's files too: {seen:#}");
    assert_eq!(seen[&paths[5]], "err:EROFS", "{seen:#}");
    assert_eq!(
        seen[&paths[6]], "written",
        "the rest of the home is the user's: {seen:#}"
    );
    let enforced = audit.expect(json!({"event": "enforced"}))?;
    let masked = enforced["masked"].as_array().context("masked")?;
    assert!(
        masked.iter().any(|m| m["path"] == p(&h.user, ".aws")
            && m["why"] == format!("default ~/.aws of CMD's user corkt (uid {TEST_UID})")),
        "{masked:#?}"
    );
    assert!(
        masked
            .iter()
            .any(|m| m["path"] == p(&h.root, ".aws") && m["why"] == "default ~/.aws of root"),
        "{masked:#?}"
    );
    Ok(())
}

#[test]
fn masks_cannot_be_undone_from_a_user_namespace() -> Result<()> {
    let world = World::new("masks_cannot_be_undone_from_a_user_namespace")?;
    let h = Homes::new(&world)?;
    let arg = format!("unshare:{}", p(&h.env, ".aws"));
    let (seen, _, _) = read_in_bottle(&world, &h, "a", "", &[], std::slice::from_ref(&arg))?;
    let said = seen[&arg].as_str().unwrap_or_default();
    // The kernel locks mounts that a less privileged namespace inherits (EINVAL, which
    // umount words as "not mounted"): the mask is still there afterwards.
    assert!(!said.contains("FAKE-SECRET"), "{said}");
    assert!(
        said.contains("credentials: No such file or directory"),
        "{said}"
    );
    Ok(())
}

#[test]
fn the_host_sees_nothing_masked_during_or_after() -> Result<()> {
    let world = World::new("the_host_sees_nothing_masked_during_or_after")?;
    let h = Homes::new(&world)?;
    let manifest = world.manifest("a", "")?;
    let go = world.dir().join("go");
    let script = format!(
        "import os\nprint(os.getpid(), open({creds:?}).read() == '', flush=True)\nprint('ready', flush=True)\n\
         import time\nwhile not os.path.exists({go:?}):\n    time.sleep(0.05)\n",
        creds = p(&h.env, ".netrc"),
        go = go.display().to_string()
    );
    let mut cork = cork_integration::process::Spawned::start(&mut h.cork_run(
        &world,
        &manifest,
        "a",
        &["--", "/usr/bin/python3", "-c", &script],
    ))?;
    let lines = cork.wait_line("ready", std::time::Duration::from_secs(30))?;
    let first: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(first.get(1), Some(&"True"), "masked inside: {lines:?}");
    let pid = first[0];
    let homes = world.dir().join("homes").display().to_string();
    let inside = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    assert!(inside.contains(&homes), "the masks are in CMD's namespace");
    let check_host = || -> Result<()> {
        let host = std::fs::read_to_string("/proc/self/mountinfo")?;
        assert!(!host.contains(&homes), "no mask on the host:\n{host}");
        for home in [&h.root, &h.sudo, &h.env] {
            for (rel, _) in DEFAULT_FILES {
                assert_eq!(std::fs::read_to_string(home.join(rel))?, fake(home, rel));
            }
        }
        Ok(())
    };
    check_host()?;
    std::fs::write(&go, "")?;
    let out = cork.finish(std::time::Duration::from_secs(30))?;
    assert_eq!(out.code(), 0, "{out}");
    check_host()
}

/// Removes a directory outside the world's own when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("removing {}: {e}", self.0.display());
        }
    }
}

#[test]
fn ssh_agent_sockets_are_masked_without_a_variable() -> Result<()> {
    let world = World::new("ssh_agent_sockets_are_masked_without_a_variable")?;
    let h = Homes::new(&world)?;
    // Where ssh-agent puts its socket by default; the world id keeps it ours.
    let dir = RemoveOnDrop(PathBuf::from(format!("/tmp/ssh-{}", world.id())));
    std::fs::create_dir_all(&dir.0)?;
    let sock = dir.0.join("agent.4242");
    let _listener = std::os::unix::net::UnixListener::bind(&sock)?;
    let arg = format!("connect:{}", sock.display());
    let manifest = world.manifest("a", "")?;
    let mut cmd = h.cork_run(
        &world,
        &manifest,
        "a",
        &["--", "/usr/bin/python3", "-c", READER, &arg],
    );
    cmd.env_remove("SSH_AUTH_SOCK");
    let out = world.run(cmd)?;
    assert_eq!(out.code(), 0, "{out}");
    let seen: Value = serde_json::from_str(out.stdout.trim()).with_context(|| format!("{out}"))?;
    assert_eq!(seen[&arg], "err:ECONNREFUSED", "{seen:#}");
    let audit = Audit::read(&world.audit_path_for("a"))?;
    let enforced = audit.expect(json!({"event": "enforced"}))?;
    let masked = enforced["masked"].as_array().context("masked")?;
    assert!(
        masked
            .iter()
            .any(|m| m["path"] == sock.display().to_string()
                && m["why"] == "default /tmp/ssh-*/agent.*"),
        "{masked:#?}"
    );
    // And from the host it still answers.
    std::os::unix::net::UnixStream::connect(&sock)?;
    Ok(())
}

/// `struct file_handle` of `path` as hex, by name_to_handle_at(2) on the host.
fn file_handle(path: &Path) -> Result<String> {
    let script = "import ctypes, os, sys\n\
                  libc = ctypes.CDLL(None, use_errno=True)\n\
                  buf = ctypes.create_string_buffer(8 + 128)\n\
                  ctypes.c_uint.from_buffer(buf, 0).value = 128\n\
                  mid = ctypes.c_int()\n\
                  rc = libc.name_to_handle_at(-100, sys.argv[1].encode(), buf, ctypes.byref(mid), 0)\n\
                  assert rc == 0, os.strerror(ctypes.get_errno())\n\
                  n = ctypes.c_uint.from_buffer(buf, 0).value\n\
                  print(buf.raw[:8 + n].hex())\n";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()?;
    if !out.status.success() {
        bail!(
            "name_to_handle_at: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

#[test]
fn a_file_handle_does_not_open_what_is_masked() -> Result<()> {
    let world = World::new("a_file_handle_does_not_open_what_is_masked")?;
    let h = Homes::new(&world)?;
    // The handle of the real file names its inode: it would open it under any mask.
    let handle = file_handle(&h.env.join(".aws/credentials"))?;
    let arg = format!("handle:{}={handle}", world.dir().display());
    let (seen, _, _) = read_in_bottle(&world, &h, "a", "", &[], std::slice::from_ref(&arg))?;
    assert_eq!(seen[&arg], "err:EPERM", "{seen:#}");
    Ok(())
}

/// Kills and reaps a helper process when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn host_processes_of_the_same_user_are_no_way_round() -> Result<()> {
    let world = World::new("host_processes_of_the_same_user_are_no_way_round")?;
    let h = Homes::new(&world)?;
    // A process of CMD's user on the host, outside the bottle: its /proc/PID/root is the
    // host's view of the file system, unmasked.
    let host = KillOnDrop(
        Command::new("setpriv")
            .args([
                &format!("--reuid={TEST_UID}"),
                &format!("--regid={TEST_UID}"),
                "--clear-groups",
                "sleep",
                "600",
            ])
            .stdin(std::process::Stdio::null())
            .spawn()
            .context("setpriv sleep")?,
    );
    let through = format!(
        "/proc/{}/root{}",
        host.0.id(),
        p(&h.user, ".aws/credentials")
    );
    let paths = [through.clone(), p(&h.user, "notes.txt")];
    let (seen, _, _) = read_in_bottle(&world, &h, "a", "", &["--user", "corkt"], &paths)?;
    assert_eq!(
        seen[&paths[1]],
        format!("file:{}", fake(&h.user, "notes.txt")),
        "{seen:#}"
    );
    assert_eq!(seen[&through], "err:EACCES", "{seen:#}");
    Ok(())
}
