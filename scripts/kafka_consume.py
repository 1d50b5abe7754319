"""Independent Kafka consumer (confluent-kafka) for tests and benchmarks.

Run it through the wrapper, which picks the venv's Python:
    scripts/kafka-consume --brokers 127.0.0.1:49092 --topic T [--expect N] [--timeout SECS]
                          [--settle SECS] [--format value|json|count] [-v]
or directly: "$S3S_VENV/bin/python" scripts/kafka_consume.py ...

Reads the topic from the beginning of every partition. It uses assign() with the
partitions from the metadata, not a consumer-group join (slow on tansu), and commits
nothing. It stops when --expect N messages were read, or when no new message arrived
for --timeout seconds (default 10; the same limit applies to waiting for the topic to
appear). Messages are counted by consuming them: tansu's watermarks undercount.

Output on stdout:
  value  each message value as one line (raw bytes, a null value as an empty line)
  json   one JSON object a line: topic, partition, offset, timestamp, key, value, headers
         (key/value/header values as UTF-8 text; when not UTF-8, as base64 in key_b64,
         value_b64 or {"b64": ...})
  count  only the number of messages read, at the end

Exit status: 0; 1 if --expect N was given and fewer than N arrived, or (with --settle)
more than N arrived within --settle seconds after the N-th (without --settle it stops
at exactly N and does not look further); 2 on usage errors or when the brokers never
answer. A topic that does not exist reads as empty.
"""

import argparse
import base64
import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition


def text_or_b64(b):
    """Return (text, None) for UTF-8 bytes, (None, base64) otherwise, (None, None) for None."""
    if b is None:
        return None, None
    try:
        return b.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, base64.b64encode(b).decode("ascii")


def as_json(msg):
    out = {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "timestamp": msg.timestamp()[1],
    }
    for name, raw in (("key", msg.key()), ("value", msg.value())):
        text, b64 = text_or_b64(raw)
        out[name] = text
        if b64 is not None:
            out[name + "_b64"] = b64
    headers = []
    for k, v in msg.headers() or []:
        text, b64 = text_or_b64(v)
        headers.append([k, text if b64 is None else {"b64": b64}])
    out["headers"] = headers
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def wait_for_partitions(consumer, topic, deadline):
    """Partition ids of the topic, waiting (until deadline) for it to exist; [] if it
    never appears. Exits with status 2 if the brokers never answer."""
    last_err, reached = None, False
    while True:
        try:
            md = consumer.list_topics(topic, timeout=max(0.5, min(5.0, deadline - time.monotonic())))
            reached = True
            t = md.topics.get(topic)
            if t is not None and t.error is None and t.partitions:
                return sorted(t.partitions)
            last_err = t.error if t is not None else "topic missing from metadata"
        except KafkaException as e:
            last_err = e.args[0].str() if e.args else e
        if time.monotonic() >= deadline:
            if not reached:
                print(f"kafka-consume: no answer from the brokers: {last_err}", file=sys.stderr)
                sys.exit(2)
            print(f"kafka-consume: topic {topic!r} not available ({last_err}): read as empty",
                  file=sys.stderr)
            return []
        time.sleep(0.2)


def main():
    ap = argparse.ArgumentParser(prog="kafka-consume", description="Read a Kafka topic from the beginning (assign, no group).")
    ap.add_argument("--brokers", "-b", required=True, help="bootstrap servers, e.g. 127.0.0.1:49092")
    ap.add_argument("--topic", "-t", required=True)
    ap.add_argument("--expect", "-n", type=int, help="stop after this many messages")
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="stop when no message arrived for this many seconds (default 10)")
    ap.add_argument("--settle", type=float, default=0.0,
                    help="with --expect: keep reading this long after the N-th message; "
                         "more messages then make the exit status 1")
    ap.add_argument("--format", "-f", choices=("value", "json", "count"), default="value")
    ap.add_argument("-X", dest="config", action="append", default=[], metavar="KEY=VALUE",
                    help="extra librdkafka consumer property")
    ap.add_argument("-v", "--verbose", action="store_true", help="summary on stderr")
    args = ap.parse_args()

    conf = {
        "bootstrap.servers": args.brokers,
        "group.id": "s3s-kafka-consume",  # required by librdkafka; never joined (assign only)
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "fetch.wait.max.ms": 100,
    }
    for kv in args.config:
        k, sep, v = kv.partition("=")
        if not sep:
            ap.error(f"-X wants KEY=VALUE, got {kv!r}")
        conf[k] = v

    errors = []
    conf["error_cb"] = lambda err: errors.append(err)
    try:
        consumer = Consumer(conf)
    except KafkaException as e:
        print(f"kafka-consume: {e.args[0].str()}", file=sys.stderr)
        return 2
    start = time.monotonic()
    partitions = wait_for_partitions(consumer, args.topic, start + args.timeout)
    if partitions:
        consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])

    out = sys.stdout.buffer
    fmt = args.format
    count = 0
    # no topic: nothing to wait for
    last_msg = time.monotonic() if partitions else float("-inf")
    reached_at = None  # when --expect was reached (for --settle)
    try:
        while True:
            now = time.monotonic()
            if args.expect is not None and count >= args.expect:
                if reached_at is None:
                    reached_at = now
                if now - reached_at >= args.settle:
                    break
            if now - last_msg >= args.timeout:
                break
            msgs = consumer.consume(num_messages=10000, timeout=0.2)
            for m in msgs:
                if args.expect is not None and count >= args.expect and args.settle <= 0:
                    break  # without --settle, stop at exactly N
                if m.error():
                    # end-of-partition events are not errors worth stopping for
                    if m.error().code() != -191:  # KafkaError._PARTITION_EOF
                        print(f"kafka-consume: {m.error()}", file=sys.stderr)
                    continue
                count += 1
                if fmt == "value":
                    v = m.value()
                    if v:
                        out.write(v)
                    out.write(b"\n")
                elif fmt == "json":
                    out.write(as_json(m).encode("utf-8"))
                    out.write(b"\n")
            if msgs:
                last_msg = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    if fmt == "count":
        out.write(b"%d\n" % count)
    out.flush()

    elapsed = time.monotonic() - start
    if args.verbose:
        print(f"kafka-consume: read {count} messages from {args.topic} "
              f"({len(partitions)} partitions) in {elapsed:.2f}s", file=sys.stderr)
    if args.expect is not None and count != args.expect:
        why = "fewer" if count < args.expect else "more"
        print(f"kafka-consume: expected {args.expect} messages, read {count} ({why})", file=sys.stderr)
        if count == 0 and errors:
            print(f"kafka-consume: last client error: {errors[-1]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        sys.exit(0)
