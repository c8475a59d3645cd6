//! wbxml (in progress).
