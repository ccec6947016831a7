//! Discovery tests.
