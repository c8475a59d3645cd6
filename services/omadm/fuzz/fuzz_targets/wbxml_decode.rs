//! Fuzz target: the WBXML decoder on arbitrary bytes; what it accepts must re-encode and decode equal.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omadm::element::Limits;

fuzz_target!(|data: &[u8]| {
    if let Ok(root) = omadm::wbxml::decode(data, &Limits::default()) {
        if let Ok(bytes) = omadm::wbxml::encode(&root) {
            assert_eq!(omadm::wbxml::decode(&bytes, &Limits::default()).ok(), Some(root));
        }
    }
});
