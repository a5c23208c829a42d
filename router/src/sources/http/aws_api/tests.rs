use serde_json::json;

use super::*;
use crate::core::kinesis::aggregate::Aggregator;

const LIMITS: ApiLimits<'static> = ApiLimits {
    max_record_bytes: 1 << 20,
    max_decoded_bytes: 16 << 20,
    deaggregate: true,
    streams: None,
};

fn b64(s: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn texts(r: &Records) -> Vec<&[u8]> {
    r.spans
        .iter()
        .map(|s| &r.data[s.start as usize..s.end as usize])
        .collect()
}

fn parse(
    call: Call,
    body: &serde_json::Value,
    limits: &ApiLimits<'_>,
) -> Result<Records, ApiError> {
    let text = body.to_string();
    let input = Wire::Json.parse(text.as_bytes())?;
    parse_records(call, input, limits, &[], &Shards::new(4))
}

fn err(call: Call, body: serde_json::Value) -> ApiError {
    parse(call, &body, &LIMITS).expect_err(&body.to_string())
}

#[test]
fn put_records_decodes_data_keys_and_stream_into_one_buffer() {
    let body = json!({"StreamName": "s", "Records": [
        {"Data": b64("one"), "PartitionKey": "k1"},
        {"Data": b64(""), "PartitionKey": "k2", "ExplicitHashKey": "42"},
    ]});
    let text = body.to_string();
    let input = Wire::Json.parse(text.as_bytes()).unwrap();
    let attrs = vec![
        ("site".into(), "north".into()),
        ("stream".into(), "x".into()),
    ];
    let r = parse_records(Call::PutRecords, input, &LIMITS, &attrs, &Shards::new(4)).unwrap();
    assert_eq!(r.stream, "s");
    assert_eq!(texts(&r), vec![&b"one"[..], b""]);
    assert_eq!(r.meta[0].partition_key.as_deref(), Some("k1"));
    assert_eq!(r.meta[1].explicit_hash_key.as_deref(), Some("42"));
    // The call's stream comes first and cannot be overridden by a header.
    let want: Vec<(Box<str>, Box<str>)> = vec![
        ("stream".into(), "s".into()),
        ("site".into(), "north".into()),
    ];
    assert_eq!(&r.meta[0].attributes[..], &want[..]);
    assert_eq!(
        r.entry_shards,
        vec![Shards::new(4).of_record("k1", None), 0]
    );
}

#[test]
fn put_record_stream_arn_and_firehose() {
    let body = json!({"StreamARN": "arn:aws:kinesis:us-east-1:123456789012:stream/abc", "Data": b64("x"), "PartitionKey": "p"});
    let r = parse(Call::PutRecord, &body, &LIMITS).unwrap();
    assert_eq!((r.stream.as_str(), texts(&r)), ("abc", vec![&b"x"[..]]));
    let body =
        json!({"DeliveryStreamName": "d", "Records": [{"Data": b64("a\n")}, {"Data": b64("b")}]});
    let r = parse(Call::FirehosePutRecordBatch, &body, &LIMITS).unwrap();
    assert_eq!(texts(&r), vec![&b"a\n"[..], b"b"]);
    assert_eq!(r.meta[1].partition_key, None);
    assert_eq!(&*r.meta[1].attributes[0].1, "d");
    let one = json!({"DeliveryStreamName": "d", "Record": {"Data": b64("z")}});
    let r = parse(Call::FirehosePutRecord, &one, &LIMITS).unwrap();
    assert_eq!(texts(&r), vec![&b"z"[..]]);
}

#[test]
fn invalid_requests_get_the_services_errors() {
    let big = b64(vec![b'x'; KINESIS_RECORD_MAX]);
    let cases = [
        (
            json!({"StreamName": "s", "Records": []}),
            "ValidationException",
            "greater than or equal to 1",
        ),
        (
            json!({"StreamName": "s"}),
            "ValidationException",
            "Value null at 'records'",
        ),
        (
            json!({"StreamName": "s", "Records": [{"Data": b64("a"), "PartitionKey": ""}]}),
            "ValidationException",
            "'records.1.member.partitionKey' failed to satisfy constraint: Member must have length between 1 and 256",
        ),
        (
            json!({"StreamName": "s", "Records": [{"Data": b64("a"), "PartitionKey": "k"}, {"PartitionKey": "k"}]}),
            "ValidationException",
            "Value null at 'records.2.member.data'",
        ),
        (
            json!({"StreamName": "s", "Records": [{"Data": "!!", "PartitionKey": "k"}]}),
            "SerializationException",
            "not valid base64",
        ),
        (
            json!({"StreamName": "s", "Records": [{"Data": "", "PartitionKey": "k", "ExplicitHashKey": "007"}]}),
            "ValidationException",
            "0|([1-9]\\d{0,38})",
        ),
        (
            json!({"StreamName": "s", "Records": [{"Data": "", "PartitionKey": "k", "ExplicitHashKey": "340282366920938463463374607431768211456"}]}),
            "InvalidArgumentException",
            "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]",
        ),
        (
            json!({"Records": [{"Data": "", "PartitionKey": "k"}]}),
            "ValidationException",
            "StreamName or StreamARN",
        ),
        (
            json!({"StreamName": "a b", "Records": [{"Data": "", "PartitionKey": "k"}]}),
            "ValidationException",
            "Value 'a b' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        ),
        (
            json!({"StreamName": "x".repeat(129), "Records": [{"Data": "", "PartitionKey": "k"}]}),
            "ValidationException",
            "between 1 and 128",
        ),
        (
            json!({"StreamARN": "arn:aws:s3:::bucket", "Records": [{"Data": "", "PartitionKey": "k"}]}),
            "ValidationException",
            "streamARN",
        ),
        (
            json!({"StreamName": "s", "Records": [{"Data": b64(vec![0u8; KINESIS_RECORD_MAX + 1]), "PartitionKey": "k"}]}),
            "ValidationException",
            "Member must have length less than or equal to 1048576",
        ),
        // Data of exactly 1 MiB is allowed alone, but not with its key (issue 18, item 6).
        (
            json!({"StreamName": "s", "Records": [{"Data": big, "PartitionKey": "k"}]}),
            "InvalidArgumentException",
            "Record size including partition key exceeds the maximum of 1048576 bytes: records.1.member",
        ),
    ];
    for (body, kind, words) in cases {
        let e = err(Call::PutRecords, body.clone());
        assert_eq!(e.kind, kind, "{body:.200}: {e}");
        assert!(e.message.contains(words), "{e} lacks {words}");
        assert_eq!(e.status, 400);
    }
    let too_many: Vec<_> = (0..501)
        .map(|_| json!({"Data": "", "PartitionKey": "k"}))
        .collect();
    let e = err(
        Call::PutRecords,
        json!({"StreamName": "s", "Records": too_many}),
    );
    assert!(e.message.contains("less than or equal to 500"), "{e}");
    assert!(e.message.contains("Value with 501 entries"), "{e}");
    // Six records of 1 MiB - 1 byte: each fits, the request (over 5 MiB) does not.
    let near = b64(vec![b'x'; KINESIS_RECORD_MAX - 1]);
    let six: Vec<_> = (0..6)
        .map(|_| json!({"Data": near, "PartitionKey": "k"}))
        .collect();
    let e = err(Call::PutRecords, json!({"StreamName": "s", "Records": six}));
    assert_eq!(e.kind, "InvalidArgumentException");
    assert!(e.message.contains("5 MiB"), "{e}");
    let e = err(
        Call::PutRecord,
        json!({"StreamName": "s", "Data": big, "PartitionKey": "k"}),
    );
    assert!(e.message.contains("the record has 1048576 bytes"), "{e}");
}

#[test]
fn firehose_limits() {
    let at_limit = b64(vec![b'x'; FIREHOSE_RECORD_MAX]);
    let over = b64(vec![b'x'; FIREHOSE_RECORD_MAX + 1]);
    let ok = json!({"DeliveryStreamName": "d", "Record": {"Data": at_limit}});
    assert!(parse(Call::FirehosePutRecord, &ok, &LIMITS).is_ok());
    let e = err(
        Call::FirehosePutRecord,
        json!({"DeliveryStreamName": "d", "Record": {"Data": over}}),
    );
    assert_eq!(e.kind, "ValidationException");
    assert!(
        e.message.contains("'record.data'") && e.message.contains("1024000"),
        "{e}"
    );
    let five: Vec<_> = (0..5).map(|_| json!({"Data": at_limit})).collect();
    let e = err(
        Call::FirehosePutRecordBatch,
        json!({"DeliveryStreamName": "d", "Records": five}),
    );
    assert_eq!(e.kind, "InvalidArgumentException");
    assert!(e.message.contains("4 MiB"), "{e}");
    let e = err(Call::FirehosePutRecord, json!({"DeliveryStreamName": "d"}));
    assert!(e.message.contains("Value null at 'record'"), "{e}");
    let e = err(
        Call::FirehosePutRecord,
        json!({"DeliveryStreamName": "d".repeat(65), "Record": {"Data": ""}}),
    );
    assert!(e.message.contains("deliveryStreamName"), "{e}");
}

#[test]
fn the_allow_list_answers_resource_not_found() {
    let streams = vec!["a".to_owned()];
    let limits = ApiLimits {
        streams: Some(&streams),
        ..LIMITS
    };
    let ok = json!({"StreamName": "a", "Data": b64("x"), "PartitionKey": "p"});
    assert!(parse(Call::PutRecord, &ok, &limits).is_ok());
    let e = parse(
        Call::PutRecord,
        &json!({"StreamName": "b", "Data": b64("x"), "PartitionKey": "p"}),
        &limits,
    )
    .unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            "ResourceNotFoundException",
            "Stream b under account 000000000000 not found."
        )
    );
    let e = parse(
        Call::FirehosePutRecord,
        &json!({"DeliveryStreamName": "b", "Record": {"Data": ""}}),
        &limits,
    )
    .unwrap_err();
    assert!(e.message.starts_with("Firehose b under account"), "{e}");
    let input = Wire::Json.parse(br#"{"StreamName":"b"}"#).unwrap();
    let facts = StreamFacts {
        region: "r",
        created_unix_millis: 0,
    };
    let e = describe(
        Call::ListShards,
        &input,
        &limits,
        &Shards::new(1),
        &facts,
        Wire::Json,
    );
    assert_eq!(e.unwrap_err().kind, "ResourceNotFoundException");
}

fn aggregate(records: &[(&str, Option<u128>, &[u8])]) -> Vec<u8> {
    let mut a = Aggregator::new(1 << 20);
    for (k, h, d) in records {
        a.push(k, *h, d).unwrap();
    }
    a.finish().unwrap().data
}

#[test]
fn aggregates_are_opened_into_user_records_with_their_keys() {
    let agg = aggregate(&[
        ("k1", None, b"first"),
        ("k2", Some(7), b"second"),
        ("k1", None, b""),
    ]);
    let body = json!({"StreamName": "s", "Records": [
        {"Data": b64("plain"), "PartitionKey": "p"},
        {"Data": b64(&agg), "PartitionKey": "a", "ExplicitHashKey": "0"},
    ]});
    let r = parse(Call::PutRecords, &body, &LIMITS).unwrap();
    assert_eq!(texts(&r), vec![&b"plain"[..], b"first", b"second", b""]);
    let keys: Vec<_> = r
        .meta
        .iter()
        .map(|m| (m.partition_key.as_deref(), m.explicit_hash_key.as_deref()))
        .collect();
    assert_eq!(
        keys,
        vec![
            (Some("p"), None),
            (Some("k1"), None),
            (Some("k2"), Some("7")),
            (Some("k1"), None)
        ]
    );
    assert!(r.meta.iter().all(|m| &*m.attributes[0].1 == "s"));
    // Entries (for the answer) are the request's, not the user records.
    assert_eq!(r.entry_shards.len(), 2);
    assert_eq!(
        r.deaggregation,
        DeaggregationCounts {
            aggregates: 1,
            user_records: 3,
            kept_whole: 0
        }
    );
    // Off: the aggregate is one record, as sent.
    let off = ApiLimits {
        deaggregate: false,
        ..LIMITS
    };
    let r = parse(Call::PutRecords, &body, &off).unwrap();
    assert_eq!(texts(&r), vec![&b"plain"[..], &agg[..]]);
    assert_eq!(r.deaggregation, DeaggregationCounts::default());
}

#[test]
fn a_record_failing_the_aggregate_check_passes_through_whole() {
    let mut agg = aggregate(&[("k1", None, b"first"), ("k2", None, b"second")]);
    let last = agg.len() - 1;
    agg[last] ^= 1; // the MD5 no longer matches
    let body = json!({"StreamName": "s", "Records": [{"Data": b64(&agg), "PartitionKey": "a"}]});
    let r = parse(Call::PutRecords, &body, &LIMITS).unwrap();
    assert_eq!(texts(&r), vec![&agg[..]]);
    assert_eq!(r.meta[0].partition_key.as_deref(), Some("a"));
    assert_eq!(r.deaggregation.kept_whole, 1);
    // Magic and digest right but a body that is no aggregate: also whole.
    let mut fake = aggregate::MAGIC.to_vec();
    let junk = [0xff_u8, 0xff, 0xff];
    fake.extend_from_slice(&junk);
    fake.extend_from_slice(&crate::core::kinesis::hash::md5(&junk));
    let body = json!({"StreamName": "s", "Records": [{"Data": b64(&fake), "PartitionKey": "a"}]});
    let r = parse(Call::PutRecords, &body, &LIMITS).unwrap();
    assert_eq!(texts(&r), vec![&fake[..]]);
}

#[test]
fn expansion_is_bounded_by_the_decoded_budget() {
    // Many tiny user records under one long key: small on the wire, large once opened.
    let key = "k".repeat(256);
    let recs: Vec<(&str, Option<u128>, &[u8])> =
        (0..2000).map(|_| (key.as_str(), None, &b""[..])).collect();
    let agg = aggregate(&recs);
    assert!(agg.len() < 20_000);
    let body = json!({"StreamName": "s", "Records": [{"Data": b64(&agg), "PartitionKey": "a"}]});
    let small = ApiLimits {
        max_decoded_bytes: 200_000,
        ..LIMITS
    };
    let e = parse(Call::PutRecords, &body, &small).unwrap_err();
    assert_eq!(e.kind, "InvalidArgumentException");
    assert!(e.message.contains("200000 bytes"), "{e}");
    assert_eq!(
        parse(Call::PutRecords, &body, &LIMITS).unwrap().spans.len(),
        2000
    );
    // Request attributes count against it for every record too.
    let body = json!({"StreamName": "s", "Records": [{"Data": "", "PartitionKey": "k"}]});
    let text = body.to_string();
    let input = Wire::Json.parse(text.as_bytes()).unwrap();
    let attrs = vec![("big".into(), "v".repeat(300_000).into())];
    let e = parse_records(Call::PutRecords, input, &small, &attrs, &Shards::new(1)).unwrap_err();
    assert_eq!(e.kind, "InvalidArgumentException");
}

#[test]
fn answers_have_the_services_shapes() {
    let ok: serde_json::Value =
        serde_json::from_slice(&accepted(Call::PutRecords, Wire::Json, &[3, 1], 7)).unwrap();
    assert_eq!(ok["FailedRecordCount"], 0);
    assert_eq!(ok["Records"][1]["ShardId"], "shardId-000000000001");
    assert_eq!(
        ok["Records"][1]["SequenceNumber"].as_str().unwrap(),
        format!("{:056}", 8)
    );
    let (status, body) = refused(Call::PutRecords, Wire::Json, 3);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, v["FailedRecordCount"].as_u64()), (200, Some(3)));
    assert_eq!(
        v["Records"][2]["ErrorCode"],
        "ProvisionedThroughputExceededException"
    );
    let (status, body) = refused(Call::FirehosePutRecordBatch, Wire::Json, 1);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, v["FailedPutCount"].as_u64()), (200, Some(1)));
    // Firehose PutRecord on a full pipeline: 503, which SDKs retry (issue 18, item 7).
    let (status, body) = refused(Call::FirehosePutRecord, Wire::Json, 1);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, v["__type"].as_str()),
        (503, Some("ServiceUnavailableException"))
    );
    assert_eq!(refused(Call::PutRecord, Wire::Json, 1).0, 400);
    // Sequence numbers count up across digit carries.
    let many: serde_json::Value = serde_json::from_slice(&accepted(
        Call::PutRecords,
        Wire::Json,
        &[0; 12],
        99_999_999_995,
    ))
    .unwrap();
    for (i, r) in many["Records"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            r["SequenceNumber"],
            format!("{:056}", 99_999_999_995 + i as u128)
        );
    }
    let mut seq = Sequence::new(10);
    assert_eq!((seq.take(5), seq.take(1)), (10, 15));
    let fh: serde_json::Value = serde_json::from_slice(&accepted(
        Call::FirehosePutRecordBatch,
        Wire::Json,
        &[0, 0],
        1,
    ))
    .unwrap();
    assert_eq!(fh["RequestResponses"].as_array().unwrap().len(), 2);
}

