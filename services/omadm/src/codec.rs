//! codec (in progress).
