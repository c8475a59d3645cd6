//! Fuzz target: a whole SyncML DM message (XML or WBXML, sniffed) into the typed model and validation.
#![no_main]
use libfuzzer_sys::fuzz_target;
use omadm::element::Limits;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = omadm::codec::decode(data, &Limits::default()) {
        let _ = omadm::validate::validate(&msg);
        let _ = omadm::codec::encode(&msg, omadm::codec::Encoding::Wbxml);
    }
});
