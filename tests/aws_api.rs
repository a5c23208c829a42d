//! The HTTP source's Kinesis/Firehose-compatible API, driven by producers nobody here wrote:
//! boto3, awscli v1, the AWS SDK for JavaScript v3, a CBOR client (`cbor2`, signed by botocore's
//! SigV4 signer), aws-kinesis-agg aggregates, curl's own SigV4 signer, and a second router whose
//! Kinesis sink (the AWS SDK for Rust) relays into this one, with and without aggregation.
//! Every producer signs with the configured credentials and is verified; each one is also
//! refused with a wrong secret. Records are read back from the file sink.
//!
//! Needs `EDGE_ROUTER_KINESIS_PYTHON` (a python with boto3, aws-kinesis-agg, cbor2 and awscli
//! beside it) and `EDGE_ROUTER_AWS_SDK_JS_MODULES` (the JavaScript SDK's node_modules), which
//! `tests/run.sh` sets (or `eval "$(tests/kinesis/setup.sh)"`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Running, free_port, temp_dir, wait_for_port};

const KEY_ID: &str = "AKIDEDGETEST";
const SECRET: &str = "edge/Router+Test/secret0123456789";

/// A router with an AWS API on a free port, the credentials above (secret in a file) and a
/// file sink.
struct Router {
    run: Running,
    port: u16,
}

