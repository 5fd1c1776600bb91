//! No task of the host dies silently: a collector, input or delivery thread that panics fails
//! `/readyz` under its own name, counts in `periscope_task_failures_total{task}` and is logged.

use std::any::Any;
use std::future::Future;

use tracing::error;

use crate::readiness::Readiness;
use crate::telemetry::Telemetry;

/// Reports the abnormal end of the host's tasks.
#[derive(Clone)]
pub struct Supervisor {
    readiness: Readiness,
    telemetry: Telemetry,
}

impl Supervisor {
    /// A supervisor reporting to `readiness` and `telemetry`.
    pub fn new(readiness: Readiness, telemetry: Telemetry) -> Self {
        Supervisor {
            readiness,
            telemetry,
        }
    }

    /// Records that `task` ended with `panic`: unready (the readiness item `task`), counted, logged.
    pub fn failed(&self, task: &str, panic: &(dyn Any + Send)) {
        let reason = panic_message(panic);
        self.telemetry
            .task_failures
            .with_label_values(&[task])
            .inc();
        self.readiness
            .set(task, Err(format!("ended abnormally: {reason}")));
        error!(task, panic = %reason, "a task of the host ended abnormally");
    }

    /// Runs `future` as a task; `None` (after [`Supervisor::failed`]) if it panics.
    pub fn spawn<F>(&self, task: String, future: F) -> tokio::task::JoinHandle<Option<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let supervisor = self.clone();
        let inner = tokio::spawn(future);
        tokio::spawn(async move {
            match inner.await {
                Ok(output) => Some(output),
                Err(e) if e.is_panic() => {
                    supervisor.failed(&task, &*e.into_panic());
                    None
                }
                Err(_) => None,
            }
        })
    }
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_fails_readiness_under_its_name_and_is_counted() {
        let readiness = Readiness::default();
        let telemetry = Telemetry::new();
        let supervisor = Supervisor::new(readiness.clone(), telemetry.clone());
        readiness.set("collector", Ok(()));
        let ended = supervisor
            .spawn("collector".to_owned(), async {
                panic!("`period` must be non-zero")
            })
            .await
            .expect("the supervising task itself does not panic");
        assert!(ended.is_none());
        let (ready, text) = readiness.report();
        assert!(!ready);
        assert!(
            text.contains("wait collector: ended abnormally: `period` must be non-zero"),
            "{text}"
        );
        assert!(
            telemetry
                .render()
                .contains("periscope_task_failures_total{task=\"collector\"} 1"),
            "{}",
            telemetry.render()
        );
    }

    #[tokio::test]
    async fn a_task_that_ends_normally_changes_nothing() {
        let readiness = Readiness::default();
        let supervisor = Supervisor::new(readiness.clone(), Telemetry::new());
        assert_eq!(
            supervisor
                .spawn("input:x".to_owned(), async { 7 })
                .await
                .ok(),
            Some(Some(7))
        );
        assert!(readiness.report().0);
    }
}
