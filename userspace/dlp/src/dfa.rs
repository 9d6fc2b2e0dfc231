//! The anchored DFA: a detector's regex compiled to a fully built DFA for searches that
//! start at a keyword. Most such searches find nothing a few bytes past the keyword;
//! the general regex engine spends more setting up each one than searching, the DFA a
//! few table lookups. A *relaxed* one (looser bounds, far fewer states) rejects keyword
//! hits before any search is set up for them ([`AnchoredDfa::dies_after`]).

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::util::primitives::StateID;
use regex_automata::util::{start, syntax};
use regex_automata::{Anchored, nfa::thompson};
use regex_syntax::hir::{Capture, Hir, HirKind, Repetition};

/// Largest anchored DFA built, in bytes.
const DFA_LIMIT: usize = 512 << 10;

/// Largest relaxed DFA built (see [`AnchoredDfa::relaxed`]), in bytes.
const RELAXED_LIMIT: usize = 64 << 10;

/// A regex as a DFA that matches only at the start of the haystack.
#[derive(Debug)]
pub(super) struct AnchoredDfa {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
    /// Per keyword of the detector: its length and the state the DFA is in after it,
    /// when every spelling a keyword hit can have leads there from every start (see
    /// [`AnchoredDfa::with_keywords`]).
    after: Vec<Option<(usize, StateID)>>,
    /// For a DFA of a relaxed regex (see [`AnchoredDfa::relaxed`]): how many bytes from a
    /// start the original's matches can need read, the byte after the longest included.
    budget: Option<usize>,
}

/// The DFA met a byte it cannot decide on. Only look-around makes a DFA give up, and
/// anchored searches are only built for regexes without it.
#[derive(Debug)]
pub(super) struct GaveUp;

impl AnchoredDfa {
    /// `None` when the DFA would exceed [`DFA_LIMIT`].
    pub fn build(regex: &str) -> Option<AnchoredDfa> {
        let dfa = Self::builder()
            // As `regex::bytes` parses and compiles.
            .syntax(syntax::Config::new().utf8(false))
            .build(regex)
            .ok()?;
        Self::with_dfa(dfa, None)
    }

    /// The DFA of `hir` (a regex whose matches are at most `max_len` bytes) with every
    /// repetition's upper bound dropped and its lower bound cut to at most
    /// [`RELAXED_MIN`] (see [`relax`]): it matches wherever the regex does, and more,
    /// so it only proves where the regex does *not* match ([`AnchoredDfa::dies`]), with
    /// `max_len` bounding the walk. Counted repetitions (`[a-z_]{0,24}`) are a state per
    /// count in a DFA, which grew the built-ins' DFAs past the cache, where every step of
    /// rejecting a keyword hit missed; without the counts they are a few hundred bytes.
    pub fn relaxed(hir: &Hir, max_len: usize) -> Option<AnchoredDfa> {
        let nfa = thompson::Compiler::new()
            .configure(thompson::Config::new().utf8(false))
            .build_from_hir(&relax(hir))
            .ok()?;
        // Small or nothing: a relaxed DFA is worth building only if it stays in the cache,
        // and giving up early bounds what the first hit of a detector costs.
        let dfa = Self::builder()
            .configure(
                dense::Config::new()
                    .dfa_size_limit(Some(RELAXED_LIMIT))
                    .determinize_size_limit(Some(4 * RELAXED_LIMIT)),
            )
            .build_from_nfa(&nfa)
            .ok()?;
        Self::with_dfa(dfa, Some(max_len + 1))
    }

    fn builder() -> dense::Builder {
        let mut builder = dense::Builder::new();
        builder
            .configure(
                dense::Config::new()
                    .start_kind(StartKind::Anchored)
                    .dfa_size_limit(Some(DFA_LIMIT))
                    .determinize_size_limit(Some(4 * DFA_LIMIT)),
            )
            .thompson(thompson::Config::new().utf8(false));
        builder
    }

    fn with_dfa(dfa: dense::DFA<Vec<u32>>, budget: Option<usize>) -> Option<AnchoredDfa> {
        let start = dfa
            .start_state(&start::Config::new().anchored(Anchored::Yes))
            .ok()?;
        Some(AnchoredDfa {
            dfa,
            start,
            after: Vec::new(),
            budget,
        })
    }

    /// The end of the leftmost-first match starting at the start of `hay`, as a search
    /// over `hay` alone finds it.
    pub fn end(&self, hay: &[u8]) -> Result<Option<usize>, GaveUp> {
        self.end_from(self.start, hay)
    }

    /// The anchored start state for a search at `at`, seeing the byte before it.
    fn start_at(&self, hay: &[u8], at: usize) -> Option<StateID> {
        let behind = at.checked_sub(1).map(|i| hay[i]);
        let config = start::Config::new()
            .anchored(Anchored::Yes)
            .look_behind(behind);
        self.dfa.start_state(&config).ok()
    }

