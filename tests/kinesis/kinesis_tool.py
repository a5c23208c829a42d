"""The independent client of tests/kinesis.rs: creates streams and reads them back with boto3,
and de-aggregates with aws-kinesis-agg (the KPL format's reference implementation in Python).

    python kinesis_tool.py create ENDPOINT STREAM SHARDS
    python kinesis_tool.py read ENDPOINT STREAM [--deaggregate]

`read` prints one JSON line per shard ({"shard": ID, "start": KEY, "end": KEY}, hash keys as
decimal strings), then one JSON line per record, over all shards, each shard from TRIM_HORIZON in
sequence order: {"shard", "seq", "pk", "data" (base64)}. With --deaggregate the records are passed
through aws_kinesis_agg.deaggregator.iter_deaggregate_records(records, data_format="Boto3") and
each line is a user record with "subseq", "ehk" and "aggregated" (whether the library found it
inside a valid aggregate) as well; "raw_magic" says whether the Kinesis record began with the
KPL magic bytes. Every loop is bounded; talks to 127.0.0.1 only.
"""

import base64
import json
import sys
import time

import boto3
from botocore.config import Config

MAGIC = b"\xf3\x89\x9a\xc2"


def client(endpoint):
    if not endpoint.startswith("http://127.0.0.1:"):
        sys.exit("kinesis_tool.py: only http://127.0.0.1:PORT endpoints")
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 10, "mode": "standard"}, connect_timeout=5, read_timeout=30),
    )


def create(endpoint, stream, shards):
    k = client(endpoint)
    k.create_stream(StreamName=stream, ShardCount=int(shards))
    for _ in range(300):
        status = k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
        if status == "ACTIVE":
            return
        time.sleep(0.05)
    sys.exit(f"stream {stream} not ACTIVE after 15 s")


def shards_of(k, stream):
    shards, token = [], None
    for _ in range(1000):
        resp = k.list_shards(NextToken=token) if token else k.list_shards(StreamName=stream)
        shards.extend(resp["Shards"])
        token = resp.get("NextToken")
        if not token:
            return shards
    sys.exit("ListShards did not end")


def read_shard(k, stream, shard_id):
    it = k.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = []
    empty = 0
    for _ in range(100_000):
        resp = k.get_records(ShardIterator=it, Limit=10_000)
        records.extend(resp["Records"])
        it = resp.get("NextShardIterator")
        if not it:
            break
        if resp["Records"]:
            empty = 0
        else:
            empty += 1
            # Nothing more is being written while we read: two empty answers in a row is the end.
            if empty >= 2 and resp.get("MillisBehindLatest", 0) == 0:
                break
    else:
        sys.exit(f"reading {shard_id} did not end")
    return records


def read(endpoint, stream, deaggregate):
    k = client(endpoint)
    out = sys.stdout
    shards = shards_of(k, stream)
    for s in shards:
        r = s["HashKeyRange"]
        out.write(json.dumps({"shard": s["ShardId"], "start": r["StartingHashKey"], "end": r["EndingHashKey"]}) + "\n")
    if deaggregate:
        from aws_kinesis_agg.deaggregator import iter_deaggregate_records
    for s in shards:
        records = read_shard(k, stream, s["ShardId"])
        if not deaggregate:
            for r in records:
                out.write(json.dumps({
                    "shard": s["ShardId"],
                    "seq": r["SequenceNumber"],
                    "pk": r["PartitionKey"],
                    "data": base64.b64encode(r["Data"]).decode(),
                }) + "\n")
            continue
        for r in records:
            magic = r["Data"][:4] == MAGIC
            for u in iter_deaggregate_records([r], data_format="Boto3"):
                kin = u["kinesis"]
                aggregated = bool(kin.get("aggregated", False))
                data = base64.b64decode(kin["data"]) if aggregated else kin["data"]
                out.write(json.dumps({
                    "shard": s["ShardId"],
                    "seq": kin["sequenceNumber"],
                    "subseq": kin.get("subSequenceNumber", 0),
                    "pk": kin["partitionKey"],
                    "ehk": kin.get("explicitHashKey"),
                    "aggregated": aggregated,
                    "raw_magic": magic,
                    "data": base64.b64encode(data).decode(),
                }) + "\n")


def main():
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "create":
        create(args[1], args[2], args[3])
    elif len(args) in (3, 4) and args[0] == "read":
        read(args[1], args[2], args[3:] == ["--deaggregate"])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
