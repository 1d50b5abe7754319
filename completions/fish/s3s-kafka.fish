complete -c s3s-kafka -s b -l brokers -d 'Bootstrap broker(s), host:port[,host:port...] (librdkafka\'s bootstrap.servers)' -r
complete -c s3s-kafka -s t -l topic -d 'Topic to produce to' -r
complete -c s3s-kafka -s p -l partition -d 'Partition to produce to (default: librdkafka\'s partitioner: by key, sticky without one)' -r
complete -c s3s-kafka -s X -d 'Set a librdkafka property (repeatable), passed on unchanged; wins over -F and the defaults' -r
complete -c s3s-kafka -s F -l config-file -d 'Read librdkafka properties from FILE: one PROP=VALUE a line, # starts a comment (kcat -F)' -r -F
complete -c s3s-kafka -l payload -d 'The message value: the line\'s text (raw), the whole record as it came (json), or the record\'s "fields" object as it came (fields; a line without one, such as a line s3s-parse could not parse, is sent as the whole record)' -r -f -a "raw\t'The line\'s text, JSON escapes decoded'
json\t'The whole line record, byte for byte as it came'
fields\t'The record\'s "fields" object (s3s-parse), byte for byte as it came; the whole record for a line without one'"
complete -c s3s-kafka -s k -l key -d 'The same message key for every line' -r
complete -c s3s-kafka -l key-field -d 'Key each message with this field of its record: a top-level member, else a member of its "fields" object (c-ip); a string\'s text, or the JSON text of a number; no key when the field is missing or null' -r
complete -c s3s-kafka -s K -l key-delimiter -d 'Split each line at the first DELIM: the key before it, the value after it (kcat -K); a line without DELIM is all value, with no key' -r
complete -c s3s-kafka -s H -l header -d 'Add a message header (repeatable)' -r
complete -c s3s-kafka -l tls-ca -d 'CA certificates (PEM) to check the brokers\' certificates against, instead of the system\'s (ssl.ca.location)' -r -F
complete -c s3s-kafka -l tls-cert -d 'Client certificate (PEM) for brokers that require one (ssl.certificate.location)' -r -F
complete -c s3s-kafka -l tls-key -d 'The client certificate\'s private key (PEM, ssl.key.location)' -r -F
complete -c s3s-kafka -l sasl-mechanism -d 'SASL mechanism (sasl.mechanisms); over TLS (SASL_SSL) unless -X security.protocol says otherwise. The password: --sasl-password-file or S3S_KAFKA_SASL_PASSWORD' -r -f -a "PLAIN\t'User name and password in the clear (use TLS)'
SCRAM-SHA-256\t'SCRAM with SHA-256 (RFC 7677)'
SCRAM-SHA-512\t'SCRAM with SHA-512 (Amazon MSK, Confluent Platform, Redpanda...)'"
complete -c s3s-kafka -l sasl-username -d 'SASL user name (sasl.username), for --sasl-mechanism or a mechanism set with -F/-X' -r
complete -c s3s-kafka -l sasl-password-file -d 'Read the SASL password (sasl.password) from FILE (its first line); else S3S_KAFKA_SASL_PASSWORD' -r -F
complete -c s3s-kafka -l aws-region -d 'The AWS region of the MSK cluster (default: the standard chain\'s region, else the one in the brokers\' host names)' -r
complete -c s3s-kafka -l max-in-flight -d 'At most N lines awaiting a delivery report; reading stdin pauses while the window is full' -r
complete -c s3s-kafka -l drain-timeout -d 'After SIGTERM/SIGINT (or at the end of input, for the publishers), finish what is in flight for at most this long (e.g. 30s, 500ms, 2m); what is unfinished then is not forwarded and comes back through SQS' -r
complete -c s3s-kafka -l metrics-addr -d 'Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks a free port, shown by `s3s-status`)' -r
complete -c s3s-kafka -l metrics-file -d 'Write Prometheus metrics to PATH (atomically: a temporary file renamed over it) every --metrics-interval and at exit, for node_exporter\'s textfile collector (PATH should end in `.prom`). Give each stage its own file' -r -F
complete -c s3s-kafka -l metrics-interval -d 'Seconds between rewrites of --metrics-file and of the live-state file `s3s-status` reads' -r
complete -c s3s-kafka -l progress -d 'Progress line on stderr (objects, bytes, lines/s), only ever when stderr is a terminal: `auto` shows it for s3s-cat, `on` for this stage too, `off` never' -r -f -a "auto\t's3s-cat only, when stderr is a terminal'
on\t'This stage, when stderr is a terminal'
off\t'Never'"
complete -c s3s-kafka -l source-headers -d 'Add headers naming each line\'s source: s3s.bucket and s3s.key (or s3s.file) and s3s.line (its line number in the object)'
complete -c s3s-kafka -l tls -d 'Connect over TLS (security.protocol=SSL, or SASL_SSL with SASL), checking the brokers\' certificates against the system\'s CA certificates (or --tls-ca\'s). Implied by the other --tls-* flags, --sasl-mechanism and --aws-msk-iam'
complete -c s3s-kafka -l aws-msk-iam -d 'Amazon MSK IAM access control: SASL/OAUTHBEARER over TLS, with tokens signed by the standard AWS credential chain (environment, profile, SSO, web identity, ECS or instance role) and signed again before they expire (every 15 minutes)'
complete -c s3s-kafka -l dry-run -d 'Publish nothing: describe each line that would be published as one JSON object on stderr. Records are forwarded to stdout as usual (end records included). Line records marked `"dry_run":true` (by `s3s-poll --dry-run`) are always treated this way'
complete -c s3s-kafka -s v -l verbose -d 'More log output on stderr (once: info, twice: debug, thrice: trace). `S3S_LOG` takes tracing\'s filter syntax and wins over --verbose/--quiet'
complete -c s3s-kafka -s q -l quiet -d 'Only errors on stderr'
complete -c s3s-kafka -s h -l help -d 'Print help (see more with \'--help\')'
complete -c s3s-kafka -s V -l version -d 'Print version'