#[test]
fn cbor_answers_carry_the_same_members() {
    let c = accepted(Call::PutRecords, Wire::Cbor, &[2], 5);
    let mut d = minicbor::Decoder::new(&c);
    assert_eq!(d.map().unwrap(), Some(3));
    assert_eq!(
        (d.str().unwrap(), d.u64().unwrap()),
        ("FailedRecordCount", 0)
    );
    assert_eq!((d.str().unwrap(), d.array().unwrap()), ("Records", Some(1)));
    assert_eq!(d.map().unwrap(), Some(2));
    assert_eq!(d.str().unwrap(), "SequenceNumber");
    assert_eq!(d.str().unwrap(), format!("{:056}", 5));
    assert_eq!(
        (d.str().unwrap(), d.str().unwrap()),
        ("ShardId", "shardId-000000000002")
    );
    assert_eq!(
        (d.str().unwrap(), d.str().unwrap()),
        ("EncryptionType", "NONE")
    );
    assert_eq!(d.position(), c.len());
    let e = ApiError::new("ValidationException", "m").body(Wire::Cbor);
    let mut d = minicbor::Decoder::new(&e);
    assert_eq!(d.map().unwrap(), Some(2));
    assert_eq!(
        (d.str().unwrap(), d.str().unwrap()),
        ("__type", "ValidationException")
    );
}

