//! criterion benches of the SyncML DM codecs: XML and WBXML, encode and decode, for a typical
//! package 1 (Alert 1201, DevInfo, two Generic Alerts) and a 100-item Results package.
//! Baseline in the same run: quick-xml tokenising the same XML without building anything.

#![allow(clippy::expect_used)] // a bench that cannot build its input has nothing to measure

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use omadm::alert::{self, GenericAlert};
use omadm::codec::{self, Encoding};
use omadm::element::Limits;
use omadm::model::*;

fn package1() -> SyncMl {
    let mut hdr = SyncHdr::new(
        "1a2b",
        1,
        Location::new("https://dms.example.com:443/dm"),
        Location::named("IMEI:493005100592800", "gateway-1"),
    );
    hdr.cred = Some(Cred {
        meta: Meta::typed("syncml:auth-md5", "b64"),
        data: "TUQ1IGRpZ2VzdCBnb2VzIGhlcmU=".into(),
    });
    hdr.meta = Some(Meta {
        max_msg_size: Some(65_536),
        ..Meta::default()
    });
    let mut m = SyncMl::new(hdr).with(Command::alert(alert_code::CLIENT_INITIATED));
    for (uri, v) in [
        ("./DevInfo/DevId", "IMEI:493005100592800"),
        ("./DevInfo/Man", "dmgw"),
        ("./DevInfo/Mod", "gateway"),
        ("./DevInfo/DmV", "1.2"),
        ("./DevInfo/Lang", "en-US"),
    ] {
        m.push(Command::report_chr(uri, v));
    }
    for i in 0..2 {
        let ga = GenericAlert {
            alert_type: alert::DEVICE_ATTACHED.into(),
            format: Some("chr".into()),
            mark: Some("informational".into()),
            source: Some(format!("./DeviceInventory/dev{i}")),
            target: None,
            data: Some(Data::Text(format!("urn:uuid:0000-{i}"))),
        };
        m.push(alert::build(Some(&format!("corr-{i}")), &[ga]));
    }
    m.finish()
}

fn results100() -> SyncMl {
    let hdr = SyncHdr::new(
        "1a2b",
        3,
        Location::new("https://dms.example.com:443/dm"),
        Location::new("IMEI:493005100592800"),
    );
    let items = (0..100)
        .map(|i| Item {
            source: Some(Location::new(format!("./DeviceInventory/dev{i}/DevId"))),
            meta: Some(Meta::format("chr")),
            data: Some(Data::Text(format!("IMEI:35{i:013}"))),
            ..Item::default()
        })
        .collect();
    SyncMl::new(hdr)
        .with(Command::Status(Status {
            msg_ref: 2,
            cmd_ref: 0,
            cmd: "SyncHdr".into(),
            code: 200,
            ..Status::default()
        }))
        .with(Command::Results(Results {
            msg_ref: 2,
            cmd_ref: 4,
            items,
            ..Results::default()
        }))
        .finish()
}

fn bench_message(c: &mut Criterion, name: &str, msg: &SyncMl) {
    let limits = Limits::default();
    let xml = codec::encode(msg, Encoding::Xml).expect("xml");
    let wbxml = codec::encode(msg, Encoding::Wbxml).expect("wbxml");
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(xml.len() as u64));
    g.bench_function("baseline quick-xml tokenize", |b| {
        b.iter(|| {
            let mut r = quick_xml::Reader::from_reader(black_box(xml.as_slice()));
            let mut n = 0usize;
            loop {
                match r.read_event() {
                    Ok(quick_xml::events::Event::Eof) | Err(_) => break,
                    Ok(_) => n += 1,
                }
            }
            n
        })
    });
    g.bench_function("xml encode", |b| {
        b.iter(|| codec::encode(black_box(msg), Encoding::Xml))
    });
    g.bench_function("xml decode", |b| {
        b.iter(|| codec::decode_as(black_box(&xml), Encoding::Xml, &limits))
    });
    g.throughput(Throughput::Bytes(wbxml.len() as u64));
    g.bench_function("wbxml encode", |b| {
        b.iter(|| codec::encode(black_box(msg), Encoding::Wbxml))
    });
    g.bench_function("wbxml decode", |b| {
        b.iter(|| codec::decode_as(black_box(&wbxml), Encoding::Wbxml, &limits))
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_message(c, "package1", &package1());
    bench_message(c, "results100", &results100());
}

criterion_group!(codec_benches, benches);
criterion_main!(codec_benches);
