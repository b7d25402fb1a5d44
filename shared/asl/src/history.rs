//! Execution history in the shape of GetExecutionHistory, with a listener called for
//! every event as it is appended.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// AWS ends an execution when its history reaches this many events.
pub const MAX_EVENTS: usize = 25_000;

/// One history event.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    /// Sequential from 1.
    pub id: u64,
    /// The event this one follows in its branch (0 for the first ones).
    pub previous_event_id: u64,
    pub timestamp: DateTime<Utc>,
    /// AWS's event type name, e.g. `PassStateEntered`.
    pub event_type: String,
    /// The `*EventDetails` member name and its value, when the event has details.
    pub details: Option<(&'static str, Value)>,
}

impl HistoryEvent {
    /// The event as GetExecutionHistory returns it.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert(
            "timestamp".into(),
            Value::String(crate::timestamp::format(self.timestamp)),
        );
        map.insert("type".into(), Value::String(self.event_type.clone()));
        map.insert("id".into(), json!(self.id));
        map.insert("previousEventId".into(), json!(self.previous_event_id));
        if let Some((key, details)) = &self.details {
            map.insert((*key).to_string(), details.clone());
        }
        Value::Object(map)
    }

    /// The state name in `stateEnteredEventDetails` / `stateExitedEventDetails`.
    pub fn state_name(&self) -> Option<&str> {
        match &self.details {
            Some(("stateEnteredEventDetails" | "stateExitedEventDetails", d)) => {
                d.get("name").and_then(Value::as_str)
            }
            _ => None,
        }
    }
}

/// Called for every event as it is appended, in id order.
pub type EventListener = Arc<dyn Fn(&HistoryEvent) + Send + Sync>;

/// The history of one execution.
pub(crate) struct History {
    events: Mutex<Vec<HistoryEvent>>,
    listener: Option<EventListener>,
}

/// Where a branch of the execution stands in the history: its last event.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cursor {
    pub last: u64,
}

impl History {
    pub fn new(listener: Option<EventListener>) -> Self {
        Self {
            events: Mutex::new(Vec::new()),
            listener,
        }
    }

    /// Appends an event after `previous`; returns its id.
    pub fn append(
        &self,
        timestamp: DateTime<Utc>,
        previous: u64,
        event_type: impl Into<String>,
        details: Option<(&'static str, Value)>,
    ) -> u64 {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let id = events.len() as u64 + 1;
        let event = HistoryEvent {
            id,
            previous_event_id: previous,
            timestamp,
            event_type: event_type.into(),
            details,
        };
        if let Some(listener) = &self.listener {
            listener(&event);
        }
        events.push(event);
        id
    }

    pub fn len(&self) -> usize {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn snapshot(&self) -> Vec<HistoryEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// `{"truncated": false}`, the payload details AWS attaches to inputs and outputs.
pub(crate) fn not_truncated() -> Value {
    json!({"truncated": false})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_in_get_execution_history_shape() {
        let e = HistoryEvent {
            id: 2,
            previous_event_id: 0,
            timestamp: crate::timestamp::parse("2024-01-01T00:00:00Z").unwrap(),
            event_type: "PassStateEntered".into(),
            details: Some((
                "stateEnteredEventDetails",
                json!({"name": "A", "input": "{}", "inputDetails": {"truncated": false}}),
            )),
        };
        assert_eq!(
            e.to_json(),
            json!({
                "timestamp": "2024-01-01T00:00:00.000Z",
                "type": "PassStateEntered",
                "id": 2,
                "previousEventId": 0,
                "stateEnteredEventDetails": {"name": "A", "input": "{}", "inputDetails": {"truncated": false}}
            })
        );
        assert_eq!(e.state_name(), Some("A"));
    }

    #[test]
    fn listener_sees_every_event_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let history = History::new(Some(Arc::new(move |e: &HistoryEvent| {
            sink.lock().unwrap().push(e.id);
        })));
        let now = Utc::now();
        let first = history.append(now, 0, "ExecutionStarted", None);
        history.append(now, first, "PassStateEntered", None);
        assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
        assert_eq!(history.len(), 2);
    }
}
