//! JWT mode tests.
