//! Throwaway homes with fake credential files for the secrets tests, and `cork run` in a
//! mount namespace of the test's own where `/etc/passwd` names them (root's included): the
//! real password database is what cork reads, and no real home is touched.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{Audit, RunOutput, World};

/// Every default credential path, relative to a home, and what reading it gives once
/// masked: a masked file is empty, a file in a masked directory is gone.
pub const DEFAULT_FILES: &[(&str, &str)] = &[
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

pub const TEST_UID: u32 = 4242;
pub const SUDO_UID: u32 = 4243;

/// The fake homes of one world and the password file that names them.
pub struct Homes {
    /// Root's home in the view.
    pub root: PathBuf,
    /// The home of `corkt` (uid [`TEST_UID`]), for `--user corkt`.
    pub user: PathBuf,
    /// The home of `corks`, the `SUDO_USER`.
    pub sudo: PathBuf,
    /// `$HOME` of `cork run`.
    pub env: PathBuf,
    passwd: PathBuf,
}

pub fn fake(home: &Path, rel: &str) -> String {
    format!("FAKE-SECRET {} {rel}", home.display())
}

impl Homes {
    pub fn new(world: &World) -> Result<Self> {
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
    pub fn cork_run(&self, world: &World, manifest: &Path, label: &str, args: &[&str]) -> Command {
        self.cork_run_binding(world, manifest, label, args, None)
    }

    /// [`Homes::cork_run`] with one more bind mount (`from`, `to`) in cork's view: a bind
    /// mount "the host already has".
    pub fn cork_run_binding(
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
/// - a path: `file:<content>`, `dir:<entries>` or `err:<ERRNO>`;
/// - `w:PATH`: writes it (`written` or the error); `cd:DIR`: changes directory, so that
///   later paths can be relative;
/// - `parent:PATH`: reads PATH through cork's `/proc/PID/root`;
/// - `env`: the environment's names; `environ:PATH`: the names in an environ file
///   (`environ:parent`: cork's own, CMD's parent);
/// - `connect:PATH`: connects to a unix socket;
/// - `handle:DIR=HEX`: opens the file whose `struct file_handle` is HEX on DIR's file system;
/// - `unshare:DIR`: tries to unmount DIR in a new user and mount namespace, then reads
///   `DIR/credentials` there.
pub const READER: &str = r#"
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

/// Runs [`READER`] on `paths` in bottle `label` (manifest `body`, more `cork run` options
/// in `extra`): what it saw, the audit log, and cork's output.
pub fn read_in_bottle(
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

/// `home/rel` as a string.
pub fn p(home: &Path, rel: &str) -> String {
    home.join(rel).display().to_string()
}

/// Removes a directory outside the world's own when dropped.
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("removing {}: {e}", self.0.display());
        }
    }
}

/// `struct file_handle` of `path` as hex, by name_to_handle_at(2) on the host.
pub fn file_handle(path: &Path) -> Result<String> {
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

/// Kills and reaps a helper process when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
