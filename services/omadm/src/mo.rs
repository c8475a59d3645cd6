//! mo (in progress).
