//! The registry on its own: approve, deny, timeout, remembered approvals and their expiry.

use std::time::{Duration, Instant};

use super::*;

fn req(path: &str) -> HeldRequest {
    HeldRequest {
        id: String::new(),
        bottle: "b".into(),
        host: "api.example.test".into(),
        method: "POST".into(),
        path: path.into(),
        route: path.into(),
        detectors: vec!["github-token".into()],
        rule: None,
        held_at: "2026-11-30T00:00:00Z".into(),
        timeout_s: 60,
    }
}

#[tokio::test]
async fn approve_releases_the_hold_and_names_the_peer() {
    let a = Approvals::new();
    let (info, hold) = a.hold(req("/x"));
    assert_eq!(a.pending(), vec![info.clone()]);
    let decided = a
        .decide(&info.id, Verdict::Approve, 1000, None, Instant::now())
        .expect("held");
    assert_eq!(decided.path, "/x");
    assert_eq!(
        hold.wait(Duration::from_secs(60)).await,
        Outcome::Approved { by: 1000 }
    );
    assert!(a.pending().is_empty());
    // Decided once: a second decision finds nothing.
    assert!(
        a.decide(&info.id, Verdict::Deny, 0, None, Instant::now())
            .is_err()
    );
}

#[tokio::test]
async fn deny_releases_the_hold() {
    let a = Approvals::new();
    let (info, hold) = a.hold(req("/x"));
    a.decide(&info.id, Verdict::Deny, 0, None, Instant::now())
        .expect("held");
    assert_eq!(
        hold.wait(Duration::from_secs(60)).await,
        Outcome::Denied { by: 0 }
    );
}

#[tokio::test(start_paused = true)]
async fn nobody_deciding_times_out_and_forgets_the_id() {
    let a = Approvals::new();
    let (info, hold) = a.hold(req("/x"));
    assert_eq!(hold.wait(Duration::from_secs(2)).await, Outcome::TimedOut);
    assert!(a.pending().is_empty());
    let late = a.decide(&info.id, Verdict::Approve, 0, None, Instant::now());
    assert!(late.is_err(), "a timed-out hold cannot be decided");
}

#[test]
fn unknown_and_malformed_ids_are_refused() {
    let a = Approvals::new();
    for id in ["1", "x", "", "-1"] {
        let e = a
            .decide(id, Verdict::Approve, 0, None, Instant::now())
            .expect_err("nothing held");
        assert_eq!(e.id, id);
    }
}

#[test]
fn a_dropped_hold_is_no_longer_pending() {
    let a = Approvals::new();
    let (_, hold) = a.hold(req("/x"));
    assert_eq!(a.pending().len(), 1);
    drop(hold);
    assert!(a.pending().is_empty());
}

#[test]
fn remembered_approvals_cover_the_same_kind_until_they_expire() {
    let a = Approvals::new();
    let now = Instant::now();
    let (info, _hold) = a.hold(req("/x"));
    a.decide(
        &info.id,
        Verdict::Approve,
        1000,
        Some(Duration::from_secs(600)),
        now,
    )
    .expect("held");
    assert_eq!(a.remembered(&req("/x"), now), Some(1000));
    assert_eq!(
        a.remembered(&req("/x"), now + Duration::from_secs(599)),
        Some(1000)
    );
    // Another route, method, host or bottle is not covered.
    assert_eq!(a.remembered(&req("/y"), now), None);
    let mut other = req("/x");
    other.method = "PUT".into();
    assert_eq!(a.remembered(&other, now), None);
    let mut other = req("/x");
    other.bottle = "c".into();
    assert_eq!(a.remembered(&other, now), None);
    // Expired: forgotten.
    assert_eq!(
        a.remembered(&req("/x"), now + Duration::from_secs(600)),
        None
    );
    assert_eq!(a.remembered(&req("/x"), now), None);
}

#[test]
fn a_denial_or_plain_approval_is_not_remembered() {
    let a = Approvals::new();
    let now = Instant::now();
    let (info, _h) = a.hold(req("/x"));
    a.decide(
        &info.id,
        Verdict::Deny,
        0,
        Some(Duration::from_secs(60)),
        now,
    )
    .expect("held");
    assert_eq!(a.remembered(&req("/x"), now), None);
    let (info, _h) = a.hold(req("/x"));
    a.decide(&info.id, Verdict::Approve, 0, None, now)
        .expect("held");
    assert_eq!(a.remembered(&req("/x"), now), None);
}

/// A store in memory, shared by the registries a test makes one after the other (as a
/// restarted daemon reads what the last one wrote).
#[derive(Clone, Default)]
struct MemStore(std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>);

impl MemStore {
    fn bytes(&self) -> Option<Vec<u8>> {
        self.0.lock().expect("not poisoned").clone()
    }
}

impl RegistryStore for MemStore {
    fn place(&self) -> String {
        "/state/approvals.json".to_owned()
    }

    fn load(&self) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self.bytes())
    }

    fn save(&self, bytes: &[u8]) -> std::io::Result<()> {
        *self.0.lock().expect("not poisoned") = Some(bytes.to_vec());
        Ok(())
    }
}

#[test]
fn a_restart_keeps_ids_going_and_approvals_remembered_and_reports_lost_holds() {
    let store = MemStore::default();
    let (a, lost) = Approvals::persistent(Box::new(store.clone())).expect("a new registry");
    assert!(lost.is_empty());
    let (first, hold) = a.hold(req("/remember"));
    a.decide(
        &first.id,
        Verdict::Approve,
        7,
        Some(Duration::from_secs(600)),
        Instant::now(),
    )
    .expect("held");
    drop(hold);
    let (short, hold) = a.hold(req("/short"));
    a.decide(
        &short.id,
        Verdict::Approve,
        7,
        Some(Duration::from_millis(1)),
        Instant::now(),
    )
    .expect("held");
    drop(hold);
    let (pending, _hold) = a.hold(req("/pending"));
    let written: serde_json::Value =
        serde_json::from_slice(&store.bytes().expect("written")).expect("JSON");
    assert_eq!(
        written["pending"][0]["path"], "/pending",
        "saved with each change"
    );
    // The daemon dies with the hold pending.
    std::mem::forget(_hold);
    drop(a);
    std::thread::sleep(Duration::from_millis(5));

    let (b, lost) = Approvals::persistent(Box::new(store.clone())).expect("the saved registry");
    assert_eq!(
        lost,
        vec![pending.clone()],
        "the pending hold is reported, once"
    );
    assert!(b.pending().is_empty());
    let (next, _h) = b.hold(req("/next"));
    let n = |r: &HeldRequest| r.id.parse::<u64>().expect("a number");
    assert_eq!(
        n(&next),
        n(&pending) + 1,
        "ids go on: an old id is never reused"
    );
    assert_eq!(b.remembered(&req("/remember"), Instant::now()), Some(7));
    assert_eq!(
        b.remembered(&req("/short"), Instant::now()),
        None,
        "expired"
    );
    drop(_h);
    drop(b);
    let (_, lost) = Approvals::persistent(Box::new(store)).expect("again");
    assert!(
        lost.is_empty(),
        "a lost hold is reported by one restart only"
    );
}

#[test]
fn a_damaged_file_is_refused_naming_it() {
    let store = MemStore::default();
    store.save(b"{\"next\": \"x\"}").expect("saved");
    let e = Approvals::persistent(Box::new(store)).expect_err("refused");
    let text = e.to_string();
    assert!(
        text.contains("approvals.json") && text.contains("fix or remove"),
        "{text}"
    );
}
