//! cork-nft's kernel side without traffic: a refused batch changes nothing and a valid
//! one replaces the bottle's chains atomically, read-back catches what someone changed,
//! removal deletes the bottle's chains and, with the last bottle, the table; the largest
//! plan a manifest allows goes through one batch. (Traffic: `nft.rs`.)

use std::net::SocketAddr;

use anyhow::{Context, Result};
use cork_integration::guest::GATEWAY_V4;
use cork_integration::nft::{apply, in_host, nft, vm_rules};
use cork_integration::{Guest, World};
use cork_nft::VmRules;
use cork_nft::plan::{Action, RulePlan};

const ID: u32 = 7;

fn rules(guest: &Guest) -> VmRules {
    vm_rules(guest, ID)
}

#[test]
fn a_refused_batch_leaves_the_previous_rules_and_a_valid_one_replaces_them() -> Result<()> {
    let world = World::new("a_refused_batch_leaves_the_previous_rules")?;
    let guest = world.guest()?;
    let old = apply(&world, &rules(&guest))?;
    let before = nft(&world, &["list", "table", "inet", "cork"])?;

    let new_rules = VmRules {
        host_ports: vec![7000, 7001],
        ..rules(&guest)
    };
    let mut bad = new_rules.plan()?;
    // A DNAT in a filter chain, last in the batch: the kernel refuses it (EOPNOTSUPP)
    // after accepting everything before it.
    let input = bad
        .chains
        .iter_mut()
        .find(|c| c.name == "b7_in")
        .context("b7_in")?;
    input.rules.push(RulePlan::new(
        vec![],
        Action::Dnat(SocketAddr::new(GATEWAY_V4.into(), 1)),
    ));
    let err = in_host(&world, move || cork_nft::apply_plan(&bad)).expect_err("refused");
    let text = format!("{err:#}");
    assert!(text.contains("b7_in") && text.contains("dnat"), "{text}");
    assert_eq!(nft(&world, &["list", "table", "inet", "cork"])?, before);
    let plan = old.clone();
    in_host(&world, move || cork_nft::read_back(&plan))?;

    let new = apply(&world, &new_rules)?;
    let plan = new.clone();
    in_host(&world, move || cork_nft::read_back(&plan))?;
    let err = in_host(&world, move || cork_nft::read_back(&old)).expect_err("old plan");
    assert!(format!("{err:#}").contains("b7_in"), "{err:#}");
    Ok(())
}

#[test]
fn read_back_detects_a_deleted_rule_and_a_dormant_table() -> Result<()> {
    let world = World::new("read_back_detects_a_deleted_rule")?;
    let guest = world.guest()?;
    let plan = apply(&world, &rules(&guest))?;
    let p = plan.clone();
    in_host(&world, move || cork_nft::read_back(&p))?;

    let listing = nft(&world, &["-a", "list", "chain", "inet", "cork", "b7_fwd"])?;
    let handle = listing
        .lines()
        .find(|l| l.contains("drop") && l.contains("iifname"))
        .and_then(|l| l.rsplit("# handle ").next())
        .context(format!("a handle in:\n{listing}"))?
        .trim()
        .to_owned();
    nft(
        &world,
        &[
            "delete", "rule", "inet", "cork", "b7_fwd", "handle", &handle,
        ],
    )?;
    let p = plan.clone();
    let err = in_host(&world, move || cork_nft::read_back(&p)).expect_err("mismatch");
    let text = format!("{err:#}");
    assert!(
        text.contains("chain b7_fwd: 3 rules, the plan has 4"),
        "{text}"
    );

    apply(&world, &rules(&guest))?;
    let p = plan.clone();
    in_host(&world, move || cork_nft::read_back(&p))?;
    nft(
        &world,
        &["add", "table", "inet", "cork", "{ flags dormant; }"],
    )?;
    let err = in_host(&world, move || cork_nft::read_back(&plan)).expect_err("dormant");
    assert!(format!("{err:#}").contains("dormant"), "{err:#}");
    Ok(())
}

#[test]
fn remove_deletes_the_bottles_chains_and_the_last_one_the_table() -> Result<()> {
    let world = World::new("remove_deletes_the_bottles_chains")?;
    let guest = world.guest()?;
    apply(&world, &rules(&guest))?;
    let second = VmRules {
        id: 8,
        ifname: "ck8".into(),
        ..rules(&guest)
    };
    apply(&world, &second)?;
    assert_eq!(in_host(&world, cork_nft::bottles)?, [7, 8]);

    in_host(&world, || cork_nft::remove(7))?;
    assert_eq!(in_host(&world, cork_nft::bottles)?, [8]);
    let plan = second.plan()?;
    in_host(&world, move || cork_nft::read_back(&plan))?;
    assert!(nft(&world, &["list", "tables"])?.contains("table inet cork"));

    in_host(&world, || cork_nft::remove(8))?;
    let tables = nft(&world, &["list", "tables"])?;
    assert!(!tables.contains("cork"), "{tables}");
    assert!(in_host(&world, cork_nft::bottles)?.is_empty());
    // Removing again, with no table at all, is not an error.
    in_host(&world, || cork_nft::remove(8))?;
    Ok(())
}

#[test]
fn the_largest_plan_applies_reads_back_and_is_replaced() -> Result<()> {
    let world = World::new("the_largest_plan_applies_and_reads_back")?;
    let guest = world.guest()?;
    // CORK_MAX_HOST_PORTS (256) host ports: over a thousand rules in one batch, each
    // acknowledged by the kernel.
    let big = VmRules {
        host_ports: (20_000..20_256).collect(),
        ..rules(&guest)
    };
    let started = std::time::Instant::now();
    let plan = apply(&world, &big)?;
    let applied = started.elapsed();
    let rules_in_plan: usize = plan.chains.iter().map(|c| c.rules.len()).sum();
    assert!(rules_in_plan > 1000, "{rules_in_plan}");
    let p = plan.clone();
    let started = std::time::Instant::now();
    in_host(&world, move || cork_nft::read_back(&p))?;
    eprintln!(
        "{rules_in_plan} rules: applied in {applied:?}, read back in {:?}",
        started.elapsed()
    );
    apply(&world, &big)?;
    in_host(&world, move || cork_nft::read_back(&plan))?;
    Ok(())
}
