//! The kernel side: apply a bottle's plan as one atomic batch, read the table back and
//! compare, remove a bottle, list the bottles present. All in the calling thread's
//! network namespace; needs CAP_NET_ADMIN there.
//!
//! Applying replaces the bottle's chains in the same batch that adds them (for each
//! chain: add a bare chain of that name — a no-op if it exists — delete it with its
//! rules, add it anew with its rules), so a reapply after a policy change is one
//! transaction: the kernel switches from the old chains to the new between two packets,
//! and a batch it refuses leaves the old ones as they were.

use std::collections::BTreeSet;
use std::io;

use nftnl::{Batch, MsgType, NlMsg};

use crate::compile;
use crate::netlink::Socket;
use crate::plan::{BottlePlan, ChainType, TABLE, bottle_of_chain, chain_prefix};
use crate::sys::{Chain, ChainInfo, Rule, Table, c};
use crate::vm::{CHAIN_SUFFIXES, PlanError, VmRules};

/// Why an nftables operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("opening a netfilter netlink socket")]
    Socket(#[source] io::Error),
    #[error("sending the nftables batch that {what}")]
    Send {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("the kernel refused the batch that {what} at \"{message}\"; none of it was applied")]
    Refused {
        what: String,
        message: String,
        #[source]
        source: io::Error,
    },
    #[error("the kernel acknowledged {acked} of the {sent} messages of the batch that {what}")]
    Incomplete {
        what: String,
        acked: usize,
        sent: usize,
    },
    #[error("listing the {what} of table inet {TABLE}")]
    Dump {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("table inet {TABLE} differs from the plan of bottle {id}:\n  {}", differences.join("\n  "))]
    Mismatch { id: u32, differences: Vec<String> },
}

/// Plans `rules` and applies the plan ([`apply_plan`]).
pub fn apply(rules: &VmRules) -> Result<BottlePlan, NftError> {
    let plan = rules.plan()?;
    apply_plan(&plan)?;
    Ok(plan)
}

/// Creates the table if needed and replaces bottle `plan.id`'s chains with the plan's,
/// in one batch. Chains of the bottle that the plan no longer has are deleted too.
pub fn apply_plan(plan: &BottlePlan) -> Result<(), NftError> {
    let prefix = chain_prefix(plan.id);
    if let Some(foreign) = plan.chains.iter().find(|ch| !ch.name.starts_with(&prefix)) {
        return Err(PlanError::ForeignChain {
            name: foreign.name.clone(),
            id: plan.id,
        }
        .into());
    }
    let mut sock = Socket::open().map_err(NftError::Socket)?;
    let old = bottle_chains(&mut sock, plan.id)?;
    let table = c(TABLE);
    let mut tx = Tx::new(format!("applies the chains of bottle {}", plan.id));
    tx.add(
        &Table::new(&table),
        MsgType::Add,
        format!("add table inet {TABLE}"),
    );
    let planned: BTreeSet<&str> = plan.chains.iter().map(|ch| ch.name.as_str()).collect();
    let names: BTreeSet<&str> = old
        .iter()
        .map(|ch| ch.name.as_str())
        .chain(planned)
        .collect();
    for name in names {
        let bare = Chain::new(&table, &c(name));
        tx.add(
            &bare,
            MsgType::Add,
            format!("make sure chain {name} exists"),
        );
        tx.add(&bare, MsgType::Del, format!("delete the old chain {name}"));
    }
    for chain in &plan.chains {
        let name = &chain.name;
        tx.add(
            &compile::chain(&table, chain),
            MsgType::Add,
            format!("add chain {name}"),
        );
        for (i, rule) in chain.rules.iter().enumerate() {
            let what = format!("add rule {} of {name}: {rule}", i + 1);
            tx.add(&compile::rule(&table, name, rule), MsgType::Add, what);
        }
    }
    tx.commit(&mut sock)
}

