//! `reload.debounce`: a new configuration is held until it has been the desired one for the
//! window, so a burst of edits A→B→C reaches the pods as C only.
//!
//! The memory is per process: after an operator restart the window starts again (a held
//! change waits a little longer, never less). A service's first ConfigMap is never held.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// When each service's desired configuration hash was first seen, while it differs from the
/// applied one (the ConfigMap's `config-hash`).
#[derive(Debug, Default)]
pub struct Debounce(Mutex<HashMap<String, (String, Timestamp)>>);

impl Debounce {
    /// How much longer the configuration `desired` of the service `key` is held, or `None`
    /// when it may be written now: nothing is applied yet (`applied` is `None`: a new
    /// service), it is the applied one, the window is zero, or it has been desired for
    /// `window` already.
    pub fn hold(
        &self,
        key: &str,
        applied: Option<&str>,
        desired: &str,
        window: Duration,
        now: Timestamp,
    ) -> Option<Duration> {
        let mut seen = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if applied.is_none_or(|a| a == desired) || window.is_zero() {
            seen.remove(key);
            return None;
        }
        let entry = seen.entry(key.to_owned()).or_insert_with(|| (desired.to_owned(), now));
        if entry.0 != desired {
            *entry = (desired.to_owned(), now);
        }
        let elapsed = Duration::try_from(now.duration_since(entry.1)).unwrap_or(Duration::ZERO);
        window.checked_sub(elapsed).filter(|left| !left.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("timestamp")
    }

    const WINDOW: Duration = Duration::from_secs(2);

    #[test]
    fn a_burst_is_held_until_its_last_change_has_been_desired_for_the_window() {
        let d = Debounce::default();
        assert_eq!(d.hold("web", Some("a"), "b", WINDOW, at(0)), Some(WINDOW));
        assert_eq!(d.hold("web", Some("a"), "b", WINDOW, at(1)), Some(Duration::from_secs(1)));
        // C replaces B: the window starts again.
        assert_eq!(d.hold("web", Some("a"), "c", WINDOW, at(1)), Some(WINDOW));
        assert_eq!(d.hold("web", Some("a"), "c", WINDOW, at(2)), Some(Duration::from_secs(1)));
        assert_eq!(d.hold("web", Some("a"), "c", WINDOW, at(3)), None);
        // Still released until it is applied.
        assert_eq!(d.hold("web", Some("a"), "c", WINDOW, at(4)), None);
    }

    #[test]
    fn nothing_is_held_without_a_change_a_configmap_or_a_window() {
        let d = Debounce::default();
        assert_eq!(d.hold("web", None, "a", WINDOW, at(0)), None, "first ConfigMap of a new service");
        assert_eq!(d.hold("web", Some("a"), "a", WINDOW, at(0)), None, "already applied");
        assert_eq!(d.hold("web", Some("a"), "b", Duration::ZERO, at(0)), None, "debounce: 0s");
    }

    #[test]
    fn going_back_to_the_applied_config_forgets_the_pending_one() {
        let d = Debounce::default();
        assert_eq!(d.hold("web", Some("a"), "b", WINDOW, at(0)), Some(WINDOW));
        assert_eq!(d.hold("web", Some("a"), "a", WINDOW, at(1)), None);
        // B again later is a new change with a whole window.
        assert_eq!(d.hold("web", Some("a"), "b", WINDOW, at(5)), Some(WINDOW));
        // Services are independent.
        assert_eq!(d.hold("api", Some("x"), "y", WINDOW, at(6)), Some(WINDOW));
        assert_eq!(d.hold("web", Some("a"), "b", WINDOW, at(7)), None);
    }
}