impl Router {
    /// Starts `edge-router run` in `dir` with `source` lines added to `[sources.web]` and a file
    /// sink writing to `path` with `sink` lines.
    fn start(dir: &Path, source: &str, path: &str, sink: &str) -> Router {
        let port = free_port();
        std::fs::write(dir.join("aws-secret"), format!("{SECRET}\n")).unwrap();
        let config = format!(
            "[sources.web]\nkind = \"http\"\naddress = \"127.0.0.1:{port}\"\naws_api = true\n\
             aws_credentials = [{{ access_key_id = \"{KEY_ID}\", secret_file = \"aws-secret\" }}]\n\
             {source}\n\n[sinks.out]\nkind = \"file\"\npath = \"{path}\"\n{sink}\n"
        );
        std::fs::write(dir.join("pipeline.toml"), config).unwrap();
        let (mut run, stdin) = Running::start(dir, &["run", "-c", "pipeline.toml", "--stats=json"]);
        drop(stdin);
        wait_for_port(port, &mut run.child, "edge-router", Duration::from_secs(20));
        Router { run, port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stop(self) -> common::Output {
        self.run.signal("TERM");
        self.run.wait(Duration::from_secs(30))
    }
}

fn python() -> PathBuf {
    match std::env::var_os("EDGE_ROUTER_KINESIS_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "EDGE_ROUTER_KINESIS_PYTHON is not set: the AWS API tests need boto3, cbor2 and \
             awscli. Run `eval \"$(tests/kinesis/setup.sh)\"` first (tests/run.sh does)."
        ),
    }
}

/// The environment of an AWS client signing with `secret`.
fn aws_env(cmd: &mut Command, dir: &Path, endpoint: &str, secret: &str) {
    cmd.env("ENDPOINT", endpoint)
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE");
}

/// Runs a python script against the endpoint; returns its stdout, panicking on failure.
fn py(dir: &Path, endpoint: &str, secret: &str, script: &str) -> String {
    let mut cmd = Command::new(python());
    cmd.args(["-c", script]);
    aws_env(&mut cmd, dir, endpoint, secret);
    let out = cmd.output().expect("running python");
    assert!(
        out.status.success(),
        "python script failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read(dir: &Path, p: &str) -> String {
    std::fs::read_to_string(dir.join(p)).unwrap_or_else(|e| panic!("reading {p}: {e}"))
}

const BOTO3_PRODUCER: &str = r#"
import boto3, os, json
from botocore.config import Config
cfg = Config(retries={"max_attempts": 1}, parameter_validation=False)
k = boto3.client("kinesis", endpoint_url=os.environ["ENDPOINT"], config=cfg)
def site(request, **kw):
    request.headers["X-Attribute-Site"] = "north"
k.meta.events.register("before-sign.kinesis.PutRecords", site)
recs = [{"Data": json.dumps({"i": i}).encode(), "PartitionKey": "k%d" % (i % 3)} for i in range(500)]
r = k.put_records(StreamName="events", Records=recs)
assert r["FailedRecordCount"] == 0, r
assert len(r["Records"]) == 500 and r["Records"][0]["ShardId"].startswith("shardId-"), r
seqs = [int(x["SequenceNumber"]) for x in r["Records"]]
assert seqs == sorted(seqs) and len(set(seqs)) == 500
one = k.put_record(StreamARN="arn:aws:kinesis:us-east-1:123456789012:stream/logs",
                   Data=b'{"i": "single"}', PartitionKey="k0", ExplicitHashKey="7")
assert one["ShardId"] == "shardId-000000000000", one
assert int(one["SequenceNumber"]) > seqs[-1]
s = k.describe_stream_summary(StreamName="events")["StreamDescriptionSummary"]
assert s["StreamStatus"] == "ACTIVE" and s["OpenShardCount"] == 1024, s
shards, token = [], None
while True:
    page = k.list_shards(NextToken=token) if token else k.list_shards(StreamName="events")
    shards += page["Shards"]
    token = page.get("NextToken")
    if not token:
        break
assert len(shards) == 1024 and shards[-1]["HashKeyRange"]["EndingHashKey"] == str(2**128 - 1)
d = k.describe_stream(StreamName="events")["StreamDescription"]
assert len(d["Shards"]) == 100 and d["HasMoreShards"], d
def code(f, **kw):
    try:
        f(**kw)
        return "accepted"
    except k.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
# Validation like the service's (issue 18, items 6 and 8).
assert code(k.put_records, StreamName="events", Records=[{"Data": b"x", "PartitionKey": ""}]) == "ValidationException"
assert code(k.put_record, StreamName="events", Data=b"x" * 1048576, PartitionKey="k") == "InvalidArgumentException"
assert code(k.put_record, StreamName="events", Data=b"x", PartitionKey="k", ExplicitHashKey=str(2**128)) == "InvalidArgumentException"
assert code(k.put_record, StreamName="no such stream", Data=b"x", PartitionKey="k") == "ValidationException"
assert code(k.put_record, StreamName="elsewhere", Data=b"x", PartitionKey="k") == "ResourceNotFoundException"
f = boto3.client("firehose", endpoint_url=os.environ["ENDPOINT"], config=cfg)
r = f.put_record_batch(DeliveryStreamName="fh", Records=[{"Data": b'{"f": 1}\n'}, {"Data": b'{"f": 2}'}])
assert r["FailedPutCount"] == 0 and len(r["RequestResponses"]) == 2, r
assert code(f.put_record, DeliveryStreamName="fh", Record={"Data": b"x" * 1024001}) == "ValidationException"
print("ok")
"#;

const REFUSED: &str = r#"
import boto3, os
from botocore import UNSIGNED
from botocore.config import Config
def code(client, **kw):
    try:
        client.put_record(**kw)
        return "accepted"
    except client.exceptions.ClientError as e:
        return "%s %s" % (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
cfg = Config(retries={"max_attempts": 1})
k = boto3.client("kinesis", endpoint_url=os.environ["ENDPOINT"], config=cfg)
f = boto3.client("firehose", endpoint_url=os.environ["ENDPOINT"], config=cfg)
print(code(k, StreamName="events", Data=b"x", PartitionKey="p"))
print(code(f, DeliveryStreamName="fh", Record={"Data": b"x"}))
other = boto3.client("kinesis", endpoint_url=os.environ["ENDPOINT"], config=cfg,
                     aws_access_key_id="AKIDUNKNOWN", aws_secret_access_key="x")
print(code(other, StreamName="events", Data=b"x", PartitionKey="p"))
unsigned = boto3.client("kinesis", endpoint_url=os.environ["ENDPOINT"],
                        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}))
print(code(unsigned, StreamName="events", Data=b"x", PartitionKey="p"))
"#;

#[test]
fn boto3_producers_are_verified_and_keep_stream_names() {
    let dir = temp_dir();
    let d = dir.path();
    let r = Router::start(
        d,
        "aws_streams = [\"events\", \"logs\", \"fh\"]",
        "out/{attr.stream}/{attr.site}-{partition_key}.ndjson",
        "delimiter_if_missing = true",
    );
    let endpoint = r.endpoint();
    assert_eq!(py(d, &endpoint, SECRET, BOTO3_PRODUCER).trim(), "ok");
    let refused = py(d, &endpoint, "not-the-secret", REFUSED);
    assert_eq!(
        refused.lines().collect::<Vec<_>>(),
        vec![
            "InvalidSignatureException 400",
            "InvalidSignatureException 400",
            "UnrecognizedClientException 400",
            "MissingAuthenticationTokenException 400",
        ]
    );
    let out = r.stop();
    let stats = out.ok_stats();
    stats.assert_invariant();
    assert_eq!(stats.read(), 503);
    for key in 0..3 {
        let want: String = (0..500)
            .filter(|i| i % 3 == key)
            .map(|i| format!("{{\"i\": {i}}}\n"))
            .collect();
        assert_eq!(read(d, &format!("out/events/north-k{key}.ndjson")), want);
    }
    // PutRecord carried no X-Attribute-Site; the stream came from the ARN.
    assert_eq!(
        read(d, "out/logs/_none_-k0.ndjson"),
        "{\"i\": \"single\"}\n"
    );
    // Firehose records have no key; one already ended with a newline and got no second one.
    assert_eq!(
        read(d, "out/fh/_none_-_none_.ndjson"),
        "{\"f\": 1}\n{\"f\": 2}\n"
    );
}

/// One script, run once per encoding: the same calls and the same expectations, with record
/// data as base64 in JSON and as byte strings in CBOR (`cbor2`), signed by botocore's SigV4
/// signer.
const CBOR_AND_JSON: &str = r#"
import base64, cbor2, datetime, json, os, sys, urllib.request, urllib.error
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
enc = sys.argv[1]
ctype = "application/x-amz-cbor-1.1" if enc == "cbor" else "application/x-amz-json-1.1"
creds = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
def blob(b):
    return b if enc == "cbor" else base64.b64encode(b).decode()
def call(target, payload, service="kinesis", secret=None):
    body = cbor2.dumps(payload) if enc == "cbor" else json.dumps(payload).encode()
    req = AWSRequest(method="POST", url=os.environ["ENDPOINT"] + "/", data=body,
                     headers={"Content-Type": ctype, "X-Amz-Target": target})
    c = creds if secret is None else Credentials(creds.access_key, secret)
    botocore.auth.SigV4Auth(c, service, "us-east-1").add_auth(req)
    r = urllib.request.Request(req.url, data=body, headers=dict(req.headers), method="POST")
    try:
        resp = urllib.request.urlopen(r)
        status, raw, rtype = resp.status, resp.read(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        status, raw, rtype = e.code, e.read(), e.headers["Content-Type"]
    assert rtype == ctype, (rtype, raw)
    return status, (cbor2.loads(raw) if enc == "cbor" else json.loads(raw))
s, v = call("Kinesis_20131202.PutRecords", {"StreamName": "c-" + enc, "Records": [
    {"Data": blob(b"one-" + enc.encode()), "PartitionKey": "p1"},
    {"Data": blob(b"two-" + enc.encode()), "PartitionKey": "p2", "ExplicitHashKey": "0"}]})
assert s == 200 and v["FailedRecordCount"] == 0 and len(v["Records"]) == 2, v
assert v["Records"][1]["ShardId"] == "shardId-000000000000", v
s, v = call("Kinesis_20131202.PutRecord", {"StreamName": "c-" + enc, "Data": blob(b"three-" + enc.encode()), "PartitionKey": "p1"})
assert s == 200 and len(v["SequenceNumber"]) == 56, v
s, v = call("Firehose_20150804.PutRecordBatch", {"DeliveryStreamName": "f-" + enc, "Records": [{"Data": blob(b"fh-" + enc.encode())}]}, "firehose")
assert s == 200 and v["FailedPutCount"] == 0, v
s, v = call("Kinesis_20131202.ListShards", {"StreamName": "c-" + enc, "MaxResults": 3})
assert s == 200 and [x["ShardId"] for x in v["Shards"]] == ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"], v
assert "NextToken" in v
s, v = call("Kinesis_20131202.ListShards", {"NextToken": v["NextToken"]})
assert s == 200 and [x["ShardId"] for x in v["Shards"]] == ["shardId-000000000003"] and "NextToken" not in v, v
s, v = call("Kinesis_20131202.DescribeStreamSummary", {"StreamName": "c-" + enc})
assert s == 200 and v["StreamDescriptionSummary"]["OpenShardCount"] == 4, v
ts = v["StreamDescriptionSummary"]["StreamCreationTimestamp"]
assert isinstance(ts, int) if enc == "cbor" else isinstance(ts, float), ts
s, v = call("Kinesis_20131202.DescribeStream", {"StreamName": "c-" + enc})
assert s == 200 and len(v["StreamDescription"]["Shards"]) == 4, v
# Errors come back in the request's encoding, shaped as the services shape them.
s, v = call("Kinesis_20131202.PutRecords", {"StreamName": "c-" + enc, "Records": [{"Data": blob(b"x"), "PartitionKey": ""}]})
assert s == 400 and v["__type"] == "ValidationException" and "partitionKey" in v["message"], v
s, v = call("Kinesis_20131202.DeleteStream", {"StreamName": "c-" + enc})
assert s == 400 and v["__type"] == "UnknownOperationException", v
s, v = call("Kinesis_20131202.PutRecord", {"StreamName": "c-" + enc, "Data": blob(b"x"), "PartitionKey": "p"}, secret="wrong")
assert s == 400 and v["__type"] == "InvalidSignatureException", v
s, v = call("Firehose_20150804.PutRecord", {"DeliveryStreamName": "f", "Record": {"Data": blob(b"x")}}, "kinesis")
assert s == 400 and v["__type"] == "InvalidSignatureException" and "firehose" in v["message"], v
# A clock 10 minutes slow: outside the 5-minute window.
slow = lambda *a, **kw: datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=10)
botocore.auth.get_current_datetime = slow
s, v = call("Kinesis_20131202.PutRecord", {"StreamName": "c-" + enc, "Data": blob(b"x"), "PartitionKey": "p"})
assert s == 400 and v["__type"] == "InvalidSignatureException" and "Signature expired" in v["message"], v
print("ok")
"#;

#[test]
fn cbor_and_json_clients_get_the_same_answers() {
    let dir = temp_dir();
    let d = dir.path();
    let r = Router::start(d, "aws_shards = 4", "out/{attr.stream}.txt", "");
    let endpoint = r.endpoint();
    for enc in ["json", "cbor"] {
        let mut cmd = Command::new(python());
        cmd.args(["-c", CBOR_AND_JSON, enc]);
        aws_env(&mut cmd, d, &endpoint, SECRET);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{enc}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    }
    let stats = r.stop().ok_stats();
    stats.assert_invariant();
    for enc in ["json", "cbor"] {
        assert_eq!(
            read(d, &format!("out/c-{enc}.txt")),
            format!("one-{enc}\ntwo-{enc}\nthree-{enc}\n")
        );
        assert_eq!(read(d, &format!("out/f-{enc}.txt")), format!("fh-{enc}\n"));
    }
}

/// Runs `aws ARGS` (awscli v1, installed beside the python) against the endpoint.
fn awscli(dir: &Path, endpoint: &str, secret: &str, args: &[&str]) -> std::process::Output {
    let aws = python().parent().unwrap().join("aws");
    let mut cmd = Command::new(&aws);
    cmd.args(args)
        .args(["--endpoint-url", endpoint, "--output", "json"]);
    aws_env(&mut cmd, dir, endpoint, secret);
    cmd.env("AWS_MAX_ATTEMPTS", "1");
    cmd.output().expect("running aws (awscli)")
}

#[test]
fn awscli_v1_puts_records_and_lists_shards() {
    let dir = temp_dir();
    let d = dir.path();
    // Stream names are attributes: a filter stage drops one stream's records.
    let r = Router::start(
        d,
        "aws_shards = 3",
        "out/{attr.stream}-{partition_key}.txt",
        "\n[[stages]]\nkind = \"filter\"\ndrop_if = { attribute = \"stream\", equals = \"dropped\" }",
    );
    let e = r.endpoint();
    let ok = |args: &[&str]| {
        let out = awscli(d, &e, SECRET, args);
        assert!(
            out.status.success(),
            "aws {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // awscli v1 sends a blob argument's text as the bytes.
    let v = ok(&[
        "kinesis",
        "put-record",
        "--stream-name",
        "cli",
        "--partition-key",
        "pk",
        "--data",
        "hello from awscli",
    ]);
    assert!(
        v["ShardId"].as_str().unwrap().starts_with("shardId-"),
        "{v}"
    );
    ok(&[
        "kinesis",
        "put-record",
        "--stream-name",
        "dropped",
        "--partition-key",
        "pk",
        "--data",
        "filtered out",
    ]);
    let v = ok(&["kinesis", "list-shards", "--stream-name", "cli"]);
    assert_eq!(v["Shards"].as_array().unwrap().len(), 3, "{v}");
    let v = ok(&[
        "firehose",
        "put-record",
        "--delivery-stream-name",
        "clifh",
        "--record",
        "Data=firehose from awscli",
    ]);
    assert!(v["RecordId"].is_string(), "{v}");
    let bad = awscli(
        d,
        &e,
        "wrong",
        &[
            "kinesis",
            "put-record",
            "--stream-name",
            "cli",
            "--partition-key",
            "pk",
            "--data",
            "no",
        ],
    );
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("InvalidSignatureException"), "{stderr}");
    let stats = r.stop().ok_stats();
    stats.assert_invariant();
    assert_eq!((stats.read(), stats.dropped()), (3, 1));
    assert!(!d.join("out/dropped-pk.txt").exists());
    assert_eq!(read(d, "out/cli-pk.txt"), "hello from awscli\n");
    assert_eq!(read(d, "out/clifh-_none_.txt"), "firehose from awscli\n");
}

const JS_PRODUCER: &str = r#"
const { KinesisClient, PutRecordsCommand, PutRecordCommand, ListShardsCommand } = require("@aws-sdk/client-kinesis");
const { FirehoseClient, PutRecordBatchCommand } = require("@aws-sdk/client-firehose");
const opts = (secret) => ({
  endpoint: process.env.ENDPOINT, region: "us-east-1", maxAttempts: 1,
  credentials: { accessKeyId: process.env.AWS_ACCESS_KEY_ID, secretAccessKey: secret },
});
const assert = (c, m) => { if (!c) { throw new Error("assertion failed: " + m); } };
(async () => {
  const k = new KinesisClient(opts(process.env.AWS_SECRET_ACCESS_KEY));
  const recs = [];
  for (let i = 0; i < 300; i++) recs.push({ Data: Buffer.from(JSON.stringify({ js: i })), PartitionKey: "j" + (i % 2) });
  const r = await k.send(new PutRecordsCommand({ StreamName: "js", Records: recs }));
  assert(r.FailedRecordCount === 0 && r.Records.length === 300, JSON.stringify(r));
  const one = await k.send(new PutRecordCommand({ StreamName: "js", Data: Buffer.from("{\"js\":\"one\"}"), PartitionKey: "j0" }));
  assert(one.SequenceNumber.length === 56, JSON.stringify(one));
  const shards = await k.send(new ListShardsCommand({ StreamName: "js" }));
  assert(shards.Shards.length === 8, JSON.stringify(shards));
  const f = new FirehoseClient(opts(process.env.AWS_SECRET_ACCESS_KEY));
  const fr = await f.send(new PutRecordBatchCommand({ DeliveryStreamName: "jsfh", Records: [{ Data: Buffer.from("fh-js\n") }] }));
  assert(fr.FailedPutCount === 0, JSON.stringify(fr));
  for (const client of [new KinesisClient(opts("wrong")), new FirehoseClient(opts("wrong"))]) {
    try {
      if (client instanceof KinesisClient) {
        await client.send(new PutRecordCommand({ StreamName: "js", Data: Buffer.from("no"), PartitionKey: "j0" }));
      } else {
        await client.send(new PutRecordBatchCommand({ DeliveryStreamName: "jsfh", Records: [{ Data: Buffer.from("no") }] }));
      }
      throw new Error("a wrong secret was accepted");
    } catch (e) {
      assert(e.name === "InvalidSignatureException", e.name + ": " + e.message);
    }
  }
  console.log("ok");
})().catch((e) => { console.error(e); process.exit(1); });
"#;

#[test]
fn the_aws_sdk_for_javascript_v3_puts_records() {
    let modules = match std::env::var_os("EDGE_ROUTER_AWS_SDK_JS_MODULES") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "EDGE_ROUTER_AWS_SDK_JS_MODULES is not set: run `eval \"$(tests/kinesis/setup.sh)\"` \
             first (tests/run.sh does)."
        ),
    };
    let dir = temp_dir();
    let d = dir.path();
    let r = Router::start(
        d,
        "aws_shards = 8",
        "out/{attr.stream}-{partition_key}.ndjson",
        "delimiter_if_missing = true",
    );
    let mut cmd = Command::new("node");
    cmd.args(["-e", JS_PRODUCER]).env("NODE_PATH", &modules);
    aws_env(&mut cmd, d, &r.endpoint(), SECRET);
    let out = cmd.output().expect("running node");
    assert!(
        out.status.success(),
        "the JavaScript producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    let stats = r.stop().ok_stats();
    stats.assert_invariant();
    assert_eq!(stats.read(), 302);
    for key in 0..2 {
        let mut want: String = (0..300)
            .filter(|i| i % 2 == key)
            .map(|i| format!("{{\"js\":{i}}}\n"))
            .collect();
        if key == 0 {
            want.push_str("{\"js\":\"one\"}\n");
        }
        assert_eq!(read(d, &format!("out/js-j{key}.ndjson")), want);
    }
    assert_eq!(read(d, "out/jsfh-_none_.ndjson"), "fh-js\n");
}

/// Runs a router whose Kinesis sink relays stdin into `endpoint`, signing with `secret`.
fn relay(
    dir: &Path,
    endpoint: &str,
    secret: &str,
    input: &[u8],
    aggregate: bool,
) -> std::process::Output {
    let sink = format!(
        "kinesis://relay?region=us-east-1&endpoint={endpoint}&aggregate={aggregate}&partition=field:device_id"
    );
    let mut cmd = common::command(dir, &["run", "--sink", &sink, "--stats=json"]);
    aws_env(&mut cmd, dir, endpoint, secret);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn sorted_lines(data: &[u8]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = common::lines(data)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    v.sort();
    v
}

#[test]
fn one_router_relays_into_another_raw_and_aggregated() {
    let input = common::sensor(20_000);
    for aggregate in [false, true] {
        let dir = temp_dir();
        let d = dir.path();
        let down = Router::start(d, "", "out.ndjson", "");
        let up = d.join("upstream");
        std::fs::create_dir(&up).unwrap();
        let started = Instant::now();
        let out = relay(&up, &down.endpoint(), SECRET, &input, aggregate);
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "upstream router failed: {stderr}");
        let up_stats = common::Stats::from_stderr(&stderr);
        up_stats.assert_invariant();
        assert_eq!(up_stats.written(), 20_000);
        let kinesis_records = up_stats.component("sinks.kinesis")["kinesis_records"]
            .as_u64()
            .unwrap_or_else(|| panic!("{}", up_stats.0));
        let down_out = down.stop();
        let stats = down_out.ok_stats();
        stats.assert_invariant();
        // Every user record arrived once, whatever the upstream sent them as.
        assert_eq!(stats.read(), 20_000);
        let got = sorted_lines(&std::fs::read(d.join("out.ndjson")).unwrap());
        assert!(
            got == sorted_lines(&input),
            "relayed records differ from the input"
        );
        let source = stats.component("sources.web");
        if aggregate {
            assert!(
                kinesis_records < 20_000,
                "aggregation sent {kinesis_records} records"
            );
            assert_eq!(
                source["aws_aggregated_records"].as_u64(),
                Some(20_000 - (kinesis_records - source["aws_aggregates"].as_u64().unwrap())),
                "{source}"
            );
        } else {
            assert_eq!(kinesis_records, 20_000);
            assert!(source.get("aws_aggregates").is_none(), "{source}");
        }
        // With 1024 shards the upstream's per-shard limiter does not hold 20,000 records back
        // for 20 s as one shard did; no timing is asserted, only reported.
        eprintln!("relay aggregate={aggregate}: {took:?}, {kinesis_records} Kinesis records");
    }
}

#[test]
fn a_relay_with_the_wrong_secret_is_refused_and_delivers_nothing() {
    let dir = temp_dir();
    let d = dir.path();
    let down = Router::start(d, "", "out.ndjson", "");
    let up = d.join("upstream");
    std::fs::create_dir(&up).unwrap();
    let out = relay(&up, &down.endpoint(), "wrong", &common::sensor(100), true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a wrongly signed relay succeeded: {stderr}"
    );
    assert!(stderr.contains("InvalidSignatureException"), "{stderr}");
    let stats = down.stop().ok_stats();
    assert_eq!(stats.read(), 0);
}

const AGG_PRODUCER: &str = r#"
import boto3, os, json
from botocore.config import Config
from aws_kinesis_agg.aggregator import RecordAggregator
k = boto3.client("kinesis", endpoint_url=os.environ["ENDPOINT"], config=Config(retries={"max_attempts": 1}))
agg = RecordAggregator()
for i in range(1000):
    ehk = str(i) if i % 100 == 0 else None
    r = agg.add_user_record("user-%d" % (i % 4), json.dumps({"agg": i}).encode(), ehk)
    assert r is None, "aggregate full too early"
pk, ehk, data = agg.clear_and_get().get_contents()
corrupt = bytearray(data)
corrupt[-1] ^= 1
r = k.put_records(StreamName="agg", Records=[
    {"Data": data, "PartitionKey": pk, "ExplicitHashKey": ehk},
    {"Data": bytes(corrupt), "PartitionKey": "outer"},
    {"Data": b'{"plain": 1}', "PartitionKey": "user-0"}])
assert r["FailedRecordCount"] == 0 and len(r["Records"]) == 3, r
wrong = boto3.client("kinesis", endpoint_url=os.environ["ENDPOINT"], config=Config(retries={"max_attempts": 1}),
                     aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"], aws_secret_access_key="wrong")
try:
    wrong.put_records(StreamName="agg", Records=[{"Data": data, "PartitionKey": pk, "ExplicitHashKey": ehk}])
    raise SystemExit("an aggregate signed with a wrong secret was accepted")
except wrong.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidSignatureException", e
print(len(data))
"#;

#[test]
fn aws_kinesis_agg_aggregates_are_opened_into_user_records() {
    let dir = temp_dir();
    let d = dir.path();
    let r = Router::start(d, "", "out/{partition_key}.ndjson", "");
    let agg_len: usize = py(d, &r.endpoint(), SECRET, AGG_PRODUCER)
        .trim()
        .parse()
        .unwrap();
    let stats = r.stop().ok_stats();
    stats.assert_invariant();
    // 1000 user records, the corrupt aggregate whole, one plain record.
    assert_eq!(stats.read(), 1002);
    let source = stats.component("sources.web");
    assert_eq!(source["aws_aggregates"].as_u64(), Some(1), "{source}");
    assert_eq!(
        source["aws_aggregated_records"].as_u64(),
        Some(1000),
        "{source}"
    );
    assert_eq!(
        source["aws_aggregates_kept_whole"].as_u64(),
        Some(1),
        "{source}"
    );
    for key in 0..4 {
        let mut want: String = (0..1000)
            .filter(|i| i % 4 == key)
            .map(|i| format!("{{\"agg\": {i}}}\n"))
            .collect();
        if key == 0 {
            want.push_str("{\"plain\": 1}\n");
        }
        assert_eq!(
            read(d, &format!("out/user-{key}.ndjson")),
            want,
            "user-{key}"
        );
    }
    // The record that failed the MD5 check went on whole, under its own key.
    let whole = std::fs::read(d.join("out/outer.ndjson")).unwrap();
    assert_eq!(whole.len(), agg_len + 1);
}

#[test]
fn aggregates_stay_whole_with_deaggregation_off() {
    let dir = temp_dir();
    let d = dir.path();
    let r = Router::start(d, "aws_deaggregate = false", "out/{partition_key}.bin", "");
    py(d, &r.endpoint(), SECRET, AGG_PRODUCER);
    let stats = r.stop().ok_stats();
    stats.assert_invariant();
    assert_eq!(stats.read(), 3);
    assert!(
        stats
            .component("sources.web")
            .get("aws_aggregates")
            .is_none()
    );
}

/// curl, with its own SigV4 signer (`--aws-sigv4`), and without one.
fn curl(args: &[&str], body: &[u8]) -> (u16, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-D",
        "/dev/stderr",
        "-w",
        "\n%{http_code}",
        "--max-time",
        "30",
    ])
    .args(args)
    .args(["--data-binary", "@-"])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("running curl");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(body).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.trim().parse().unwrap(),
        body.to_owned(),
        String::from_utf8_lossy(&out.stderr).to_lowercase(),
    )
}

