//! The node's state machine, apart from any IO.
//!
//! ```text
//!             probes pass                 drain                    upgrade begins
//!  Starting ─────────────▶ Ready ◀──────────────────▶ Draining ───────────────────▶ Upgrading
//!     │                    ▲   │         undrain         │  ▲                           │
//!     │ probes fail  pass  │   │ fail                    │  │ (maintenance → upgrade    │
//!     └──────────────▶ Unhealthy                 maint.  ▼  │  begins too)              │
//!                                               Maintenance ┘                           │
//!   Ready / Unhealthy / Starting ◀─────────── upgrade ends (by probe health) ───────────┘
//! ```
//!
//! The machine is driven by [`Event`]s: the aggregate probe result (after
//! rise/fall, see `probe.rs`), operator commands and the upgrade runner.
//! [`Machine::apply`] either changes the state and returns the
//! [`Transition`] (logged, counted and shown by the caller), leaves it as
//! it is (`Ok(None)`: the command was already in force), or refuses with a
//! [`Refused`] that says why. It never does IO and never reads a clock.

use std::fmt;

/// What the node is doing, as `/ready` reports it (docs/operator-contract.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// The app has not yet passed its probes since the agent started.
    Starting,
    /// Probes pass; the gateway may send traffic.
    Ready,
    /// Probes fail; the gateway takes the node out of rotation.
    Unhealthy,
    /// No new requests; requests in flight finish.
    Draining,
    /// Out of service on purpose; no traffic and no failover onto it.
    Maintenance,
    /// The app is being replaced by another release.
    Upgrading,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Starting,
        State::Ready,
        State::Unhealthy,
        State::Draining,
        State::Maintenance,
        State::Upgrading,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Unhealthy => "unhealthy",
            State::Draining => "draining",
            State::Maintenance => "maintenance",
            State::Upgrading => "upgrading",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The aggregate of every probe, after rise and fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Some probe has not yet risen or fallen since it (re)started.
    Unknown,
    /// Every probe has passed `rise` times in a row.
    Passing,
    /// Some probe has failed `fall` times in a row.
    Failing,
}

/// What can happen to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The aggregate probe result changed.
    Health(Health),
    /// Operator: stop taking new requests.
    Drain,
    /// Operator: back into service (from draining or maintenance).
    Undrain,
    /// Operator: out of service.
    Maintenance,
    /// The upgrade runner stops the app (the node is drained first).
    UpgradeBegin,
    /// The upgrade runner is done (upgraded or rolled back).
    UpgradeEnd,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Health(_) => "health",
            Event::Drain => "drain",
            Event::Undrain => "undrain",
            Event::Maintenance => "maintenance",
            Event::UpgradeBegin => "upgrade-begin",
            Event::UpgradeEnd => "upgrade-end",
        }
    }
}

/// A state change, for the log, the metrics and the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub reason: String,
}

/// A command the current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {event} while the node is {state}: {why}")]
pub struct Refused {
    pub state: State,
    pub event: &'static str,
    pub why: &'static str,
}

/// The state, the last aggregate health and why the state is what it is.
#[derive(Debug, Clone)]
pub struct Machine {
    state: State,
    health: Health,
    reason: String,
}

impl Default for Machine {
    fn default() -> Self {
        Machine {
            state: State::Starting,
            health: Health::Unknown,
            reason: "the agent started; waiting for the probes".into(),
        }
    }
}

