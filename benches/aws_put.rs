//! `aws_put`: a fast Kinesis producer for `benches/aws_api.sh` (not a criterion benchmark).
//!
//! Reads a file of newline-separated records, cuts it into `PutRecords` requests of `--batch`
//! records (partition key: the record's index modulo 4096) and sends them with the AWS SDK for
//! Rust (SigV4-signed, credentials from the environment) to `--endpoint`, `--concurrency`
//! requests at a time. Entries a request reports as failed are sent again. Prints one JSON line:
//! records, requests, retried entries, elapsed seconds and records/s.
//!
//! ```text
//! aws_put --endpoint http://127.0.0.1:8080 --data records.ndjson [--stream bench]
//!         [--batch 500] [--concurrency 8]
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

struct Args {
    endpoint: String,
    data: String,
    stream: String,
    batch: usize,
    concurrency: usize,
}

fn args() -> Args {
    let mut a = Args {
        endpoint: String::new(),
        data: String::new(),
        stream: "bench".into(),
        batch: 500,
        concurrency: 8,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` passes `--bench`; ignore it.
        if flag == "--bench" {
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--endpoint" => a.endpoint = value,
            "--data" => a.data = value,
            "--stream" => a.stream = value,
            "--batch" => a.batch = value.parse().expect("--batch: a number"),
            "--concurrency" => a.concurrency = value.parse().expect("--concurrency: a number"),
            other => panic!("unknown option {other}"),
        }
    }
    assert!(
        !a.endpoint.is_empty() && !a.data.is_empty(),
        "usage: aws_put --endpoint URL --data FILE [--stream NAME] [--batch N] [--concurrency N]"
    );
    assert!((1..=500).contains(&a.batch), "--batch must be 1..=500");
    a
}

fn main() {
    let a = args();
    let text = std::fs::read(&a.data).expect("reading --data");
    let records: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let total = records.len();
    // Requests are built before the clock starts: the benchmark measures the endpoint.
    let batches: Vec<Vec<PutRecordsRequestEntry>> = records
        .chunks(a.batch)
        .enumerate()
        .map(|(b, chunk)| {
            chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(r.to_vec()))
                        .partition_key(((b * a.batch + i) % 4096).to_string())
                        .build()
                        .unwrap()
                })
                .collect()
        })
        .collect();
    drop(text);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&a.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .load()
            .await;
        let client = aws_sdk_kinesis::Client::new(&conf);
        let batches = Arc::new(batches);
        let next = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let retried = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..a.concurrency {
            let (client, batches, next) = (client.clone(), batches.clone(), next.clone());
            let (requests, retried, stream) = (requests.clone(), retried.clone(), a.stream.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(batch) = batches.get(i) else { break };
                    let mut pending = batch.clone();
                    while !pending.is_empty() {
                        requests.fetch_add(1, Ordering::Relaxed);
                        let out = client
                            .put_records()
                            .stream_name(&stream)
                            .set_records(Some(pending.clone()))
                            .send()
                            .await;
                        match out {
                            Ok(o) if o.failed_record_count().unwrap_or(0) == 0 => break,
                            Ok(o) => {
                                pending = pending
                                    .into_iter()
                                    .zip(o.records())
                                    .filter(|(_, r)| r.error_code().is_some())
                                    .map(|(e, _)| e)
                                    .collect();
                                retried.fetch_add(pending.len() as u64, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            Err(e) => panic!("PutRecords failed: {e:?}"),
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{{\"records\": {total}, \"requests\": {}, \"retried\": {}, \"elapsed_s\": {secs:.6}, \
             \"records_per_s\": {:.1}}}",
            requests.load(Ordering::Relaxed),
            retried.load(Ordering::Relaxed),
            total as f64 / secs
        );
    });
}