#[test]
fn protocol_errors_are_answered_like_the_services() {
    let dir = temp_dir();
    let d = dir.path();
    let r = Router::start(d, "", "out.ndjson", "");
    let url = format!("{}/", r.endpoint());
    let json = "Content-Type: application/x-amz-json-1.1";
    let put = "X-Amz-Target: Kinesis_20131202.PutRecord";
    let body = br#"{"StreamName":"s","PartitionKey":"p","Data":"eA=="}"#;
    let user = format!("{KEY_ID}:{SECRET}");
    let sigv4 = [
        "--aws-sigv4",
        "aws:amz:us-east-1:kinesis",
        "--user",
        user.as_str(),
    ];
    let cases: Vec<(Vec<&str>, u16, &str)> = vec![
        // Signed by curl: accepted, over HTTP/1.1 and over HTTP/2 (no Host header there: the
        // request's :authority stands in for it).
        (
            [&[url.as_str(), "-H", json, "-H", put][..], &sigv4[..]].concat(),
            200,
            "SequenceNumber",
        ),
        (
            [
                &[
                    url.as_str(),
                    "--http2-prior-knowledge",
                    "-H",
                    json,
                    "-H",
                    put,
                ][..],
                &sigv4[..],
            ]
            .concat(),
            200,
            "SequenceNumber",
        ),
        // No Authorization header at all (item 8).
        (
            vec![url.as_str(), "-H", json, "-H", put],
            400,
            "MissingAuthenticationTokenException",
        ),
        // A bare credential, the old check's loophole (item 1).
        (
            vec![
                url.as_str(),
                "-H",
                json,
                "-H",
                put,
                "-H",
                "Authorization: Credential=AKIDEDGETEST",
            ],
            400,
            "IncompleteSignatureException",
        ),
        // A wrong content type (item 8).
        (
            [
                &[url.as_str(), "-H", "Content-Type: text/plain", "-H", put][..],
                &sigv4[..],
            ]
            .concat(),
            404,
            "UnknownOperationException",
        ),
        // No X-Amz-Target (item 8): an AWS-shaped answer, not the /v1 404.
        (
            [&[url.as_str(), "-H", json][..], &sigv4[..]].concat(),
            400,
            "UnknownOperationException",
        ),
        // Neither: not an AWS request at all.
        (
            vec![url.as_str(), "-H", "Content-Type: text/plain"],
            403,
            "AccessDeniedException",
        ),
    ];
    for (args, status, kind) in cases {
        let (got, body_text, headers) = curl(&args, body);
        assert_eq!(got, status, "{args:?}: {body_text}");
        assert!(body_text.contains(kind), "{args:?}: {body_text}");
        assert!(headers.contains("x-amzn-requestid"), "{headers}");
        if status != 200 {
            assert!(
                headers.contains(&format!("x-amzn-errortype: {}", kind.to_lowercase())),
                "{headers}"
            );
        }
    }
    let stats = r.stop().ok_stats();
    stats.assert_invariant();
    assert_eq!(stats.read(), 2);
    assert_eq!(read(d, "out.ndjson"), "x\nx\n");
}

