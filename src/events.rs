//! Publishing a Kubernetes Event about an object, for every controller: a failure to
//! publish is logged and never fails a reconcile. kube-runtime's `Recorder` counts a
//! repeated Event into a series; the memory of what it published is let go once no
//! Event in it can start a series any more.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use kube::{
    Client, Resource,
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use tokio::time::{Duration, Instant};

/// How long kube-runtime's `Recorder` counts a repeat of an Event into the series of the
/// first (its `CACHE_TTL`): a repeat later than this is a new Event.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// How often an idle publisher is checked.
const CHECK_EVERY: Duration = Duration::from_secs(60);

/// Publishes the Events of one controller. It is a `Recorder` that keeps every Event it
/// published until its next publish, however long that takes: after a burst of 1,000
/// creates, a quiet controller held 1,000 Events for good (their table alone takes
/// 1.4 KiB an Event). This publisher drops the `Recorder` once nothing was published for
/// [`SERIES_WINDOW`] (when every Event it holds is past its series anyway) and makes
/// a new one at the next publish. Clones share the `Recorder`.
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    reporter: Reporter,
    current: Mutex<Option<InUse>>,
    /// How long the `Recorder` is kept without publishing: [`SERIES_WINDOW`].
    series_window: Duration,
}

/// The `Recorder` in use, and when it last published.
struct InUse {
    recorder: Recorder,
    last_published: Instant,
}

impl Publisher {
    /// A publisher reporting as `reporter`. It checks every minute, in a task of the
    /// current Tokio runtime, whether its `Recorder` may go; the task ends with the
    /// last clone.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self::with_timing(client, reporter, SERIES_WINDOW, CHECK_EVERY)
    }

    /// [`Publisher::new`] keeping an idle `Recorder` for `series_window`, checked
    /// every `check_every` (shorter in tests).
    fn with_timing(
        client: Client,
        reporter: Reporter,
        series_window: Duration,
        check_every: Duration,
    ) -> Self {
        let shared = Arc::new(Shared {
            client,
            reporter,
            current: Mutex::default(),
            series_window,
        });
        tokio::spawn(drop_when_idle(Arc::downgrade(&shared), check_every));
        Self { shared }
    }

    /// Publishes an Event of `type_` with `reason` and `note` about `object`, for
    /// `action` (e.g. `Reconcile`, `Delete`).
    pub async fn publish<K>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let recorder = {
            let mut current = self.shared.current();
            let in_use = current.get_or_insert_with(|| InUse {
                recorder: Recorder::new(self.shared.client.clone(), self.shared.reporter.clone()),
                last_published: Instant::now(),
            });
            in_use.last_published = Instant::now();
            in_use.recorder.clone()
        };
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(error) = recorder.publish(&event, &object.object_ref(&())).await {
            tracing::debug!(%error, "could not publish an Event");
        }
    }

    /// Whether a `Recorder` (and its memory of past Events) is held.
    #[cfg(test)]
    fn holds_a_recorder(&self) -> bool {
        self.shared.current().is_some()
    }
}

impl Shared {
    fn current(&self) -> MutexGuard<'_, Option<InUse>> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops the `Recorder` when it has published nothing for the series window.
    fn drop_recorder_if_idle(&self) {
        let mut current = self.current();
        if current
            .as_ref()
            .is_some_and(|in_use| in_use.last_published.elapsed() >= self.series_window)
        {
            *current = None;
        }
    }
}

/// Every `check_every`, drops the publisher's `Recorder` if it is idle; ends when the
/// publisher is gone.
async fn drop_when_idle(shared: Weak<Shared>, check_every: Duration) {
    let mut ticks = tokio::time::interval(check_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.drop_recorder_if_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconciler::fake::{FakeApi, fake};

    /// The series window of the tests: 400 ms, checked every 50 ms.
    const WINDOW: Duration = Duration::from_millis(400);
    const CHECK: Duration = Duration::from_millis(50);

    fn publisher(api: &FakeApi) -> Publisher {
        let reporter = Reporter {
            controller: crate::FIELD_MANAGER.to_owned(),
            instance: None,
        };
        Publisher::with_timing(api.client(), reporter, WINDOW, CHECK)
    }

    async fn publish(publisher: &Publisher) {
        let note = "the same warning".to_owned();
        publisher
            .publish(
                &fake("orders", None),
                EventType::Warning,
                "Refused",
                "Reconcile",
                note,
            )
            .await;
    }

    /// The method and path of each Event request: `POST events` creates one, `PATCH
    /// events/<name>` counts a repeat into its series.
    fn event_requests(api: &FakeApi) -> Vec<String> {
        api.received()
            .iter()
            .filter(|request| request.path.starts_with("events"))
            .map(|request| {
                let named = request.path.len() > "events".len();
                let path = if named { "events/<name>" } else { "events" };
                format!("{} {path}", request.method)
            })
            .collect()
    }

    #[tokio::test]
    async fn a_repeat_within_the_window_joins_the_series_and_an_idle_recorder_is_let_go() {
        let api = FakeApi::default();
        let publisher = publisher(&api);
        publish(&publisher).await;
        tokio::time::sleep(WINDOW / 4).await;
        publish(&publisher).await;
        assert_eq!(event_requests(&api), ["POST events", "PATCH events/<name>"]);
        assert!(publisher.holds_a_recorder(), "it published a moment ago");

        tokio::time::sleep(WINDOW + 2 * CHECK).await;
        assert!(
            !publisher.holds_a_recorder(),
            "nothing published for longer than a series lasts: its Events are let go"
        );
        publish(&publisher).await;
        assert_eq!(
            event_requests(&api),
            ["POST events", "PATCH events/<name>", "POST events"],
            "a repeat after the window is a new Event"
        );
        assert!(publisher.holds_a_recorder());
    }

    #[tokio::test]
    async fn the_idle_check_does_not_keep_the_publisher_alive() {
        let publisher = publisher(&FakeApi::default());
        let shared = Arc::downgrade(&publisher.shared);
        drop(publisher);
        tokio::time::sleep(2 * CHECK).await;
        assert!(shared.upgrade().is_none(), "nothing holds the publisher");
    }
}
