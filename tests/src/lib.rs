//! Helpers for the whole-system tests in `tests/tests/`: they start the real
//! binaries and real proxy cores on 127.0.0.1 and port 0.
