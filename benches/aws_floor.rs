//! `aws_floor`: what the Kinesis-compatible endpoint's work costs per record, each piece measured
//! alone on this machine (not a criterion benchmark; `harness = false`).
//!
//! A `PutRecords` request carries every record base64-encoded in a JSON body that the SigV4
//! signature covers by its SHA-256, and each record's partition key is hashed with MD5 to find
//! the shard its answer names. So whatever the endpoint does, per record it must at least hash
//! the record's share of the body, decode its base64 and hash its key. This prints the cost of
//! each of those pieces in isolation (with the implementations in the tree, side by side),
//! next to the endpoint's own pure steps (the JSON scan, the whole decode into a batch, the
//! answer), so the floor under `benches/aws_api.sh`'s `aws-put` receiver CPU can be stated.
//!
//! ```text
//! cargo bench -p edge-router --bench aws_floor [-- --requests 200 --repeat 7]
//! ```
//!
//! The requests are made like `aws_put`'s: `edge-router generate sensor` records (~110 bytes), 500
//! per `PutRecords`, partition key the record's index modulo 4096. Each line is the median over
//! `--repeat` passes of ns per record (a pass runs the piece over `--requests` requests); the
//! machine is shared, so compare lines of one run, not numbers across runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use base64::Engine as _;
use edge_router::core::kinesis::md5x4;
use edge_router::generate::{Kind, Options, write};
use edge_router::sources::http::aws_api::shards::Shards;
use edge_router::sources::http::aws_api::wire::Wire;
use edge_router::sources::http::aws_api::{self, ApiLimits, Call};
use sha2::Digest as _;

const BATCH: usize = 500;

struct Request {
    body: Vec<u8>,
    records: Vec<Vec<u8>>,
    /// The records' base64 text, as the body carries it.
    encoded: Vec<String>,
    keys: Vec<String>,
}