const FIREHOSE_FULL: &str = r#"
import boto3, os, json, time
from botocore.config import Config
f = boto3.client("firehose", endpoint_url=os.environ["ENDPOINT"], config=Config(retries={"max_attempts": 1}))
accepted = 0
deadline = time.time() + 60
while time.time() < deadline:
    recs = [{"Data": json.dumps({"n": accepted + j, "pad": "p" * 200}).encode()} for j in range(500)]
    r = f.put_record_batch(DeliveryStreamName="full", Records=recs)
    if r["FailedPutCount"] == 0:
        accepted += 500
        continue
    assert r["FailedPutCount"] == 500, r
    assert all(x["ErrorCode"] == "ServiceUnavailableException" for x in r["RequestResponses"]), r
    break
else:
    raise SystemExit("the pipeline never filled")
try:
    f.put_record(DeliveryStreamName="full", Record={"Data": b"one"})
    raise SystemExit("PutRecord accepted on a full pipeline")
except f.exceptions.ClientError as e:
    print(e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
print(accepted)
"#;

#[test]
fn firehose_put_record_on_a_full_pipeline_gets_a_retryable_503() {
    let dir = temp_dir();
    let d = dir.path();
    let fifo = d.join("out.fifo");
    common::mkfifo(&fifo);
    let r = Router::start(
        d,
        "accept_wait_ms = 100",
        "out.fifo",
        "queue_records_max = 1000\n\n[pipeline]\nqueue_records_max = 1000\nqueue_bytes_max = \"1MiB\"",
    );
    let out = py(d, &r.endpoint(), SECRET, FIREHOSE_FULL);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "ServiceUnavailableException 503", "{out}");
    let accepted: usize = lines[1].parse().unwrap();
    let reader = std::thread::spawn(move || std::fs::read(fifo).unwrap());
    let stats = r.stop().ok_stats();
    stats.assert_invariant();
    let got = reader.join().unwrap();
    assert_eq!(common::lines(&got).len(), accepted);
    assert_eq!(stats.read() as usize, accepted);
}
