//! tnds (in progress).