impl Machine {
    pub fn state(&self) -> State {
        self.state
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// Why the node is in its state (the reason of the last transition).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The state that probe health alone would give a node in service.
    fn by_health(&self) -> State {
        match self.health {
            Health::Passing => State::Ready,
            Health::Failing => State::Unhealthy,
            Health::Unknown => State::Starting,
        }
    }

    /// Applies `event`; `reason` says why (shown with the transition).
    pub fn apply(&mut self, event: Event, reason: &str) -> Result<Option<Transition>, Refused> {
        use State::*;
        let refuse = |why: &'static str| Refused {
            state: self.state,
            event: event.as_str(),
            why,
        };
        let to = match (event, self.state) {
            (Event::Health(h), s) => {
                self.health = h;
                match (s, h) {
                    // Health moves only a node in service; an unknown
                    // result (probes restarted) leaves it where it is.
                    (Starting | Ready | Unhealthy, Health::Passing | Health::Failing) => {
                        self.by_health()
                    }
                    _ => s,
                }
            }
            (
                Event::Drain | Event::Undrain | Event::Maintenance | Event::UpgradeBegin,
                Upgrading,
            ) => return Err(refuse("an upgrade is in progress")),
            (Event::Drain, Starting | Ready | Unhealthy) => Draining,
            (Event::Drain, Draining) => Draining,
            (Event::Drain, Maintenance) => {
                return Err(refuse(
                    "undrain it first; maintenance already takes no traffic",
                ))
            }
            (Event::Maintenance, Starting | Ready | Unhealthy | Draining | Maintenance) => {
                Maintenance
            }
            (Event::Undrain, Draining | Maintenance) => self.by_health(),
            (Event::Undrain, s) => s,
            (Event::UpgradeBegin, Draining | Maintenance) => Upgrading,
            (Event::UpgradeBegin, _) => {
                return Err(refuse("the node must be drained or in maintenance first"))
            }
            (Event::UpgradeEnd, Upgrading) => self.by_health(),
            (Event::UpgradeEnd, _) => return Err(refuse("no upgrade is in progress")),
        };
        if to == self.state {
            return Ok(None);
        }
        let t = Transition {
            from: self.state,
            to,
            reason: reason.to_string(),
        };
        self.state = to;
        self.reason = reason.to_string();
        Ok(Some(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m_in(state: State, health: Health) -> Machine {
        let mut m = Machine::default();
        m.apply(Event::Health(health), "probes").unwrap();
        match state {
            State::Starting | State::Ready | State::Unhealthy => {}
            State::Draining => {
                m.apply(Event::Drain, "op").unwrap();
            }
            State::Maintenance => {
                m.apply(Event::Maintenance, "op").unwrap();
            }
            State::Upgrading => {
                m.apply(Event::Drain, "op").unwrap();
                m.apply(Event::UpgradeBegin, "up").unwrap();
            }
        }
        assert_eq!(m.state(), state);
        m
    }

    #[test]
    fn probes_move_a_node_in_service_only() {
        let mut m = Machine::default();
        assert_eq!(m.state(), State::Starting);
        let t = m
            .apply(Event::Health(Health::Passing), "2 probes passed")
            .unwrap()
            .unwrap();
        assert_eq!((t.from, t.to), (State::Starting, State::Ready));
        m.apply(Event::Health(Health::Failing), "http failed")
            .unwrap();
        assert_eq!(m.state(), State::Unhealthy);
        assert_eq!(m.reason(), "http failed");
        m.apply(Event::Health(Health::Passing), "back").unwrap();
        assert_eq!(m.state(), State::Ready);
        // A restart of the probes (unknown) leaves a ready node ready.
        assert_eq!(
            m.apply(Event::Health(Health::Unknown), "reset").unwrap(),
            None
        );
        assert_eq!(m.state(), State::Ready);

        for s in [State::Draining, State::Maintenance, State::Upgrading] {
            let mut m = m_in(s, Health::Passing);
            assert_eq!(m.apply(Event::Health(Health::Failing), "x").unwrap(), None);
            assert_eq!(m.state(), s, "health must not move a node out of {s}");
            assert_eq!(m.health(), Health::Failing);
        }
    }

    #[test]
    fn drain_and_undrain_follow_health() {
        let mut m = m_in(State::Ready, Health::Passing);
        assert_eq!(
            m.apply(Event::Drain, "op").unwrap().unwrap().to,
            State::Draining
        );
        assert_eq!(m.apply(Event::Drain, "op again").unwrap(), None);
        m.apply(Event::Health(Health::Failing), "app died").unwrap();
        // Undrain returns to what the probes say now.
        assert_eq!(
            m.apply(Event::Undrain, "op").unwrap().unwrap().to,
            State::Unhealthy
        );
        assert_eq!(m.apply(Event::Undrain, "op").unwrap(), None);
        let mut m = m_in(State::Maintenance, Health::Passing);
        assert_eq!(
            m.apply(Event::Undrain, "op").unwrap().unwrap().to,
            State::Ready
        );
        let mut m = m_in(State::Draining, Health::Passing);
        assert_eq!(
            m.apply(Event::Maintenance, "op").unwrap().unwrap().to,
            State::Maintenance
        );
    }

    #[test]
    fn refused_commands_change_nothing() {
        let mut m = m_in(State::Maintenance, Health::Passing);
        let r = m.apply(Event::Drain, "op").unwrap_err();
        assert_eq!(r.state, State::Maintenance);
        assert!(r
            .to_string()
            .starts_with("cannot drain while the node is maintenance"));
        assert_eq!(m.state(), State::Maintenance);

        for e in [
            Event::Drain,
            Event::Undrain,
            Event::Maintenance,
            Event::UpgradeBegin,
        ] {
            let mut m = m_in(State::Upgrading, Health::Failing);
            let r = m.apply(e, "op").unwrap_err();
            assert_eq!(r.why, "an upgrade is in progress");
            assert_eq!(m.state(), State::Upgrading);
        }
        let mut m = m_in(State::Ready, Health::Passing);
        assert!(m.apply(Event::UpgradeBegin, "up").is_err());
        assert!(m.apply(Event::UpgradeEnd, "up").is_err());
        assert_eq!(m.state(), State::Ready);
    }

    #[test]
    fn an_upgrade_ends_where_the_new_release_stands() {
        let mut m = m_in(State::Upgrading, Health::Passing);
        m.apply(Event::Health(Health::Unknown), "probes restarted")
            .unwrap();
        m.apply(Event::Health(Health::Passing), "new release passes")
            .unwrap();
        assert_eq!(m.state(), State::Upgrading);
        assert_eq!(
            m.apply(Event::UpgradeEnd, "done").unwrap().unwrap().to,
            State::Ready
        );
        let mut m = m_in(State::Upgrading, Health::Failing);
        assert_eq!(
            m.apply(Event::UpgradeEnd, "rolled back")
                .unwrap()
                .unwrap()
                .to,
            State::Unhealthy
        );
    }
}
