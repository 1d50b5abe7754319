"""Small S3/SQS chores for the demo and the benchmarks, with boto3 against the local servers.

Run with the venv's python (scripts/services install); endpoint and credentials come from the
environment (eval "$(scripts/services env)").

    aws.py setup BUCKET QUEUE         create both, send ObjectCreated events of BUCKET to QUEUE;
                                      prints the queue URL
    aws.py upload BUCKET PREFIX FILE...   upload files as PREFIX/<file name>
    aws.py queue QUEUE                create a queue (no notifications); prints its URL
    aws.py notify QUEUE_URL BUCKET KEY...   send one S3 ObjectCreated event per key, as S3 would
                                      (so one upload serves many runs, each on a fresh queue)
    aws.py counts QUEUE_URL           "visible in_flight" messages
    aws.py wait-empty QUEUE_URL SECS  wait until the queue is empty (exit 1 if it is not in time)
    aws.py wait-count QUEUE_URL N SECS   wait until the queue holds N messages
"""
import json
import os
import sys
import time

import boto3


def clients():
    kw = dict(endpoint_url=os.environ.get("AWS_ENDPOINT_URL"), region_name=os.environ.get("AWS_REGION", "us-east-1"))
    return boto3.client("s3", **kw), boto3.client("sqs", **kw)


def counts(sqs, url):
    a = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def main(argv):
    s3, sqs = clients()
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "setup":
        bucket, queue = argv[2], argv[3]
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        url = sqs.create_queue(QueueName=queue)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
        )
        print(url)
    elif cmd == "upload":
        bucket, prefix = argv[2], argv[3]
        for path in argv[4:]:
            with open(path, "rb") as f:
                s3.put_object(Bucket=bucket, Key=f"{prefix}/{os.path.basename(path)}", Body=f.read())
    elif cmd == "queue":
        print(sqs.create_queue(QueueName=argv[2])["QueueUrl"])
    elif cmd == "notify":
        url, bucket = argv[2], argv[3]
        keys = argv[4:]
        for i in range(0, len(keys), 10):
            entries = []
            for j, key in enumerate(keys[i:i + 10]):
                size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
                event = {"Records": [{
                    "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": os.environ.get("AWS_REGION", "us-east-1"),
                    "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": size}},
                }]}
                entries.append({"Id": str(j), "MessageBody": json.dumps(event)})
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
    elif cmd == "counts":
        print(*counts(sqs, argv[2]))
    elif cmd in ("wait-empty", "wait-count"):
        url = argv[2]
        want = 0 if cmd == "wait-empty" else int(argv[3])
        deadline = time.time() + float(argv[-1])
        while True:
            v, f = counts(sqs, url)
            if v + f == want:
                return 0
            if time.time() > deadline:
                print(f"queue holds {v} visible + {f} in flight, not {want}", file=sys.stderr)
                return 1
            time.sleep(0.05)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
