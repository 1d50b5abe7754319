//! Formats with AWS's documented field order: ALB, classic ELB and NLB access logs, S3 server
//! access logs. Fields are separated by spaces; `"quoted"` fields (with `\"` escapes) and
//! `[bracketed]` times are one field each. Names are the documentation's, in snake_case;
//! `client:port` becomes `client_ip` and `client_port` (IPv6 `[::1]:443` too) and the quoted
//! request `request_method`, `request_url`, `request_protocol`. Fields AWS appends later than
//! this list land in `_extra`; a line with fewer fields gets the ones it has.

use super::{Format, Line, Scratch, Why, key, number_or_null, string, string_or_null, time, unquote_into};

/// One documented field.
#[derive(Debug, Clone, Copy)]
enum F {
    /// A string (`-` is null).
    S(&'static str),
    /// A number (`-` is null).
    N(&'static str),
    /// The line's ISO 8601 time: a string, and the `@timestamp`.
    T(&'static str),
    /// `ip:port`, split into the two names.
    Hp(&'static str, &'static str),
    /// `METHOD URL PROTOCOL`, split into `request_method`, `request_url`, `request_protocol`.
    Req,
}

use F::{Hp, N, Req, S, T};

/// ALB access log entries, through the 2025 additions (AWS, "Access log entries").
const ALB: &[F] = &[
    S("type"),
    T("time"),
    S("elb"),
    Hp("client_ip", "client_port"),
    Hp("target_ip", "target_port"),
    N("request_processing_time"),
    N("target_processing_time"),
    N("response_processing_time"),
    N("elb_status_code"),
    N("target_status_code"),
    N("received_bytes"),
    N("sent_bytes"),
    Req,
    S("user_agent"),
    S("ssl_cipher"),
    S("ssl_protocol"),
    S("target_group_arn"),
    S("trace_id"),
    S("domain_name"),
    S("chosen_cert_arn"),
    N("matched_rule_priority"),
    S("request_creation_time"),
    S("actions_executed"),
    S("redirect_url"),
    S("error_reason"),
    S("target_port_list"),
    S("target_status_code_list"),
    S("classification"),
    S("classification_reason"),
    S("conn_trace_id"),
    S("transformed_host"),
    S("transformed_uri"),
    S("request_transform_status"),
];

/// Classic Load Balancer access log entries.
const ELB: &[F] = &[
    T("time"),
    S("elb"),
    Hp("client_ip", "client_port"),
    Hp("backend_ip", "backend_port"),
    N("request_processing_time"),
    N("backend_processing_time"),
    N("response_processing_time"),
    N("elb_status_code"),
    N("backend_status_code"),
    N("received_bytes"),
    N("sent_bytes"),
    Req,
    S("user_agent"),
    S("ssl_cipher"),
    S("ssl_protocol"),
];

/// Network Load Balancer (TLS listener) access log entries.
const NLB: &[F] = &[
    S("type"),
    S("version"),
    T("time"),
    S("elb"),
    S("listener"),
    Hp("client_ip", "client_port"),
    Hp("destination_ip", "destination_port"),
    N("connection_time"),
    N("tls_handshake_time"),
    N("received_bytes"),
    N("sent_bytes"),
    S("incoming_tls_alert"),
    S("chosen_cert_arn"),
    S("chosen_cert_serial"),
    S("tls_cipher"),
    S("tls_protocol_version"),
    S("tls_named_group"),
    S("domain_name"),
    S("alpn_fe_protocol"),
    S("alpn_be_protocol"),
    S("alpn_client_preference_list"),
    S("tls_connection_creation_time"),
];

/// S3 server access log fields after the operation (AWS, "Amazon S3 server access log format").
const S3_REST: &[F] = &[
    S("key"),
    Req,
    N("http_status"),
    S("error_code"),
    N("bytes_sent"),
    N("object_size"),
    N("total_time"),
    N("turn_around_time"),
    S("referer"),
    S("user_agent"),
    S("version_id"),
    S("host_id"),
    S("signature_version"),
    S("cipher_suite"),
    S("authentication_type"),
    S("host_header"),
    S("tls_version"),
    S("access_point_arn"),
    S("acl_required"),
];

pub struct Fixed {
    format: Format,
}

impl Fixed {
    pub fn new(format: Format) -> Fixed {
        Fixed { format }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn line(&mut self, line: &[u8], out: &mut Vec<u8>, ts: &mut Vec<u8>, s: &mut Scratch) -> Result<Line, Why> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(Line::Consumed);
        }
        let Scratch { tokens, text } = s;
        tokens.clear();
        tokenize(line, tokens)?;
        out.push(b'{');
        match self.format {
            Format::S3Access => s3(line, tokens, out, ts, text),
            f => {
                let schema = match f {
                    Format::Alb => ALB,
                    Format::Elb => ELB,
                    _ => NLB,
                };
                fields(schema, line, tokens, out, ts, text);
            }
        }
        out.push(b'}');
        Ok(Line::Data)
    }
}

/// Write `tokens` by `schema`, the ones past it into `_extra`.
fn fields(schema: &[F], line: &[u8], tokens: &[(usize, usize, u8)], out: &mut Vec<u8>, ts: &mut Vec<u8>, text: &mut Vec<u8>) {
    for (i, &(a, b, esc)) in tokens.iter().enumerate() {
        let v = if esc == 1 {
            unquote_into(&line[a..b], text);
            &text[..]
        } else {
            &line[a..b]
        };
        match schema.get(i) {
            Some(&f) => field(f, v, out, ts),
            None => {
                if i == schema.len() {
                    key(out, b"_extra");
                    out.push(b'[');
                } else {
                    out.push(b',');
                }
                string(out, v);
            }
        }
    }
    if tokens.len() > schema.len() {
        out.push(b']');
    }
}

#[inline]
fn field(f: F, v: &[u8], out: &mut Vec<u8>, ts: &mut Vec<u8>) {
    match f {
        S(name) => {
            key(out, name.as_bytes());
            string_or_null(out, v);
        }
        N(name) => {
            key(out, name.as_bytes());
            number_or_null(out, v);
        }
        T(name) => {
            key(out, name.as_bytes());
            string_or_null(out, v);
            if ts.is_empty() {
                time::iso(v, ts);
            }
        }
        Hp(ip, port) => {
            let (h, p) = host_port(v);
            key(out, ip.as_bytes());
            string_or_null(out, h);
            key(out, port.as_bytes());
            number_or_null(out, p);
        }
        Req => {
            let (m, u, p) = request(v);
            key(out, b"request_method");
            string_or_null(out, m);
            key(out, b"request_url");
            string_or_null(out, u);
            key(out, b"request_protocol");
            string_or_null(out, p);
        }
    }
}

const DASH: &[u8] = b"-";

/// `10.0.0.1:443` → (`10.0.0.1`, `443`); `[2001:db8::1]:443` → (`2001:db8::1`, `443`); `-` →
/// both `-`; no port → (`v`, `-`).
fn host_port(v: &[u8]) -> (&[u8], &[u8]) {
    if v == b"-" {
        return (v, v);
    }
    if let Some(rest) = v.strip_prefix(b"[")
        && let Some(close) = memchr::memchr(b']', rest)
    {
        let port = rest[close + 1..].strip_prefix(b":").unwrap_or(DASH);
        return (&rest[..close], port);
    }
    match memchr::memrchr(b':', v) {
        // More than one colon and no brackets: an IPv6 address without a port.
        Some(i) if memchr::memchr(b':', &v[..i]).is_none() => (&v[..i], &v[i + 1..]),
        _ => (v, DASH),
    }
}

/// `GET http://x/ HTTP/1.1` → (method, url, protocol); `- - -` → three `-`.
fn request(v: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let v = super::trim(v);
    if v.is_empty() {
        return (DASH, DASH, DASH);
    }
    let Some(sp) = memchr::memchr(b' ', v) else { return (v, DASH, DASH) };
    let (m, rest) = (&v[..sp], &v[sp + 1..]);
    match memchr::memrchr(b' ', rest) {
        Some(j) => (m, &rest[..j], &rest[j + 1..]),
        None => (m, rest, DASH),
    }
}

/// Space-separated fields; `"..."` (with `\"` escapes: third member 1) and `[...]` are one
/// field each, without their quotes or brackets.
fn tokenize(line: &[u8], tokens: &mut Vec<(usize, usize, u8)>) -> Result<(), Why> {
    let n = line.len();
    let mut i = 0;
    loop {
        while i < n && line[i] == b' ' {
            i += 1;
        }
        if i >= n {
            return Ok(());
        }
        match line[i] {
            b'"' => {
                let start = i + 1;
                let mut j = start;
                let mut esc = 0;
                loop {
                    match memchr::memchr2(b'"', b'\\', &line[j..]) {
                        None => return Err("unterminated quoted field".into()),
                        Some(k) if line[j + k] == b'\\' => {
                            esc = 1;
                            j += k + 2;
                            if j > n {
                                return Err("unterminated quoted field".into());
                            }
                        }
                        Some(k) if j + k + 1 < n && line[j + k + 1] != b' ' => {
                            // Text right after the closing quote (NLB's `"h2","http/1.1"`): one
                            // field, quotes and all, up to the next space.
                            let end = memchr::memchr(b' ', &line[j + k..]).map_or(n, |e| j + k + e);
                            tokens.push((start - 1, end, 0));
                            i = end;
                            break;
                        }
                        Some(k) => {
                            tokens.push((start, j + k, esc));
                            i = j + k + 1;
                            break;
                        }
                    }
                }
            }
            // `[06/Feb/2019:00:00:38 +0000]`; but `[2001:db8::1]:443` is a plain field.
            b'[' => match memchr::memchr(b']', &line[i..]) {
                Some(k) if line.get(i + k + 1).is_none_or(|&c| c == b' ') => {
                    tokens.push((i + 1, i + k, 0));
                    i += k + 1;
                }
                None if memchr::memchr(b' ', &line[i..])
                    .is_some_and(|sp| line[i..].get(sp + 1).is_some_and(u8::is_ascii_digit)) =>
                {
                    return Err("unterminated [bracketed] field".into());
                }
                _ => {
                    let end = memchr::memchr(b' ', &line[i..]).map_or(n, |k| i + k);
                    tokens.push((i, end, 0));
                    i = end;
                }
            },
            _ => {
                let end = memchr::memchr(b' ', &line[i..]).map_or(n, |k| i + k);
                tokens.push((i, end, 0));
                i = end;
            }
        }
    }
}

/// An S3 operation: `REST.GET.OBJECT`, `S3.COMPUTE.OBJECT.CHECKSUM`, `SOAP.CreateBucket`...
fn is_operation(v: &[u8]) -> bool {
    let Some(dot) = memchr::memchr(b'.', v) else { return false };
    dot > 0
        && v[..dot].iter().all(u8::is_ascii_uppercase)
        && v.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// An S3 request id: 16 upper-case letters and digits, or a job's UUID (Compute checksum).
fn is_request_id(v: &[u8]) -> bool {
    (8..=64).contains(&v.len()) && v[0].is_ascii_alphanumeric() && v.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
}

/// S3 server access logs. The requester is not quoted and may hold spaces (an assumed role's
/// session name): it runs up to the request id that comes before the operation.
fn s3(line: &[u8], t: &[(usize, usize, u8)], out: &mut Vec<u8>, ts: &mut Vec<u8>, text: &mut Vec<u8>) {
    let v = |i: usize| t.get(i).map(|&(a, b, _)| &line[a..b]);
    let head = [S("bucket_owner"), S("bucket"), S("time"), S("remote_ip")];
    for (i, f) in head.into_iter().enumerate() {
        let Some(x) = v(i) else { return };
        field(f, x, out, ts);
    }
    if let Some(x) = v(2) {
        time::clf(x, ts);
    }
    // The operation: the first field after the requester that looks like one, preceded by a
    // request id; the standard place (7th) when none does.
    let op = (6..t.len())
        .find(|&k| is_operation(v(k).unwrap_or_default()) && is_request_id(v(k - 1).unwrap_or_default()))
        .unwrap_or(6);
    if t.len() > 4 {
        let requester = &line[t[4].0..t[(op - 2).min(t.len() - 1)].1];
        field(S("requester"), requester, out, ts);
    }
    for (f, i) in [(S("request_id"), op - 1), (S("operation"), op)] {
        let Some(x) = v(i) else { return };
        field(f, x, out, ts);
    }
    fields(S3_REST, line, &t[op + 1..], out, ts, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(format: Format, line: &str) -> (String, String) {
        let (mut out, mut ts, mut s) = (Vec::new(), Vec::new(), Scratch::default());
        match Fixed::new(format).line(line.as_bytes(), &mut out, &mut ts, &mut s) {
            Ok(_) => (String::from_utf8(out).unwrap(), String::from_utf8(ts).unwrap()),
            Err(e) => (format!("error: {e}"), String::new()),
        }
    }

    #[test]
    fn splits() {
        assert_eq!(host_port(b"[2001:db8::1]:443"), (&b"2001:db8::1"[..], &b"443"[..]));
        assert_eq!(host_port(b"10.0.0.1:80"), (&b"10.0.0.1"[..], &b"80"[..]));
        assert_eq!(host_port(b"-"), (&b"-"[..], &b"-"[..]));
        assert_eq!(request(b"- - -"), (&b"-"[..], &b"-"[..], &b"-"[..]));
        assert_eq!(request(b"GET http://a/b?c HTTP/1.1"), (&b"GET"[..], &b"http://a/b?c"[..], &b"HTTP/1.1"[..]));
    }

    #[test]
    fn s3_requester_with_spaces() {
        let line = r#"79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be DOC-EXAMPLE-BUCKET1 [06/Feb/2019:00:00:38 +0000] - arn:aws:sts::123456789012:assumed-role/My Role/session 3E57427F3EXAMPLE REST.GET.OBJECT_LOCK_CONFIGURATION photos/x.jpg "GET /DOC-EXAMPLE-BUCKET1/photos/x.jpg HTTP/1.1" 200 - 113 113 7 - "-" "S3Console/0.4" -"#;
        let (f, ts) = parse(Format::S3Access, line);
        assert_eq!(ts, "2019-02-06T00:00:38Z");
        assert!(f.contains(r#""remote_ip":null,"requester":"arn:aws:sts::123456789012:assumed-role/My Role/session","request_id":"3E57427F3EXAMPLE","operation":"REST.GET.OBJECT_LOCK_CONFIGURATION","key":"photos/x.jpg","request_method":"GET""#), "{f}");
        assert!(f.contains(r#""http_status":200,"error_code":null,"bytes_sent":113"#), "{f}");
    }

    #[test]
    fn alb_escapes_and_extra() {
        let line = r#"http 2018-07-02T22:22:48.364000Z app/lb/50dc 192.168.131.39:2817 - -1 -1 -1 503 - 34 366 "GET http://www.example.com:80/ HTTP/1.1" "curl \"7\"" - - - "Root=1-58337281" "-" "-" 0 2018-07-02T22:22:48.364000Z "forward" "-" "-" "-" "-" "-" "-" TID_1 "-" "-" "-" new"#;
        let (f, ts) = parse(Format::Alb, line);
        assert_eq!(ts, "2018-07-02T22:22:48.364000Z");
        assert!(f.contains(r#""target_ip":null,"target_port":null,"request_processing_time":-1"#), "{f}");
        assert!(f.contains(r#""user_agent":"curl \"7\"""#), "{f}");
        assert!(f.ends_with(r#""request_transform_status":null,"_extra":["new"]}"#), "{f}");
        assert_eq!(parse(Format::Alb, "http \"x").0, "error: unterminated quoted field");
        let (f, _) = parse(Format::Alb, "https 2018-07-02T22:23:00.186641Z app/lb/1 [2001:db8::1]:54321 [2001:db8::2]:443 0.1");
        assert!(f.contains(r#""client_ip":"2001:db8::1","client_port":54321,"target_ip":"2001:db8::2","target_port":443,"request_processing_time":0.1}"#), "{f}");
    }
}
