//! Up/down judgement with rise/fall thresholds, so one lost poll does not
//! flap a relay and a relay that just came back is not trusted at once.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Never polled successfully or unsuccessfully enough to judge.
    Unknown,
    Up,
    Down,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Up => "up",
            State::Down => "down",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub state: State,
    pub failures: i64,
    pub successes: i64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: State::Unknown,
            failures: 0,
            successes: 0,
        }
    }
}

impl Health {
    pub(crate) fn from_row(state: &str, failures: i64, successes: i64) -> Health {
        let state = match state {
            "up" => State::Up,
            "down" => State::Down,
            _ => State::Unknown,
        };
        Health {
            state,
            failures,
            successes,
        }
    }

    /// The state after one more poll. A server nobody has judged yet goes up
    /// on its first success (there is no failure to distrust); a server that
    /// was down needs `rise` successes in a row; `fall` failures in a row
    /// take any server down.
    pub(crate) fn observe(self, ok: bool, rise: u32, fall: u32) -> Health {
        if ok {
            let successes = self.successes.saturating_add(1);
            let state = match self.state {
                State::Down if successes < i64::from(rise.max(1)) => State::Down,
                _ => State::Up,
            };
            Health {
                state,
                failures: 0,
                successes,
            }
        } else {
            let failures = self.failures.saturating_add(1);
            let state = if failures >= i64::from(fall.max(1)) {
                State::Down
            } else {
                self.state
            };
            Health {
                state,
                failures,
                successes: 0,
            }
        }
    }

    pub(crate) fn is_up(self) -> bool {
        self.state == State::Up
    }
}

/// Whether the quick re-check asks this server: enabled and judged down
/// (a relay that failed at least once and has not risen again). Healthy
/// and never-polled servers wait for the regular round.
pub(crate) fn needs_quick_recheck(enabled: bool, health: Option<Health>) -> bool {
    enabled && health.is_some_and(|h| h.state == State::Down)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(start: Health, polls: &[bool], rise: u32, fall: u32) -> Vec<State> {
        let mut h = start;
        polls
            .iter()
            .map(|&ok| {
                h = h.observe(ok, rise, fall);
                h.state
            })
            .collect()
    }

    use State::*;

    #[test]
    fn defaults_fall_one_rise_two() {
        assert_eq!(
            run(Health::default(), &[true, false, true, true, true], 2, 1),
            [Up, Down, Down, Up, Up]
        );
    }

    #[test]
    fn fall_three_tolerates_blips() {
        assert_eq!(
            run(
                Health::default(),
                &[true, false, false, true, false, false, false],
                2,
                3
            ),
            [Up, Up, Up, Up, Up, Up, Down]
        );
    }

    #[test]
    fn rise_counts_consecutive_successes_only() {
        let down = Health {
            state: Down,
            failures: 1,
            successes: 0,
        };
        assert_eq!(
            run(down, &[true, false, true, true, true], 3, 1),
            [Down, Down, Down, Down, Up]
        );
    }

    #[test]
    fn unknown_server_failing_goes_down_after_fall() {
        assert_eq!(
            run(Health::default(), &[false, false], 2, 2),
            [Unknown, Down]
        );
    }

    #[test]
    fn only_enabled_down_servers_are_rechecked_quickly() {
        let down = Health::default().observe(false, 2, 1);
        let up = Health::default().observe(true, 2, 1);
        assert!(needs_quick_recheck(true, Some(down)));
        assert!(!needs_quick_recheck(false, Some(down)), "draining");
        assert!(!needs_quick_recheck(true, Some(up)));
        assert!(!needs_quick_recheck(true, None), "never polled");
        // Rising again: still down until `rise` successes, so still asked.
        assert!(needs_quick_recheck(true, Some(down.observe(true, 2, 1))));
    }

    #[test]
    fn round_trips_through_row() {
        let h = Health::default().observe(true, 2, 1);
        assert_eq!(
            Health::from_row(h.state.as_str(), h.failures, h.successes),
            h
        );
    }
}
