"""SASL-terminating proxy in front of a Kafka broker that cannot authenticate (tansu), for the
tests and benchmarks of s3s-kafka's SASL support. Not for production.

    "$S3S_VENV/bin/python" scripts/kafka_sasl_proxy.py --listen 127.0.0.1:P --upstream 127.0.0.1:TANSU_PORT \
        [--users FILE] [--aws-keys FILE] [--msk-region REGION] [--clock-skew SECS] \
        [--max-reauth-ms MS] [--mechanisms PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER]

botocore (in the venv of scripts/services install) computes the reference SigV4
signatures of Amazon MSK IAM tokens, as the official signer (aws-msk-iam-sasl-signer) makes them.

What it does, per client connection (one upstream connection each):
- ApiVersions goes to the broker (tansu lists SaslHandshake 0-1 and SaslAuthenticate 0-2).
- SaslHandshake (v0-v1) and SaslAuthenticate (v0-v2) are answered here, with Kafka's framing and
  error codes (33 UNSUPPORTED_SASL_MECHANISM, 34 ILLEGAL_SASL_STATE, 58 SASL_AUTHENTICATION_FAILED;
  the connection is closed after a failure, as a Kafka broker does). Any other request before
  authentication closes the connection.
- PLAIN: `authzid NUL user NUL password` against --users (lines `user:password`).
- SCRAM-SHA-256/512 (RFC 5802/7677, 4096 iterations, a fresh salt per exchange): the client's
  proof is checked and the server signature sent back (librdkafka verifies it).
- OAUTHBEARER (RFC 7628 `n,,\\x01auth=Bearer TOKEN\\x01\\x01`): TOKEN must be an Amazon MSK IAM token:
  base64url (no padding) of a SigV4-presigned `https://kafka.REGION.amazonaws.com/?Action=
  kafka-cluster%3AConnect` (service kafka-cluster, signed header host, empty-body payload hash,
  X-Amz-Security-Token when the key has one, a User-Agent parameter that is not signed). The
  signature is recomputed with the secret of its access key id (--aws-keys lines
  `AKID:SECRET[:SESSION_TOKEN]`); expired (X-Amz-Date + X-Amz-Expires before now + --clock-skew)
  or wrong tokens are refused with a message naming why.
- Session lifetime (KIP-368): OAUTHBEARER sessions last until the token expires (capped by
  --max-reauth-ms when given), PLAIN/SCRAM sessions --max-reauth-ms (0: forever). A request after
  the session's end closes the connection unless the client authenticated again on it.
- Then every other request goes to the broker, and responses come back in request order (the
  proxy's own answers to a re-authentication are queued behind the broker's outstanding ones).
  Requests that get no response (produce with acks=0) are not supported.

Secrets are read from files, never from the command line. The log (stdout) has one line per
authentication: `auth ok MECH user=U [token=DIGEST] session_ms=N` (`re-authenticated ...` on a
connection that had authenticated before) or `auth failed MECH: WHY`, and never a secret.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import os
import secrets
import socket
import struct
import sys
import threading
import time
from collections import deque
from urllib.parse import parse_qsl, urlsplit

API_SASL_HANDSHAKE = 17
API_API_VERSIONS = 18
API_SASL_AUTHENTICATE = 36
ERR_UNSUPPORTED_SASL_MECHANISM = 33
ERR_ILLEGAL_SASL_STATE = 34
ERR_SASL_AUTHENTICATION_FAILED = 58
SCRAM_ITERATIONS = 4096

LOG_LOCK = threading.Lock()


def log(msg):
    with LOG_LOCK:
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


class Closed(Exception):
    pass


def read_exact(f, n):
    b = f.read(n)
    if b is None or len(b) != n:
        raise Closed()
    return b


def read_frame(f):
    """One size-prefixed frame (without the size), or Closed."""
    (size,) = struct.unpack(">i", read_exact(f, 4))
    if size < 0 or size > 256 << 20:
        raise Closed()
    return read_exact(f, size)


# --- Kafka primitive encodings ---------------------------------------------------------------


def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_uvarint(buf, pos):
    shift = n = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7


def skip_tagged(buf, pos):
    count, pos = read_uvarint(buf, pos)
    for _ in range(count):
        _, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        pos += size
    return pos


def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def nullable_string(s):
    return struct.pack(">h", -1) if s is None else string(s)


def request_header(frame):
    """(api_key, api_version, correlation_id, position of the body) for header v1/v2."""
    api_key, api_version, corr = struct.unpack(">hhi", frame[:8])
    (clen,) = struct.unpack(">h", frame[8:10])
    pos = 10 + max(clen, 0)
    flexible = api_key == API_SASL_AUTHENTICATE and api_version >= 2
    if flexible:
        pos = skip_tagged(frame, pos)
    return api_key, api_version, corr, pos


def handshake_response(corr, error, mechanisms):
    body = struct.pack(">ih", corr, error) + struct.pack(">i", len(mechanisms))
    body += b"".join(string(m) for m in mechanisms)
    return body


def authenticate_response(corr, version, error, message, auth_bytes, session_ms):
    if version >= 2:
        out = struct.pack(">i", corr) + b"\x00"  # response header v1: no tagged fields
        out += struct.pack(">h", error)
        out += b"\x00" if message is None else uvarint(len(message.encode()) + 1) + message.encode()
        out += uvarint(len(auth_bytes) + 1) + auth_bytes
        out += struct.pack(">q", session_ms) + b"\x00"
        return out
    out = struct.pack(">ih", corr, error) + nullable_string(message)
    out += struct.pack(">i", len(auth_bytes)) + auth_bytes
    if version >= 1:
        out += struct.pack(">q", session_ms)
    return out


def authenticate_bytes(frame, pos, version):
    if version >= 2:
        n, pos = read_uvarint(frame, pos)
        return bytes(frame[pos : pos + n - 1])
    (n,) = struct.unpack(">i", frame[pos : pos + 4])
    return bytes(frame[pos + 4 : pos + 4 + n])


# --- credentials -----------------------------------------------------------------------------


def read_pairs(path, parts):
    """Lines `a:b[:c]` of a file (blank lines and # comments skipped)."""
    out = {}
    if not path:
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split(":", parts - 1)
            out[fields[0]] = fields[1:]
    return out


class AuthFailed(Exception):
    pass


class Scram:
    """One SCRAM exchange, server side (RFC 5802)."""

    def __init__(self, mechanism, users):
        self.hash = hashlib.sha256 if mechanism == "SCRAM-SHA-256" else hashlib.sha512
        self.mechanism = mechanism
        self.users = users
        self.step = 0

    def hmac(self, key, msg):
        return hmac.new(key, msg, self.hash).digest()

    def next(self, data):
        text = data.decode("utf-8")
        if self.step == 0:
            self.step = 1
            gs2_cbind, authzid, bare = text.split(",", 2)
            if gs2_cbind not in ("n", "y"):
                raise AuthFailed("channel binding is not supported")
            self.gs2 = f"{gs2_cbind},{authzid},"
            attrs = dict(a.split("=", 1) for a in bare.split(","))
            self.user = attrs.get("n", "").replace("=2C", ",").replace("=3D", "=")
            cnonce = attrs.get("r", "")
            if not cnonce:
                raise AuthFailed("no client nonce")
            self.nonce = cnonce + base64.b64encode(secrets.token_bytes(18)).decode()
            self.salt = secrets.token_bytes(16)
            self.client_first_bare = bare
            self.server_first = f"r={self.nonce},s={base64.b64encode(self.salt).decode()},i={SCRAM_ITERATIONS}"
            return self.server_first.encode(), None
        if self.step == 1:
            self.step = 2
            without_proof, _, proof = text.rpartition(",p=")
            attrs = dict(a.split("=", 1) for a in without_proof.split(","))
            if attrs.get("r") != self.nonce:
                raise AuthFailed("nonce mismatch")
            if base64.b64decode(attrs.get("c", "")) != self.gs2.encode():
                raise AuthFailed("channel binding data mismatch")
            entry = self.users.get(self.user)
            # Kafka's own message for a wrong user or password.
            invalid = f"Authentication failed during authentication due to invalid credentials with SASL mechanism {self.mechanism}"
            if entry is None:
                raise AuthFailed(invalid)
            salted = hashlib.pbkdf2_hmac(self.hash().name, entry[0].encode(), self.salt, SCRAM_ITERATIONS)
            client_key = self.hmac(salted, b"Client Key")
            stored_key = self.hash(client_key).digest()
            auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
            signature = self.hmac(stored_key, auth_message)
            given = base64.b64decode(proof)
            if len(given) != len(signature):
                raise AuthFailed(invalid)
            recovered = bytes(a ^ b for a, b in zip(given, signature))
            if not hmac.compare_digest(self.hash(recovered).digest(), stored_key):
                raise AuthFailed(invalid)
            server_key = self.hmac(salted, b"Server Key")
            server_signature = self.hmac(server_key, auth_message)
            return b"v=" + base64.b64encode(server_signature), self.user
        raise AuthFailed("unexpected SCRAM message")


def check_plain(data, users):
    try:
        _authzid, user, password = data.decode("utf-8").split("\0")
    except ValueError:
        raise AuthFailed("malformed PLAIN message")
    entry = users.get(user)
    if entry is None or not hmac.compare_digest(entry[0].encode(), password.encode()):
        raise AuthFailed("Authentication failed: Invalid username or password")
    return user


def msk_iam_token(data):
    """The bearer token of an OAUTHBEARER client message."""
    text = data.decode("utf-8")
    if not text.startswith(("n,", "y,")):
        raise AuthFailed("malformed OAUTHBEARER message")
    for kv in text.split("\x01"):
        if kv.startswith("auth="):
            scheme, _, token = kv[5:].partition(" ")
            if scheme.lower() == "bearer" and token:
                return token
    raise AuthFailed("OAUTHBEARER message without a bearer token")


def check_msk_iam(token, keys, region, now):
    """Verify an MSK IAM token; returns (principal, expiry as a unix time)."""
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    try:
        url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
    except Exception:
        raise AuthFailed("Access denied: the token is not base64url")
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    if parts.scheme != "https" or parts.path not in ("", "/"):
        raise AuthFailed("Access denied: the token is not an https URL of /")
    if params.get("Action") != "kafka-cluster:Connect":
        raise AuthFailed("Access denied: Action is not kafka-cluster:Connect")
    if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
        raise AuthFailed("Access denied: X-Amz-Algorithm is not AWS4-HMAC-SHA256")
    try:
        akid, day, cred_region, service, terminal = params["X-Amz-Credential"].split("/")
        signed_at = datetime.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
        expires = int(params["X-Amz-Expires"])
        signature = params["X-Amz-Signature"]
    except (KeyError, ValueError):
        raise AuthFailed("Access denied: the token lacks X-Amz-Credential, -Date, -Expires or -Signature")
    if service != "kafka-cluster" or terminal != "aws4_request" or day != params["X-Amz-Date"][:8]:
        raise AuthFailed(f"Access denied: credential scope {day}/{cred_region}/{service}/{terminal} is not for kafka-cluster")
    if region and cred_region != region:
        raise AuthFailed(f"Access denied: the token is signed for region {cred_region}, the cluster is in {region}")
    if parts.hostname != f"kafka.{cred_region}.amazonaws.com":
        raise AuthFailed(f"Access denied: host {parts.hostname} is not kafka.{cred_region}.amazonaws.com")
    if params.get("X-Amz-SignedHeaders") != "host":
        raise AuthFailed("Access denied: X-Amz-SignedHeaders is not host")
    expiry = signed_at.timestamp() + expires
    if now > expiry:
        when = datetime.datetime.fromtimestamp(expiry, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        raise AuthFailed(f"Access denied: the token expired at {when} (signature expired)")
    if signed_at.timestamp() > now + 300:
        raise AuthFailed("Access denied: the token is signed more than 5 minutes in the future")
    entry = keys.get(akid)
    if entry is None:
        raise AuthFailed("Access denied: the security token included in the request is invalid (unknown access key id)")
    secret = entry[0]
    session = entry[1] if len(entry) > 1 and entry[1] else None
    if session is not None and params.get("X-Amz-Security-Token") != session:
        raise AuthFailed("Access denied: X-Amz-Security-Token does not match the access key's session")
    # The reference signature, from botocore's SigV4 over the parameters as received (minus the
    # signature and the User-Agent, which the signer appends after signing).
    signed_params = {k: v for k, v in params.items() if k not in ("X-Amz-Signature", "User-Agent")}
    request = botocore.awsrequest.AWSRequest(method="GET", url=f"https://{parts.netloc}/", headers={"host": parts.netloc})
    request.params = signed_params
    request.context["timestamp"] = params["X-Amz-Date"]
    auth = botocore.auth.SigV4Auth(botocore.credentials.Credentials(akid, secret, session), "kafka-cluster", cred_region)
    want = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    if not hmac.compare_digest(want, signature):
        raise AuthFailed("Access denied: the signature does not match (wrong secret access key or signing method)")
    return akid, expiry


# --- one connection --------------------------------------------------------------------------


class Connection:
    def __init__(self, conf, client):
        self.conf = conf
        self.client = client
        self.upstream = socket.create_connection(conf.upstream)
        for s in (client, self.upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.lock = threading.Lock()
        self.order = deque()  # [bytes or None]: responses in request order
        self.waiting = deque()  # the entries of `order` waiting for the broker, in order
        self.mechanism = None
        self.exchange = None
        self.authenticated = False
        self.session_end = None  # unix time, or None: no limit
        self.peer = "%s:%d" % client.getpeername()[:2]

    def run(self):
        t = threading.Thread(target=self.from_upstream, daemon=True)
        t.start()
        try:
            self.from_client()
        except (Closed, OSError):
            pass
        finally:
            self.close()

    def close(self):
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def send_in_order(self, entry, data):
        """Fill `entry` with a response and send every response that is due, in order."""
        with self.lock:
            entry[0] = data
            while self.order and self.order[0][0] is not None:
                out = self.order.popleft()[0]
                self.client.sendall(struct.pack(">i", len(out)) + out)

    def local_response(self, data):
        entry = [None]
        with self.lock:
            self.order.append(entry)
        self.send_in_order(entry, data)

    def from_upstream(self):
        f = self.upstream.makefile("rb", buffering=1 << 20)
        try:
            while True:
                frame = read_frame(f)
                with self.lock:
                    entry = self.waiting.popleft() if self.waiting else None
                if entry is None:
                    break
                self.send_in_order(entry, frame)
        except (Closed, OSError):
            pass
        self.close()

    def from_client(self):
        f = self.client.makefile("rb", buffering=1 << 20)
        while True:
            frame = read_frame(f)
            api_key, version, corr, pos = request_header(frame)
            if api_key == API_SASL_HANDSHAKE:
                self.handshake(frame, version, corr, pos)
            elif api_key == API_SASL_AUTHENTICATE:
                if not self.authenticate(frame, version, corr, pos):
                    return
            else:
                if api_key != API_API_VERSIONS:
                    if not self.authenticated:
                        log(f"{self.peer}: request {api_key} before authentication: closing")
                        return
                    if self.session_end is not None and time.time() + self.conf.clock_skew > self.session_end:
                        log(f"{self.peer}: session expired without re-authentication: closing")
                        return
                entry = [None]
                with self.lock:
                    self.order.append(entry)
                    self.waiting.append(entry)
                self.upstream.sendall(struct.pack(">i", len(frame)) + frame)

    def handshake(self, frame, version, corr, pos):
        (n,) = struct.unpack(">h", frame[pos : pos + 2])
        mechanism = bytes(frame[pos + 2 : pos + 2 + n]).decode()
        enabled = self.conf.mechanisms
        if mechanism in enabled:
            self.mechanism, self.exchange, error = mechanism, None, 0
        else:
            log(f"auth failed {mechanism}: mechanism not enabled")
            self.mechanism, error = None, ERR_UNSUPPORTED_SASL_MECHANISM
        self.local_response(handshake_response(corr, error, enabled))

    def authenticate(self, frame, version, corr, pos):
        data = authenticate_bytes(frame, pos, version)
        mech = self.mechanism
        if mech is None:
            self.local_response(authenticate_response(corr, version, ERR_ILLEGAL_SASL_STATE, "no SaslHandshake first", b"", 0))
            return False
        now = time.time() + self.conf.clock_skew
        try:
            reply, user, expiry = b"", None, None
            if mech == "PLAIN":
                user = check_plain(data, self.conf.users)
            elif mech.startswith("SCRAM-"):
                if self.exchange is None:
                    self.exchange = Scram(mech, self.conf.users)
                reply, user = self.exchange.next(data)
            elif mech == "OAUTHBEARER":
                token = msk_iam_token(data)
                user, expiry = check_msk_iam(token, self.conf.aws_keys, self.conf.msk_region, now)
                # Which token it was (a digest: the token itself is a credential).
                user += " token=" + hashlib.sha256(token.encode()).hexdigest()[:12]
        except AuthFailed as e:
            log(f"auth failed {mech}: {e}")
            self.local_response(authenticate_response(corr, version, ERR_SASL_AUTHENTICATION_FAILED, str(e), b"", 0))
            return False
        except Exception as e:  # a malformed message
            log(f"auth failed {mech}: malformed message ({type(e).__name__})")
            msg = f"Authentication failed: malformed {mech} message"
            self.local_response(authenticate_response(corr, version, ERR_SASL_AUTHENTICATION_FAILED, msg, b"", 0))
            return False
        if user is None:  # a SCRAM exchange goes on
            self.local_response(authenticate_response(corr, version, 0, None, reply, 0))
            return True
        limit = self.conf.max_reauth_ms / 1000 if self.conf.max_reauth_ms > 0 else None
        if expiry is not None:
            limit = min(limit, expiry - now) if limit is not None else expiry - now
        session_ms = int(limit * 1000) if limit is not None else 0
        self.session_end = now + limit if limit is not None else None
        again = "re-authenticated" if self.authenticated else "auth ok"
        self.authenticated, self.exchange = True, None
        log(f"{again} {mech} user={user} session_ms={session_ms} peer={self.peer}")
        self.local_response(authenticate_response(corr, version, 0, None, reply, session_ms))
        return True


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", required=True, help="HOST:PORT to listen on")
    p.add_argument("--upstream", required=True, help="HOST:PORT of the broker")
    p.add_argument("--users", help="file of user:password lines (PLAIN, SCRAM)")
    p.add_argument("--aws-keys", help="file of AKID:SECRET[:SESSION_TOKEN] lines (MSK IAM)")
    p.add_argument("--msk-region", default="", help="the region tokens must be signed for")
    p.add_argument("--clock-skew", type=float, default=0.0, help="seconds the proxy's clock runs ahead")
    p.add_argument("--max-reauth-ms", type=int, default=0, help="session lifetime (KIP-368); 0: none")
    p.add_argument("--mechanisms", default="PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER")
    conf = p.parse_args()

    def addr(s):
        host, _, port = s.rpartition(":")
        return host, int(port)

    conf.upstream = addr(conf.upstream)
    conf.users = read_pairs(conf.users, 2)
    conf.aws_keys = read_pairs(conf.aws_keys, 3)
    conf.mechanisms = [m for m in conf.mechanisms.split(",") if m]
    if "OAUTHBEARER" in conf.mechanisms:
        import botocore.auth  # noqa: F401  (fail at start, not at the first client)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(addr(conf.listen))
    server.listen(64)
    log(f"listening on {conf.listen}, broker {conf.upstream[0]}:{conf.upstream[1]}, mechanisms {','.join(conf.mechanisms)}")
    while True:
        client, _ = server.accept()
        try:
            c = Connection(conf, client)
        except OSError as e:
            log(f"cannot reach the broker: {e}")
            client.close()
            continue
        threading.Thread(target=c.run, daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
