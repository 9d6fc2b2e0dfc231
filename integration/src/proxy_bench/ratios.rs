//! cork against another peer in the same round of the proxy bench: the ratios the report
//! and the summary print (cork / cork-relay, cork / squid and cork / cork-b, in rate and in
//! CPU per request), each paired round by round so that the machine's load, which moves
//! both peers of a round alike, weighs less.

use super::{Peer, PeerResult};

/// One figure of a peer's round, when it has it.
pub type Pick = fn(&PeerResult) -> Option<f64>;

/// cork against another peer in the same round: report key, what it is, the other peer
/// and the figure compared. Against the relay, what inspection costs on the agent's
/// path; against squid, the rate (the target: at least 2) and the CPU each
/// proxy spends per request — squid serves from one process, so its rate is bounded by
/// one core however much the client and upstream leave free, and the CPU ratio is the
/// comparison the machine's load moves least; against `cork-b`, one build of cork
/// against another.
pub fn same_round_ratios() -> [(&'static str, &'static str, Peer, Pick); 5] {
    [
        (
            "max_rps_of_relay",
            "keep-alive HTTPS max req/s, cork / cork-relay in the same round",
            Peer::CorkRelay,
            |r| Some(r.max.rate),
        ),
        (
            "max_rps_of_squid",
            "keep-alive HTTPS max req/s, cork / squid in the same round",
            Peer::Squid,
            |r| Some(r.max.rate),
        ),
        (
            "agent_cpu_of_squid",
            "CPU per request at the max rate, cork's agent / squid's process in the same round",
            Peer::Squid,
            |r| r.agent_cpu_us,
        ),
        (
            "max_rps_of_cork-b",
            "keep-alive HTTPS max req/s, cork / cork-b (another build) in the same round",
            Peer::CorkB,
            |r| Some(r.max.rate),
        ),
        (
            "agent_cpu_of_cork-b",
            "CPU per request at the max rate, cork's agent / cork-b's in the same round",
            Peer::CorkB,
            |r| r.agent_cpu_us,
        ),
    ]
}

/// `a`'s figure over `b`'s, per round both have it in: a ratio that outside load on the
/// machine moves less than either peer's ratio to direct (the two run seconds apart).
pub fn per_round_ratio(results: &[PeerResult], a: Peer, b: Peer, pick: Pick) -> Vec<f64> {
    let of = |p: Peer, round: usize| {
        results
            .iter()
            .find(|r| r.peer == p && r.round == round)
            .and_then(pick)
    };
    results
        .iter()
        .filter(|r| r.peer == a)
        .filter_map(|r| Some(pick(r)? / of(b, r.round)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_bench::LoadResult;

    fn round(peer: Peer, round: usize, rate: f64, cpu: Option<f64>) -> PeerResult {
        let load = LoadResult {
            requests: 1,
            errors: 0,
            rate,
            p50_us: 1,
            p99_us: 1,
            cdf: vec![],
        };
        PeerResult {
            peer,
            round,
            max: load.clone(),
            paced: load,
            fresh: None,
            agent_cpu_us: cpu,
        }
    }

    #[test]
    fn same_round_ratios_pair_rounds_and_skip_what_is_missing() {
        let results = [
            round(Peer::Cork, 1, 30.0, Some(30.0)),
            round(Peer::Squid, 1, 15.0, Some(60.0)),
            round(Peer::Cork, 2, 40.0, None),
            round(Peer::Squid, 2, 10.0, Some(50.0)),
            // Round 3: no squid.
            round(Peer::Cork, 3, 99.0, Some(1.0)),
        ];
        let rate: Pick = |r| Some(r.max.rate);
        let cpu: Pick = |r| r.agent_cpu_us;
        assert_eq!(
            per_round_ratio(&results, Peer::Cork, Peer::Squid, rate),
            [2.0, 4.0]
        );
        assert_eq!(
            per_round_ratio(&results, Peer::Cork, Peer::Squid, cpu),
            [0.5]
        );
        assert!(per_round_ratio(&results, Peer::Cork, Peer::CorkRelay, rate).is_empty());
        let keys: Vec<_> = same_round_ratios().iter().map(|r| r.0).collect();
        assert_eq!(
            keys,
            [
                "max_rps_of_relay",
                "max_rps_of_squid",
                "agent_cpu_of_squid",
                "max_rps_of_cork-b",
                "agent_cpu_of_cork-b"
            ]
        );
    }
}