fn requests(n: usize) -> Vec<Request> {
    let mut text = Vec::new();
    write(&Options::new(Kind::Sensor, (n * BATCH) as u64), &mut text).unwrap();
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .chunks(BATCH)
        .enumerate()
        .map(|(b, chunk)| {
            let records: Vec<Vec<u8>> = chunk.iter().map(|r| r.to_vec()).collect();
            let encoded: Vec<String> = records
                .iter()
                .map(|r| base64::engine::general_purpose::STANDARD.encode(r))
                .collect();
            let keys: Vec<String> = (0..chunk.len())
                .map(|i| ((b * BATCH + i) % 4096).to_string())
                .collect();
            let entries: Vec<String> = encoded
                .iter()
                .zip(&keys)
                .map(|(d, k)| format!(r#"{{"Data":"{d}","PartitionKey":"{k}"}}"#))
                .collect();
            let body = format!(
                r#"{{"Records":[{}],"StreamName":"bench"}}"#,
                entries.join(",")
            )
            .into_bytes();
            Request {
                body,
                records,
                encoded,
                keys,
            }
        })
        .collect()
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// Median ns per record of `repeat` passes of `f` over every request.
fn measure(reqs: &[Request], repeat: usize, mut f: impl FnMut(&Request)) -> f64 {
    let records: usize = reqs.iter().map(|r| r.records.len()).sum();
    // One pass to warm caches and lazily detected CPU features.
    reqs.iter().for_each(&mut f);
    let mut passes: Vec<f64> = (0..repeat)
        .map(|_| {
            let t = Instant::now();
            reqs.iter().for_each(&mut f);
            t.elapsed().as_nanos() as f64 / records as f64
        })
        .collect();
    passes.sort_by(f64::total_cmp);
    passes[passes.len() / 2]
}

fn main() {
    let n = arg("--requests", 200);
    let repeat = arg("--repeat", 7);
    let reqs = requests(n);
    let records: usize = reqs.iter().map(|r| r.records.len()).sum();
    let body_bytes: usize = reqs.iter().map(|r| r.body.len()).sum();
    let data_bytes: usize = reqs
        .iter()
        .map(|r| r.records.iter().map(Vec::len).sum::<usize>())
        .sum();
    println!(
        "aws_floor: {n} PutRecords of {BATCH} sensor records ({records} records, {:.1} body bytes \
         and {:.1} data bytes per record), median of {repeat} passes",
        body_bytes as f64 / records as f64,
        data_bytes as f64 / records as f64
    );
    println!(
        "CPU: sha_ni {}, avx2 {}, avx512bw {}",
        std::arch::is_x86_feature_detected!("sha"),
        std::arch::is_x86_feature_detected!("avx2"),
        std::arch::is_x86_feature_detected!("avx512bw")
    );
    let mut rows: Vec<(&str, f64)> = Vec::new();

    // The body arrives in pieces and is copied once into one buffer (as on `/v1/records`).
    rows.push((
        "copy the body (reference: one memcpy)",
        measure(&reqs, repeat, |r| {
            black_box(black_box(&r.body[..]).to_vec());
        }),
    ));
    rows.push((
        "SHA-256 of the body, sha2 0.10 (what the tree uses)",
        measure(&reqs, repeat, |r| {
            black_box(sha2::Sha256::digest(black_box(&r.body)));
        }),
    ));
    rows.push((
        "SHA-256 of the body, aws-lc-rs",
        measure(&reqs, repeat, |r| {
            black_box(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                black_box(&r.body),
            ));
        }),
    ));
    let mut out = Vec::with_capacity(1 << 20);
    rows.push((
        "base64 decode, base64 0.22 (STANDARD)",
        measure(&reqs, repeat, |r| {
            out.clear();
            for t in &r.encoded {
                base64::engine::general_purpose::STANDARD
                    .decode_vec(black_box(t.as_bytes()), &mut out)
                    .unwrap();
            }
            black_box(&out);
        }),
    ));
    rows.push((
        "base64 decode, base64-simd 0.8 (STANDARD)",
        measure(&reqs, repeat, |r| {
            out.clear();
            for t in &r.encoded {
                base64_simd::STANDARD
                    .decode_append(black_box(t.as_bytes()), &mut out)
                    .unwrap();
            }
            black_box(&out);
        }),
    ));
    rows.push((
        "MD5 of the partition key, md-5 0.10",
        measure(&reqs, repeat, |r| {
            for k in &r.keys {
                black_box(md5::Md5::digest(black_box(k.as_bytes())));
            }
        }),
    ));
    let mut hashes = Vec::with_capacity(BATCH);
    rows.push((
        "MD5 of the partition key, four at a time (md5x4)",
        measure(&reqs, repeat, |r| {
            hashes.clear();
            md5x4::hash_keys(black_box(&r.keys), &mut hashes);
            black_box(&hashes);
        }),
    ));
    rows.push((
        "endpoint: JSON body -> Input (wire::Wire::parse)",
        measure(&reqs, repeat, |r| {
            black_box(Wire::Json.parse(black_box(&r.body)).unwrap());
        }),
    ));
    let shards = Shards::new(1024);
    let limits = ApiLimits {
        max_record_bytes: 1 << 20,
        max_decoded_bytes: 64 << 20,
        deaggregate: true,
        streams: None,
    };
    rows.push((
        "endpoint: parse + decode into a batch (parse_records)",
        measure(&reqs, repeat, |r| {
            let input = Wire::Json.parse(&r.body).unwrap();
            black_box(
                aws_api::parse_records(Call::PutRecords, input, &limits, &[], &shards).unwrap(),
            );
        }),
    ));
    let recs: Vec<_> = reqs
        .iter()
        .map(|r| {
            let input = Wire::Json.parse(&r.body).unwrap();
            aws_api::parse_records(Call::PutRecords, input, &limits, &[], &shards).unwrap()
        })
        .collect();
    let mut i = 0;
    rows.push((
        "endpoint: the answer (accepted)",
        measure(&reqs, repeat, |_| {
            let r = &recs[i % recs.len()];
            i += 1;
            black_box(aws_api::accepted(
                Call::PutRecords,
                Wire::Json,
                &r.entry_shards,
                1 << 100,
            ));
        }),
    ));
    println!();
    for (what, ns) in &rows {
        println!("{what:<58} {ns:>8.1} ns/record");
    }
}