/// Reads table inet cork back and compares bottle `plan.id`'s chains and rules with the
/// plan: the table exists and is active, the bottle has exactly the plan's chains, each
/// with the planned type, hook, priority and policy accept, and exactly the planned
/// rules in order, expression by expression.
pub fn read_back(plan: &BottlePlan) -> Result<(), NftError> {
    let mut sock = Socket::open().map_err(NftError::Socket)?;
    let mut differences = Vec::new();
    match our_table(&mut sock)? {
        None => differences.push(format!("table inet {TABLE} does not exist")),
        Some(flags) if flags != 0 => differences.push(format!(
            "table inet {TABLE} has flags {flags:#x} (dormant: its chains do not run)"
        )),
        Some(_) => {}
    }
    let chains = bottle_chains(&mut sock, plan.id)?;
    let rules = table_rules(&mut sock)?;
    let table = c(TABLE);
    for want in &plan.chains {
        let Some(have) = chains.iter().find(|ch| ch.name == want.name) else {
            differences.push(format!("chain {} is missing", want.name));
            continue;
        };
        let want_type = match want.chain_type {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
        };
        let expected = (
            Some(want_type),
            Some(compile::hook_number(want.hook)),
            Some(want.priority),
            Some(libc::NF_ACCEPT as u32),
        );
        let found = (
            have.chain_type.as_deref(),
            have.hook,
            have.priority,
            have.policy,
        );
        if found != expected {
            differences.push(format!(
                "chain {}: (type, hook, priority, policy) is {found:?}, the plan has {expected:?}",
                want.name
            ));
        }
        let have_rules: Vec<&String> = rules
            .iter()
            .filter(|(chain, _)| *chain == want.name)
            .map(|(_, text)| text)
            .collect();
        if have_rules.len() != want.rules.len() {
            differences.push(format!(
                "chain {}: {} rules, the plan has {}",
                want.name,
                have_rules.len(),
                want.rules.len()
            ));
        }
        for (i, rule) in want.rules.iter().enumerate() {
            let text = compile::rule(&table, &want.name, rule).expressions();
            let have = have_rules.get(i).map(|s| s.as_str());
            if have != Some(text.as_str()) {
                differences.push(format!(
                    "chain {} rule {}: the kernel does not have `{rule}` there\n    want: {}\n    have: {}",
                    want.name,
                    i + 1,
                    text.replace('\n', " "),
                    have.map(|h| h.replace('\n', " ")).unwrap_or_else(|| "(no rule)".into()),
                ));
                // Later rules are shifted; one difference names the place.
                break;
            }
        }
    }
    for extra in chains
        .iter()
        .filter(|ch| !plan.chains.iter().any(|p| p.name == ch.name))
    {
        differences.push(format!("chain {} is not in the plan", extra.name));
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(NftError::Mismatch {
            id: plan.id,
            differences,
        })
    }
}

