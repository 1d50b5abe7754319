complete -c s3s-gelf -s s -l server -d 'Where to send: udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT (default port 12201)' -r
complete -c s3s-gelf -l compress -d 'Compression of UDP messages (default gzip); TCP and TLS carry plain JSON (none)' -r -f -a "gzip\t''
zlib\t''
none\t''"
complete -c s3s-gelf -l chunk-size -d 'Largest UDP datagram in bytes, chunk header included; larger messages are chunked' -r
complete -c s3s-gelf -l host -d 'The host field (default: this machine\'s name)' -r
complete -c s3s-gelf -l level -d 'The level field: a syslog severity name or number (emerg .. debug, 0-7)' -r
complete -c s3s-gelf -l field -d 'Add an additional field to every message: NAME=VALUE, sent as _NAME (repeatable)' -r
complete -c s3s-gelf -l time-field -d 'The field of line records holding the event time (RFC 3339 text or Unix seconds): a top-level member, else a member of "fields" (default: "@timestamp", then "event_time")' -r
complete -c s3s-gelf -l dead-letter -d 'Append messages too large for 128 UDP chunks to FILE (one GELF JSON a line) instead of failing their object' -r -F
complete -c s3s-gelf -l resend-window -d 'Bytes of already written messages kept to send again after a TCP/TLS reconnect. Lines are lost on a receiver restart only if more than this was unread (socket buffers at both ends, Linux: tcp_wmem\'s and the receiver\'s tcp_rmem\'s largest size)' -r
complete -c s3s-gelf -l max-rate -d 'Send at most N messages per second (0: no limit); useful with UDP, whose receivers drop what they cannot keep up with' -r
complete -c s3s-gelf -l tls-ca -d 'PEM file of the CA certificate(s) to trust for tls:// (default: the system\'s)' -r -F
complete -c s3s-gelf -l tls-server-name -d 'Name to check the server\'s certificate against (default: the host in --server)' -r
complete -c s3s-gelf -l tls-cert -d 'PEM file of the client certificate (chain) to present on tls://, for receivers that require one; needs --tls-key' -r -F
complete -c s3s-gelf -l tls-key -d 'PEM file of the private key of --tls-cert (PKCS#8, PKCS#1 or SEC1, unencrypted)' -r -F
complete -c s3s-gelf -l max-in-flight -d 'At most N lines awaiting a delivery report; reading stdin pauses while the window is full' -r
complete -c s3s-gelf -l drain-timeout -d 'After SIGTERM/SIGINT (or at the end of input, for the publishers), finish what is in flight for at most this long (e.g. 30s, 500ms, 2m); what is unfinished then is not forwarded and comes back through SQS' -r
complete -c s3s-gelf -l metrics-addr -d 'Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks a free port, shown by `s3s-status`)' -r
complete -c s3s-gelf -l metrics-file -d 'Write Prometheus metrics to PATH (atomically: a temporary file renamed over it) every --metrics-interval and at exit, for node_exporter\'s textfile collector (PATH should end in `.prom`). Give each stage its own file' -r -F
complete -c s3s-gelf -l metrics-interval -d 'Seconds between rewrites of --metrics-file and of the live-state file `s3s-status` reads' -r
complete -c s3s-gelf -l progress -d 'Progress line on stderr (objects, bytes, lines/s), only ever when stderr is a terminal: `auto` shows it for s3s-cat, `on` for this stage too, `off` never' -r -f -a "auto\t's3s-cat only, when stderr is a terminal'
on\t'This stage, when stderr is a terminal'
off\t'Never'"
complete -c s3s-gelf -l dry-run -d 'Publish nothing: describe each line that would be published as one JSON object on stderr. Records are forwarded to stdout as usual (end records included). Line records marked `"dry_run":true` (by `s3s-poll --dry-run`) are always treated this way'
complete -c s3s-gelf -s v -l verbose -d 'More log output on stderr (once: info, twice: debug, thrice: trace). `S3S_LOG` takes tracing\'s filter syntax and wins over --verbose/--quiet'
complete -c s3s-gelf -s q -l quiet -d 'Only errors on stderr'
complete -c s3s-gelf -s h -l help -d 'Print help (see more with \'--help\')'
complete -c s3s-gelf -s V -l version -d 'Print version'
