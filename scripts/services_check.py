"""Smoke test of the local servers, run by `scripts/services check` with the venv's Python
and the environment of `scripts/services env`.

moto: create a bucket and an SQS queue, route the bucket's ObjectCreated events to the
queue, put an object, receive its event, read the object back, delete everything.
tansu: produce with confluent-kafka, then read back with assign() (like kafka-consume).
Prints one line per check; exits 1 on the first failure.
"""

import json
import os
import sys
import time
import uuid

import boto3
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

tag = uuid.uuid4().hex[:10]


def check_moto():
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    bucket, queue = f"s3s-smoke-{tag}", f"s3s-smoke-{tag}"
    s3.create_bucket(Bucket=bucket)
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    try:
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
        s3.put_object(Bucket=bucket, Key="dir/a b.log", Body=b"line 1\nline 2\n")
        keys, deadline = [], time.monotonic() + 10
        while not keys and time.monotonic() < deadline:
            for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                         WaitTimeSeconds=1).get("Messages", []):
                for r in json.loads(m["Body"]).get("Records", []):
                    keys.append(r["s3"]["object"]["key"])
        assert keys, "no ObjectCreated event arrived on the queue"
        body = s3.get_object(Bucket=bucket, Key="dir/a b.log")["Body"].read()
        assert body == b"line 1\nline 2\n", body
        print(f"moto ok: bucket, queue, event for key {keys[0]!r}, object read back")
    finally:
        for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=o["Key"])
        s3.delete_bucket(Bucket=bucket)
        sqs.delete_queue(QueueUrl=url)


def check_kafka():
    brokers, topic, n = os.environ["S3S_KAFKA_BROKERS"], f"s3s-smoke-{tag}", 100
    p = Producer({"bootstrap.servers": brokers, "linger.ms": 5})
    errors = []
    for i in range(n):
        p.produce(topic, value=b"smoke %d" % i, on_delivery=lambda e, m: e and errors.append(e))
    left = p.flush(15)
    assert left == 0 and not errors, f"produce: {left} undelivered, errors {errors[:3]}"
    c = Consumer({"bootstrap.servers": brokers, "group.id": "s3s-smoke", "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, q, OFFSET_BEGINNING) for q in parts])
        got, deadline = set(), time.monotonic() + 15
        while len(got) < n and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=0.5):
                if not m.error():
                    got.add(m.value())
        assert len(got) == n, f"consumed {len(got)} of {n}"
    finally:
        c.close()
    print(f"kafka ok: confluent-kafka produced and read back {n} messages ({len(parts)} partitions)")


if __name__ == "__main__":
    which = sys.argv[1:] or ["moto", "kafka"]
    try:
        if "moto" in which:
            check_moto()
        if "kafka" in which:
            check_kafka()
    except Exception as e:  # report, do not dump a traceback
        print(f"check failed: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
