"""SigV4-verifying HTTP proxy in front of an Elasticsearch-compatible server (noida-db, osmem),
standing in for Amazon OpenSearch Service (service `es`) or OpenSearch Serverless (`aoss`) in the
tests of `s3s-es --aws-sigv4`. Not for production.

    "$S3S_VENV/bin/python" scripts/sigv4_proxy.py --listen 127.0.0.1:P --upstream http://127.0.0.1:ES_PORT \
        --aws-keys FILE --service es|aoss --region REGION [--log FILE]

botocore (in the venv of scripts/services install) computes the reference signature.

Every request must carry `Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/
aws4_request, SignedHeaders=..., Signature=...` and `X-Amz-Date`. The proxy recomputes the
signature with botocore's SigV4 over the request as received (method, path, query, the headers
named in SignedHeaders, the body as sent: gzip bodies are signed compressed) with the secret of
the access key id (--aws-keys lines `AKID:SECRET[:SESSION_TOKEN]`), and answers 403 with a JSON
message like AWS's when it does not match, when the access key or session token is unknown,
when the scope is for another service or region, when `host` or `x-amz-date` are not signed, when
X-Amz-Date is more than 15 minutes off, or when `x-amz-content-sha256` (required for aoss) is not
the SHA-256 of the body. Otherwise the request goes to the upstream server unchanged (minus the
AWS headers) and its response comes back.

The log has one line per request: `METHOD PATH -> STATUS [why]`; never a secret.
"""

import argparse
import datetime
import hashlib
import hmac
import http.client
import http.server
import json
import sys
import threading
import time
from urllib.parse import urlsplit

import botocore.auth
import botocore.awsrequest
import botocore.credentials

LOG_LOCK = threading.Lock()
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


class Denied(Exception):
    def __init__(self, message, status=403):
        super().__init__(message)
        self.status = status


def read_keys(path):
    keys = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.strip() and not line.startswith("#"):
                fields = line.split(":", 2)
                keys[fields[0]] = (fields[1], fields[2] if len(fields) > 2 and fields[2] else None)
    return keys


def verify(conf, method, path, headers, body):
    """Raise Denied unless the request's SigV4 signature is right."""
    auth = headers.get("authorization")
    if not auth or not auth.startswith("AWS4-HMAC-SHA256 "):
        raise Denied("Missing Authentication Token", 403)
    fields = {}
    for part in auth[len("AWS4-HMAC-SHA256 ") :].split(","):
        k, _, v = part.strip().partition("=")
        fields[k] = v
    try:
        akid, day, region, service, terminal = fields["Credential"].split("/")
        signed = fields["SignedHeaders"].split(";")
        signature = fields["Signature"]
    except (KeyError, ValueError):
        raise Denied("Authorization header requires Credential, SignedHeaders and Signature")
    amz_date = headers.get("x-amz-date", "")
    try:
        at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise Denied("X-Amz-Date is missing or malformed")
    if abs(at.timestamp() - time.time()) > 15 * 60:
        raise Denied(f"Signature expired: {amz_date} is more than 15 minutes from now")
    if service != conf.service or region != conf.region or terminal != "aws4_request" or day != amz_date[:8]:
        raise Denied(f"Credential should be scoped to a valid region and service: {day}/{region}/{service}/{terminal}, want {conf.region}/{conf.service}")
    if "host" not in signed or "x-amz-date" not in signed:
        raise Denied("host and x-amz-date must be signed")
    key = conf.keys.get(akid)
    if key is None:
        raise Denied("The security token included in the request is invalid.")
    secret, session = key
    if session is not None and (headers.get("x-amz-security-token") != session or "x-amz-security-token" not in signed):
        raise Denied("The security token included in the request is invalid.")
    content_sha = headers.get("x-amz-content-sha256")
    if content_sha is not None and content_sha != hashlib.sha256(body).hexdigest():
        raise Denied("The provided 'x-amz-content-sha256' header does not match what was computed.", 400)
    if conf.service == "aoss" and content_sha is None:
        raise Denied("OpenSearch Serverless requires the x-amz-content-sha256 header")
    missing = [h for h in signed if h not in headers]
    if missing:
        raise Denied(f"signed headers missing from the request: {','.join(missing)}")
    request = botocore.awsrequest.AWSRequest(
        method=method,
        url=f"{conf.scheme}://{headers['host']}{path}",
        headers={h: headers[h] for h in signed},
        data=body,
    )
    request.context["timestamp"] = amz_date
    signer = botocore.auth.SigV4Auth(botocore.credentials.Credentials(akid, secret, session), service, region)
    canonical = signer.canonical_request(request)
    want = signer.signature(signer.string_to_sign(request, canonical), request)
    if signer.signed_headers(signer.headers_to_sign(request)) != fields["SignedHeaders"]:
        raise Denied("SignedHeaders is not in canonical form (lower case, sorted)")
    if not hmac.compare_digest(want, signature):
        raise Denied(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
        )


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    conf = None
    local = threading.local()

    def log_message(self, fmt, *args):
        pass

    def note(self, status, why=""):
        with LOG_LOCK:
            print(f"{time.strftime('%H:%M:%S')} {self.command} {self.path} -> {status}{' ' + why if why else ''}", flush=True)

    def upstream(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection(self.conf.upstream.hostname, self.conf.upstream.port, timeout=120)
            self.local.conn = c
        return c

    def handle_any(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            verify(self.conf, self.command, self.path, headers, body)
        except Denied as e:
            self.note(e.status, str(e))
            out = json.dumps({"message": str(e)}).encode()
            self.send_response(e.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.send_header("x-amzn-ErrorType", "InvalidSignatureException")
            self.end_headers()
            self.wfile.write(out)
            return
        fwd = {k: v for k, v in self.headers.items() if k.lower() not in HOP and not k.lower().startswith("x-amz-") and k.lower() != "authorization"}
        for attempt in range(2):
            conn = self.upstream()
            try:
                conn.request(self.command, self.path, body=body, headers=fwd)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt:
                    self.send_error(502)
                    return
        self.note(resp.status)
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", required=True, help="HOST:PORT")
    p.add_argument("--upstream", required=True, help="http://HOST:PORT of the search server")
    p.add_argument("--aws-keys", required=True, help="file of AKID:SECRET[:SESSION_TOKEN] lines")
    p.add_argument("--service", default="es", choices=["es", "aoss"])
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--scheme", default="https", help="the scheme clients use (https when TLS is terminated in front)")
    conf = p.parse_args()
    conf.keys = read_keys(conf.aws_keys)
    conf.upstream = urlsplit(conf.upstream)
    Handler.conf = conf
    host, _, port = conf.listen.rpartition(":")
    server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    print(f"listening on {conf.listen}, upstream {conf.upstream.geturl()}, service {conf.service}, region {conf.region}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
