//! End-to-end tests of Quorate across real processes; the tests live in `tests/`.
