//! bootstrap (in progress).
