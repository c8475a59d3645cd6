//! uri (in progress).
