//! The readiness board behind `/readyz`: every input and exporter reports in, and the host is ready
//! when all of them are.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Shared record of what is ready and what is not (and why).
#[derive(Clone, Default)]
pub struct Readiness {
    items: Arc<Mutex<BTreeMap<String, Result<(), String>>>>,
}

impl Readiness {
    /// Registers `name` as not ready yet, for `reason`.
    pub fn expect(&self, name: &str, reason: &str) {
        self.set(name, Err(reason.to_owned()));
    }

    /// Records the state of `name`.
    pub fn set(&self, name: &str, state: Result<(), String>) {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), state);
    }

    /// Forgets `name` (an input or exporter a reload removed).
    pub fn remove(&self, name: &str) {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// Whether everything is ready, and a line per item for humans.
    pub fn report(&self) -> (bool, String) {
        let items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        let mut ready = true;
        for (name, state) in items.iter() {
            match state {
                Ok(()) => text.push_str(&format!("ok   {name}\n")),
                Err(reason) => {
                    ready = false;
                    text.push_str(&format!("wait {name}: {reason}\n"));
                }
            }
        }
        (ready, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_item_is() {
        let r = Readiness::default();
        r.expect("input:files", "first read not done");
        r.set("exporter:a", Ok(()));
        let (ready, text) = r.report();
        assert!(!ready);
        assert!(
            text.contains("wait input:files: first read not done"),
            "{text}"
        );
        r.set("input:files", Ok(()));
        assert!(r.report().0);
    }
}
