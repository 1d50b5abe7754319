complete -c s3s-syslog -s s -l server -d 'Where to send: udp://HOST:PORT, tcp://HOST:PORT, tls://HOST:PORT or unix:///PATH (default ports: 514 for udp and tcp, 6514 for tls)' -r
complete -c s3s-syslog -l rfc -d 'Message format' -r -f -a "5424\t'RFC 5424 (version 1, structured data)'
3164\t'RFC 3164 (BSD syslog)'"
complete -c s3s-syslog -l framing -d 'Framing on stream transports: octet-counting (RFC 6587) or lf (a newline after each)' -r -f -a "octet-counting\t'"LEN SP MSG" (RFC 6587 3.4.1)'
lf\t'"MSG LF" (RFC 6587 3.4.2)'"
complete -c s3s-syslog -l facility -d 'Facility: kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, ntp, audit, alert, clock_daemon, local0 .. local7, or its number 0-23' -r
complete -c s3s-syslog -l severity -d 'Severity of every message: emerg, alert, crit, err, warning, notice, info, debug, or its number 0-7' -r
complete -c s3s-syslog -l severity-field -d 'Take each message\'s severity from this field of its record (a top-level member, else a member of "fields"; a name or a number as for --severity); --severity applies when the field is missing or not a severity' -r
complete -c s3s-syslog -l app-name -d 'APP-NAME (the TAG in RFC 3164): up to 48 printable ASCII characters' -r
complete -c s3s-syslog -l hostname -d 'HOSTNAME field (default: this machine\'s name)' -r
complete -c s3s-syslog -l msgid -d 'MSGID field (RFC 5424 only): up to 32 printable ASCII characters; - for none' -r
complete -c s3s-syslog -l sd-id -d 'SD-ID of the structured data element naming each line\'s origin (RFC 5424). A name of your own needs @ and an enterprise number; 32473 is the number reserved for examples' -r
complete -c s3s-syslog -l max-message -d 'Longest message in bytes, framing excluded (default: 2048 on udp://, 8192 otherwise); longer lines are truncated by the rule above' -r
complete -c s3s-syslog -l resend-window -d 'Bytes of already written messages kept to send again after a TCP/TLS reconnect. Lines are lost on a receiver restart only if more than this was unread (socket buffers at both ends, Linux: tcp_wmem\'s and the receiver\'s tcp_rmem\'s largest size)' -r
complete -c s3s-syslog -l max-rate -d 'Send at most N messages per second (0: no limit); useful with UDP, whose receivers drop what they cannot keep up with' -r
complete -c s3s-syslog -l tls-ca -d 'PEM file of the CA certificate(s) to trust for tls:// (default: the system\'s)' -r -F
complete -c s3s-syslog -l tls-server-name -d 'Name to check the server\'s certificate against (default: the host in --server)' -r
complete -c s3s-syslog -l tls-cert -d 'PEM file of the client certificate (chain) to present on tls://, for receivers that require one; needs --tls-key' -r -F
complete -c s3s-syslog -l tls-key -d 'PEM file of the private key of --tls-cert (PKCS#8, PKCS#1 or SEC1, unencrypted)' -r -F
complete -c s3s-syslog -l max-in-flight -d 'At most N lines awaiting a delivery report; reading stdin pauses while the window is full' -r
complete -c s3s-syslog -l drain-timeout -d 'After SIGTERM/SIGINT (or at the end of input, for the publishers), finish what is in flight for at most this long (e.g. 30s, 500ms, 2m); what is unfinished then is not forwarded and comes back through SQS' -r
complete -c s3s-syslog -l metrics-addr -d 'Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks a free port, shown by `s3s-status`)' -r
complete -c s3s-syslog -l metrics-file -d 'Write Prometheus metrics to PATH (atomically: a temporary file renamed over it) every --metrics-interval and at exit, for node_exporter\'s textfile collector (PATH should end in `.prom`). Give each stage its own file' -r -F
complete -c s3s-syslog -l metrics-interval -d 'Seconds between rewrites of --metrics-file and of the live-state file `s3s-status` reads' -r
complete -c s3s-syslog -l progress -d 'Progress line on stderr (objects, bytes, lines/s), only ever when stderr is a terminal: `auto` shows it for s3s-cat, `on` for this stage too, `off` never' -r -f -a "auto\t's3s-cat only, when stderr is a terminal'
on\t'This stage, when stderr is a terminal'
off\t'Never'"
complete -c s3s-syslog -l no-structured-data -d 'Send no structured data (RFC 5424: "-")'
complete -c s3s-syslog -l dry-run -d 'Publish nothing: describe each line that would be published as one JSON object on stderr. Records are forwarded to stdout as usual (end records included). Line records marked `"dry_run":true` (by `s3s-poll --dry-run`) are always treated this way'
complete -c s3s-syslog -s v -l verbose -d 'More log output on stderr (once: info, twice: debug, thrice: trace). `S3S_LOG` takes tracing\'s filter syntax and wins over --verbose/--quiet'
complete -c s3s-syslog -s q -l quiet -d 'Only errors on stderr'
complete -c s3s-syslog -s h -l help -d 'Print help (see more with \'--help\')'
complete -c s3s-syslog -s V -l version -d 'Print version'