    /// Records, for each of `keywords`, the state the DFA is in after it, so that
    /// [`AnchoredDfa::dies_after`] need not walk through it again at every hit: a
    /// regex's keyword part is mostly `(?i:key|token|...)`, where every spelling leads
    /// to the same state. A hit spells the keyword exactly (`exact`) or in any ASCII case;
    /// with look-around (`look`) the walk starts from the state of every byte before. A
    /// keyword some spelling or start would lead elsewhere, or through a special state
    /// (dead, match), is walked at each hit as before.
    pub fn with_keywords(mut self, keywords: &[String], exact: bool, look: bool) -> Self {
        let starts: Option<Vec<StateID>> = if look {
            (0..=255u8)
                .map(Some)
                .chain([None])
                .map(|b| {
                    let config = start::Config::new().anchored(Anchored::Yes).look_behind(b);
                    self.dfa.start_state(&config).ok()
                })
                .collect()
        } else {
            Some(vec![self.start])
        };
        self.after = keywords
            .iter()
            .map(|k| {
                let mut states = starts.clone()?;
                for &b in k.as_bytes() {
                    let spellings = if exact {
                        vec![b]
                    } else {
                        vec![b.to_ascii_lowercase(), b.to_ascii_uppercase()]
                    };
                    let mut next = Vec::with_capacity(states.len() * spellings.len());
                    for &s in &states {
                        for &c in &spellings {
                            let n = self.dfa.next_state(s, c);
                            if self.dfa.is_special_state(n) {
                                return None;
                            }
                            next.push(n);
                        }
                    }
                    next.sort_unstable();
                    next.dedup();
                    states = next;
                }
                match states[..] {
                    [one] => Some((k.len(), one)),
                    _ => None,
                }
            })
            .collect();
        self
    }

    /// [`AnchoredDfa::dies`] for a hit of keyword `keyword` (an index into the keywords
    /// given to [`AnchoredDfa::with_keywords`]) at `at`, starting after the keyword when
    /// the state there is known.
    pub fn dies_after(&self, hay: &[u8], at: usize, keyword: usize, look: bool) -> bool {
        match self.after.get(keyword).copied().flatten() {
            Some((len, state)) if at + len <= hay.len() => {
                let budget = self.budget.map(|b| b.saturating_sub(len));
                self.dies_from(state, &hay[at + len..], budget)
            }
            _ => self.dies(hay, at, look),
        }
    }

    /// Whether no match starts at `at` in `hay` whatever bytes follow it: the DFA dies
    /// inside `hay` before passing a match. `look_behind`: the regex has look-around, so
    /// the search starts in the state for the byte before `at`. Running out of bytes, or
    /// meeting a match, proves nothing.
    pub fn dies(&self, hay: &[u8], at: usize, look_behind: bool) -> bool {
        let start = if look_behind {
            match self.start_at(hay, at) {
                Some(s) => s,
                None => return false,
            }
        } else {
            self.start
        };
        self.dies_from(start, &hay[at..], self.budget)
    }

    /// Whether the DFA, in state `state`, dies inside `hay` before passing a match, or
    /// reads `budget` bytes (if any) without passing one.
    fn dies_from(&self, mut state: StateID, hay: &[u8], budget: Option<usize>) -> bool {
        let dfa = &self.dfa;
        let hay = match budget {
            Some(n) if n <= hay.len() => &hay[..n],
            _ => hay,
        };
        for &b in hay {
            state = dfa.next_state(state, b);
            if dfa.is_special_state(state) {
                if dfa.is_dead_state(state) {
                    return true;
                }
                if dfa.is_match_state(state) || dfa.is_quit_state(state) {
                    return false;
                }
            }
        }
        // All the bytes a match could need were read without one.
        budget.is_some_and(|n| n <= hay.len())
    }

    fn end_from(&self, start: StateID, hay: &[u8]) -> Result<Option<usize>, GaveUp> {
        let dfa = &self.dfa;
        let mut state = start;
        let mut end = None;
        for (at, &b) in hay.iter().enumerate() {
            state = dfa.next_state(state, b);
            if dfa.is_special_state(state) {
                // Matches show one byte late: this one ends before `b`.
                if dfa.is_match_state(state) {
                    end = Some(at);
                } else if dfa.is_dead_state(state) {
                    return Ok(end);
                } else if dfa.is_quit_state(state) {
                    return Err(GaveUp);
                }
            }
        }
        if dfa.is_match_state(dfa.next_eoi_state(state)) {
            end = Some(hay.len());
        }
        Ok(end)
    }
}

/// The most repetitions a relaxed regex still requires: `{64,4096}` becomes `{16,}`.
const RELAXED_MIN: u32 = 16;

/// `hir` with no upper bound on any repetition, and lower bounds cut to [`RELAXED_MIN`]:
/// it matches all that `hir` matches (at the same starts, to the same ends and beyond).
fn relax(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) | HirKind::Look(_) => hir.clone(),
        HirKind::Repetition(rep) => Hir::repetition(Repetition {
            min: rep.min.min(RELAXED_MIN),
            max: None,
            sub: Box::new(relax(&rep.sub)),
            ..rep.clone()
        }),
        HirKind::Capture(cap) => Hir::capture(Capture {
            sub: Box::new(relax(&cap.sub)),
            ..cap.clone()
        }),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(relax).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(relax).collect()),
    }
}
