//! Unit tests with mocked clients.
