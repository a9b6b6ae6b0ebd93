//! Where the controllers' Events go. kube-runtime's [`Recorder`] folds an Event into a series
//! when the same reason is published again about the same objects within 6 minutes, and keeps
//! every Event it published for those 6 minutes to count the repeats — ~1.7 KB each, so at
//! 10,000 services the Events of a start-up alone would hold tens of megabytes. Only
//! Warnings repeat (a problem that lasts is reported at every pass); Normal Events report
//! transitions, each with its own note, and are published on their own, unfolded and
//! unkept. (Folding them would also show a later transition under the first one's note: the
//! series key leaves the note out.)

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Publishes Events: Warnings through one [`Recorder`] that folds repeats into series,
/// Normal Events each on its own.
#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    reporter: Reporter,
    warnings: Recorder,
}

impl EventPublisher {
    /// Events reported by `reporter` through `client`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        let warnings = Recorder::new(client.clone(), reporter.clone());
        Self { client, reporter, warnings }
    }

    /// Publish `event` about `reference`.
    pub async fn publish(&self, event: &Event, reference: &ObjectReference) -> Result<(), kube::Error> {
        match event.type_ {
            EventType::Warning => self.warnings.publish(event, reference).await,
            EventType::Normal => {
                Recorder::new(self.client.clone(), self.reporter.clone()).publish(event, reference).await
            }
        }
    }
}