/// Deletes bottle `id`'s chains (those present and those a plan would have) in one
/// batch, then deletes the table if that left it empty. Removing a bottle that has
/// nothing left is not an error.
pub fn remove(id: u32) -> Result<(), NftError> {
    let mut sock = Socket::open().map_err(NftError::Socket)?;
    if our_table(&mut sock)?.is_none() {
        return Ok(());
    }
    let present = bottle_chains(&mut sock, id)?;
    let table = c(TABLE);
    let mut tx = Tx::new(format!("removes the chains of bottle {id}"));
    tx.add(
        &Table::new(&table),
        MsgType::Add,
        format!("add table inet {TABLE}"),
    );
    let planned = CHAIN_SUFFIXES
        .iter()
        .map(|s| format!("{}{s}", chain_prefix(id)));
    let names: BTreeSet<String> = present
        .into_iter()
        .map(|ch| ch.name)
        .chain(planned)
        .collect();
    for name in &names {
        let bare = Chain::new(&table, &c(name));
        tx.add(
            &bare,
            MsgType::Add,
            format!("make sure chain {name} exists"),
        );
        tx.add(&bare, MsgType::Del, format!("delete chain {name}"));
    }
    tx.commit(&mut sock)?;
    // The kernel decides "empty": another cork adding a bottle meanwhile makes this
    // EBUSY (its chains stay), another one removing the table first makes it ENOENT.
    let mut tx = Tx::new(format!("deletes table inet {TABLE} if empty"));
    tx.add(
        &Table::if_empty(&table),
        MsgType::Del,
        format!("delete table inet {TABLE}"),
    );
    match tx.commit(&mut sock) {
        Err(NftError::Refused { source, .. })
            if matches!(source.raw_os_error(), Some(libc::EBUSY | libc::ENOENT)) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Whether table inet cork exists (for leak checks: it is gone when no bottle is left).
pub fn table_exists() -> Result<bool, NftError> {
    let mut sock = Socket::open().map_err(NftError::Socket)?;
    Ok(our_table(&mut sock)?.is_some())
}

/// The ids of the bottles that have chains in table inet cork (for `cork clean`).
pub fn bottles() -> Result<Vec<u32>, NftError> {
    let mut sock = Socket::open().map_err(NftError::Socket)?;
    let ids: BTreeSet<u32> = all_chains(&mut sock)?
        .iter()
        .filter_map(|ch| bottle_of_chain(&ch.name))
        .collect();
    Ok(ids.into_iter().collect())
}

/// The flags of table inet cork, or `None` if it does not exist.
fn our_table(sock: &mut Socket) -> Result<Option<u32>, NftError> {
    let msgs = sock
        .dump(libc::NFT_MSG_GETTABLE, &c(TABLE))
        .map_err(|source| NftError::Dump {
            what: "tables",
            source,
        })?;
    Ok(msgs
        .iter()
        .filter_map(|m| Table::parse(m))
        .find(|t| t.name() == TABLE && t.family() == u32::from(crate::sys::FAMILY))
        .map(|t| t.flags()))
}

fn all_chains(sock: &mut Socket) -> Result<Vec<ChainInfo>, NftError> {
    let msgs = sock
        .dump(libc::NFT_MSG_GETCHAIN, &c(TABLE))
        .map_err(|source| NftError::Dump {
            what: "chains",
            source,
        })?;
    Ok(msgs
        .iter()
        .filter_map(|m| Chain::parse(m))
        .filter(|ch| ch.table == TABLE)
        .collect())
}

fn bottle_chains(sock: &mut Socket, id: u32) -> Result<Vec<ChainInfo>, NftError> {
    Ok(all_chains(sock)?
        .into_iter()
        .filter(|ch| bottle_of_chain(&ch.name) == Some(id))
        .collect())
}

/// Every rule of table inet cork as (chain, expressions), in kernel order.
fn table_rules(sock: &mut Socket) -> Result<Vec<(String, String)>, NftError> {
    let msgs = sock
        .dump(libc::NFT_MSG_GETRULE, &c(TABLE))
        .map_err(|source| NftError::Dump {
            what: "rules",
            source,
        })?;
    Ok(msgs
        .iter()
        .filter_map(|m| Rule::parse(m))
        .filter(|(table, _, _)| table == TABLE)
        .map(|(_, chain, rule)| (chain, rule.expressions()))
        .collect())
}

/// A batch under construction, with a description of each message for error reports.
struct Tx {
    what: String,
    batch: Batch,
    messages: Vec<String>,
}

impl Tx {
    fn new(what: String) -> Tx {
        Tx {
            what,
            batch: Batch::new(),
            messages: Vec::new(),
        }
    }

    fn add<T: NlMsg>(&mut self, msg: &T, kind: MsgType, what: String) {
        self.batch.add(msg, kind);
        self.messages.push(what);
    }

    /// Sends the batch; the first refused message names the error.
    fn commit(self, sock: &mut Socket) -> Result<(), NftError> {
        let Tx {
            what,
            batch,
            messages,
        } = self;
        let batch = batch.finalize();
        let seqs = batch.sequence_numbers();
        // Kernels from 6.10 acknowledge the batch begin/end messages too (nftnl asks for
        // it then): the object messages sit after the begin's sequence number.
        let begin_acked = seqs.len() == messages.len() + 2;
        let first = seqs.start + u32::from(begin_acked);
        let replies = sock.send_batch(&batch).map_err(|source| NftError::Send {
            what: what.clone(),
            source,
        })?;
        if let Some(bad) = replies.iter().find(|r| r.errno != 0) {
            let index = bad.seq.wrapping_sub(first) as usize;
            let message = messages
                .get(index)
                .cloned()
                .unwrap_or_else(|| format!("batch message with sequence number {}", bad.seq));
            return Err(NftError::Refused {
                what,
                message,
                source: io::Error::from_raw_os_error(bad.errno),
            });
        }
        let acked = replies.iter().filter(|r| seqs.contains(&r.seq)).count();
        if acked < messages.len() {
            return Err(NftError::Incomplete {
                what,
                acked,
                sent: messages.len(),
            });
        }
        Ok(())
    }
}