fn describe_json(call: Call, body: &str, shards: u32) -> Result<serde_json::Value, ApiError> {
    let input = Wire::Json.parse(body.as_bytes())?;
    let facts = StreamFacts {
        region: "eu-west-1",
        created_unix_millis: 1_700_000_000_123,
    };
    let out = describe(
        call,
        &input,
        &LIMITS,
        &Shards::new(shards),
        &facts,
        Wire::Json,
    )?;
    Ok(serde_json::from_slice(&out).unwrap())
}

#[test]
fn describe_calls_report_the_shards_in_pages() {
    let v = describe_json(Call::ListShards, r#"{"StreamName":"s"}"#, 2500).unwrap();
    let shards = v["Shards"].as_array().unwrap();
    assert_eq!(shards.len(), 1000);
    assert_eq!(shards[0]["HashKeyRange"]["StartingHashKey"], "0");
    let token = v["NextToken"].as_str().unwrap().to_owned();
    let v = describe_json(
        Call::ListShards,
        &json!({"NextToken": token}).to_string(),
        2500,
    )
    .unwrap();
    assert_eq!(v["Shards"][0]["ShardId"], "shardId-000000001000");
    let v = describe_json(
        Call::ListShards,
        r#"{"StreamName":"s","ExclusiveStartShardId":"shardId-000000002449","MaxResults":50}"#,
        2500,
    )
    .unwrap();
    assert_eq!(v["Shards"].as_array().unwrap().len(), 50);
    assert_eq!(
        v["Shards"][49]["HashKeyRange"]["EndingHashKey"],
        u128::MAX.to_string()
    );
    assert!(v.get("NextToken").is_none());
    for (body, kind) in [
        ("{}", "InvalidArgumentException"),
        (
            r#"{"StreamName":"s","NextToken":"x"}"#,
            "InvalidArgumentException",
        ),
        (r#"{"NextToken":"!!"}"#, "InvalidArgumentException"),
        (
            r#"{"StreamName":"s","MaxResults":0}"#,
            "ValidationException",
        ),
    ] {
        assert_eq!(
            describe_json(Call::ListShards, body, 3).unwrap_err().kind,
            kind,
            "{body}"
        );
    }
    let v = describe_json(Call::DescribeStreamSummary, r#"{"StreamName":"s"}"#, 8).unwrap();
    let s = &v["StreamDescriptionSummary"];
    assert_eq!(
        (s["StreamStatus"].as_str(), s["OpenShardCount"].as_u64()),
        (Some("ACTIVE"), Some(8))
    );
    assert_eq!(
        s["StreamARN"],
        "arn:aws:kinesis:eu-west-1:000000000000:stream/s"
    );
    assert_eq!(
        s["StreamCreationTimestamp"].as_f64(),
        Some(1_700_000_000.123)
    );
    assert!(describe_json(Call::DescribeStreamSummary, "{}", 1).is_err());
    let v = describe_json(Call::DescribeStream, r#"{"StreamName":"s"}"#, 150).unwrap();
    let d = &v["StreamDescription"];
    assert_eq!(
        (
            d["Shards"].as_array().unwrap().len(),
            d["HasMoreShards"].as_bool()
        ),
        (100, Some(true))
    );
    let v = describe_json(
        Call::DescribeStream,
        r#"{"StreamName":"s","ExclusiveStartShardId":"shardId-000000000099"}"#,
        150,
    )
    .unwrap();
    let d = &v["StreamDescription"];
    assert_eq!(
        (
            d["Shards"].as_array().unwrap().len(),
            d["HasMoreShards"].as_bool()
        ),
        (50, Some(false))
    );
}

#[test]
fn targets() {
    assert_eq!(
        Call::from_target("Kinesis_20131202.DescribeStream").unwrap(),
        Call::DescribeStream
    );
    let e = Call::from_target("Kinesis_20131202.DeleteStream").unwrap_err();
    assert_eq!(e.kind, "UnknownOperationException");
    assert_eq!(Call::FirehosePutRecord.service(), "firehose");
    assert_eq!(Call::ListShards.service(), "kinesis");
}

mod base64_decoding {
    use super::super::decode_base64;
    use base64::Engine as _;
    use proptest::prelude::*;

    /// What the `base64` crate's `STANDARD` engine says of `text`: the reference.
    fn reference(text: &[u8]) -> Result<Vec<u8>, String> {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| e.to_string())
    }

    fn fast(text: &[u8]) -> Result<Vec<u8>, String> {
        // Decoded after bytes already in the buffer, as records are.
        let mut out = b"before".to_vec();
        match decode_base64(text, &mut out) {
            Ok(()) => {
                assert_eq!(&out[..6], b"before");
                Ok(out.split_off(6))
            }
            Err(e) => {
                assert_eq!(out, b"before", "nothing appended on an error");
                Err(e.to_string())
            }
        }
    }

    #[test]
    fn edge_cases_read_as_the_base64_crate_reads_them() {
        for text in [
            "",
            "=",
            "==",
            "A",
            "AA",
            "AA=",
            "AA==",
            "AB==",
            "AAA=",
            "AAB=",
            "AAAA",
            "A===",
            "AA=A",
            "AAAA====",
            "AAAAAA==",
            "AAAAAAA=",
            "AA==AA==",
            " AAA",
            "AAA\n",
            "AA\r\n==",
            "-_==",
            "+/==",
            "aGk=",
            "aGk",
            "aGl=",
            // Long enough for the vectorized loop, with a flaw at its end, in it and past it.
            "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5eg==",
            "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5eh==",
            "QUJDREVGR0hJSktMTU5PUFFSU1RV=ldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5eg==",
            "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5eg=",
            "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5eg",
        ] {
            assert_eq!(
                fast(text.as_bytes()),
                reference(text.as_bytes()),
                "{text:?}"
            );
        }
    }

    /// Mostly base64 alphabet, with the characters that make text invalid now and then.
    fn text() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            20 => proptest::sample::select(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".to_vec()
            ),
            2 => Just(b'='),
            1 => proptest::sample::select(b"-_ \n\r\t.\\\"".to_vec()),
            1 => any::<u8>(),
        ];
        proptest::collection::vec(byte, 0..140)
    }

    proptest! {
        #[test]
        fn any_text_reads_as_the_base64_crate_reads_it(t in text()) {
            prop_assert_eq!(fast(&t), reference(&t));
        }

        #[test]
        fn so_does_encoded_data_with_one_byte_changed_or_cut(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            at in any::<prop::sample::Index>(),
            byte in prop_oneof![Just(b'='), Just(b'A'), Just(b'/'), Just(b'-'), any::<u8>()],
            how in 0..3u8,
        ) {
            let mut t = base64::engine::general_purpose::STANDARD.encode(&data).into_bytes();
            prop_assert_eq!(fast(&t), Ok(data));
            if !t.is_empty() {
                let i = at.index(t.len());
                match how {
                    0 => t[i] = byte,
                    1 => t.truncate(i),
                    _ => t.insert(i, byte),
                }
                prop_assert_eq!(fast(&t), reference(&t));
            }
        }
    }
}
