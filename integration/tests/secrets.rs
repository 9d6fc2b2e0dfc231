//! Secrets already on the host stay out of the bottle: token variables are removed from
//! CMD's environment (and audited by name, never by value), credential files of CMD's
//! user, root and the invoking user are masked read-only and empty in the bottle's mount
//! namespace, whatever path leads to them — and the host sees nothing of it. The homes are
//! throwaway ones with fake credentials (`cork_integration::fake_homes`).

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use cork_integration::fake_homes::{
    DEFAULT_FILES, Homes, KillOnDrop, READER, RemoveOnDrop, TEST_UID, fake, file_handle, p,
    read_in_bottle,
};
use cork_integration::{Audit, World, host};
use serde_json::{Value, json};

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
    // An innocent name with a value in GitHub's token format (30 characters and their
    // base62 CRC32, which the detector checks, and no placeholder word such as "fake",
    // which it skips; `fake_homes::fake_github_token` makes it).
    (
        "INNOCENT_LOOKING",
        "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",
    ),
];

#[test]
fn token_variables_are_removed_and_audited_by_name_only() -> Result<()> {
    let world = World::new("token_variables_are_removed_and_audited_by_name_only")?;
    let h = Homes::new(&world)?;
    // A stand-in for the invoking user's SSH agent. Listed in [unix] allow, so that the
    // kernel's unix gate lets the connect through and the mask is what refuses it.
    let agent = world.dir().join("agent.sock");
    let manifest = world.manifest(
        "a",
        &format!("[unix]\nallow = [{:?}]", agent.display().to_string()),
    )?;
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
        "import os\nprint(open({creds:?}).read() == '', flush=True)\nprint('ready', flush=True)\n\
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
    assert_eq!(lines[0], "True", "masked inside: {lines:?}");
    // CMD's own pid is its pid in the bottle's namespace: the host finds the bottle's
    // processes (cork's init and CMD, one mount namespace) in its cgroup.
    let cgroups = host::cork_cgroups(&format!("{}-", world.bottle_name("a")));
    let procs = std::fs::read_to_string(
        cgroups
            .first()
            .context("the bottle's cgroup")?
            .join("cgroup.procs"),
    )?;
    let pid = procs.lines().next().context("a process in the bottle")?;
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
    // Listed, so that the mask (not the kernel's unix gate) is what refuses the connect.
    let manifest = world.manifest(
        "a",
        &format!("[unix]\nallow = [{:?}]", sock.display().to_string()),
    )?;
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
    // The bottle's /proc shows its own PID namespace: the host process has no entry there
    // (Landlock would refuse it with EACCES behind that).
    assert_eq!(seen[&through], "err:ENOENT", "{seen:#}");
    Ok(())
}

#[test]
fn a_provider_key_becomes_a_placeholder_swapped_on_its_api() -> Result<()> {
    use cork_integration::dns_server::Zone;
    use cork_integration::https_upstream::{TestCa, UpstreamConfig};
    let world = World::new("a_provider_key_becomes_a_placeholder_swapped_on_its_api")?;
    let _dns = world.dns_server(
        "198.51.100.53:53",
        Zone::new().a("api.example.test", "198.51.100.10", 300),
    )?;
    let ca = TestCa::new()?;
    let ca_path = world.path("upstream-ca", "pem");
    ca.write_pem(&ca_path)?;
    let api = world.https_upstream(
        &ca,
        UpstreamConfig::new()
            .name("api.example.test")
            .tls("198.51.100.10:443".parse()?),
    )?;
    let manifest = world.manifest(
        "a",
        &format!(
            "[[egress.allow]]\ndomain = \"api.example.test\"\nports = [443]\n\n\
             [dns]\nupstream = [\"198.51.100.53\"]\n\n[tls]\nupstream_ca = [\"{}\"]\n",
            ca_path.display()
        ),
    )?;
    let real = "fake-anthropic-key-for-tests-7f3a9c";
    let script = "echo \"env=$ANTHROPIC_API_KEY\"; \
                  curl -sS --max-time 10 -H \"x-api-key: $ANTHROPIC_API_KEY\" \
                  'https://api.example.test/echo-header?name=x-api-key'; echo";
    let argv = vec!["sh".to_owned(), "-c".into(), script.into()];
    let mut cmd = world.cork_run(&manifest, "a", &argv);
    // The harness points the Anthropic key at the test world's API.
    cmd.env("ANTHROPIC_API_KEY", real).env(
        "CORK_TEST_PROVIDER_HOST",
        "ANTHROPIC_API_KEY=api.example.test",
    );
    let out = world.run(cmd)?;
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        out.stdout
            .starts_with("env=cork-placeholder-anthropic-api-key-"),
        "{out}"
    );
    assert!(!out.stdout.contains(real), "echoes are swapped back: {out}");
    let reqs = api
        .log()
        .wait_settled(1, std::time::Duration::from_secs(5))?;
    assert_eq!(
        reqs[0].header("x-api-key"),
        Some(real),
        "upstream got the real key"
    );
    let audit = Audit::read(&world.audit_path_for("a"))?;
    audit.expect(
        json!({"event": "env_scrubbed", "variable": "ANTHROPIC_API_KEY",
                        "why": "name matches *_API_KEY", "swapped_on": "api.example.test"}),
    )?;
    audit.expect(json!({"layer": "proxy", "credentials": ["ANTHROPIC_API_KEY"]}))?;
    assert!(
        !audit.dump().contains(real),
        "the audit log never holds the key"
    );
    Ok(())
}
