//! W3C trace context for the devices' HTTP requests: one trace per onboarding, sent as `traceparent`
//! on every request, adopted from the gateway's consent callback when it carries one.

use std::fmt::Write as _;

/// The HTTP header name.
pub const TRACEPARENT: &str = "traceparent";

/// One onboarding's trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace {
    trace_id: [u8; 16],
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (slot, pair) in out.iter_mut().zip(text.as_bytes().chunks(2)) {
        let s = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

impl Trace {
    /// A new trace with a random ID.
    pub fn random() -> Trace {
        let mut trace_id: [u8; 16] = rand::random();
        if trace_id == [0; 16] {
            trace_id[15] = 1;
        }
        Trace { trace_id }
    }

    /// The trace of a `traceparent` header (version 00: `00-<32 hex>-<16 hex>-<2 hex>`, IDs not all
    /// zero); `None` when malformed.
    pub fn parse(header: &str) -> Option<Trace> {
        let mut parts = header.trim().split('-');
        let (Some(version), Some(trace), Some(parent), Some(flags)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        if version != "00" || parts.next().is_some() || unhex::<1>(flags).is_none() {
            return None;
        }
        let trace_id = unhex::<16>(trace)?;
        let parent_id = unhex::<8>(parent)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Trace { trace_id })
    }

    /// The trace ID as 32 lower-case hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// A `traceparent` value for one request: this trace, a fresh span ID, sampled.
    pub fn traceparent(&self) -> String {
        let mut span: [u8; 8] = rand::random();
        if span == [0; 8] {
            span[7] = 1;
        }
        format!("00-{}-{}-01", self.trace_id(), hex(&span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fresh_spans() {
        let t = Trace::random();
        let a = t.traceparent();
        let b = t.traceparent();
        assert_ne!(a, b);
        assert_eq!(Trace::parse(&a), Some(t));
        assert_eq!(a.len(), 55);
        assert!(a.starts_with(&format!("00-{}-", t.trace_id())));
    }

    #[test]
    fn malformed_headers_are_ignored() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(Trace::parse(ok).is_some());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert!(Trace::parse(bad).is_none(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_headers_never_panic(text in "\\PC{0,80}") {
            let _ = Trace::parse(&text);
        }
    }
}
