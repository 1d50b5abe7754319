complete -c s3s-es -l url -d 'Node URL, e.g. https://es1:9200 (repeatable, or comma-separated); requests go round-robin over the nodes, so a retry after a connection error goes to the next one' -r
complete -c s3s-es -s i -l index -d 'Index (or data stream, or alias) to write to; date patterns like %Y.%m.%d take the record\'s event time, else now (see INDEX PATTERNS)' -r
complete -c s3s-es -l pipeline -d 'Ingest pipeline to run each document through' -r
complete -c s3s-es -l op-type -d 'The bulk action: index (create or overwrite) or create (data streams; fails if the _id exists, which --id-from-source turns into "already indexed")' -r -f -a "index\t'Create the document, or replace it when its _id exists'
create\t'Create the document; a document with its _id already there is left alone'"
complete -c s3s-es -l time-field -d 'The record field that holds each line\'s event time (default: "@timestamp", then "event_time"); RFC 3339 text or epoch milliseconds' -r
complete -c s3s-es -l user -d 'Basic authentication user; the password comes from S3S_ES_PASSWORD or --password-file' -r
complete -c s3s-es -l password-file -d 'Read the basic authentication password from FILE (its first line)' -r -F
complete -c s3s-es -l api-key-file -d 'Read an API key from FILE (sent as "Authorization: ApiKey ..."; ID:KEY is encoded)' -r -F
complete -c s3s-es -l bearer-token-file -d 'Read a bearer token from FILE (sent as "Authorization: Bearer ...")' -r -F
complete -c s3s-es -l ca-cert -l tls-ca -d 'Trust only the CA certificates in this PEM file for https URLs (instead of the system\'s)' -r -F
complete -c s3s-es -l tls-cert -d 'Client certificate (PEM) for servers that require one; with --tls-key' -r -F
complete -c s3s-es -l tls-key -d 'The client certificate\'s private key (PEM)' -r -F
complete -c s3s-es -l batch-docs -d 'Send a batch once it holds this many documents' -r
complete -c s3s-es -l batch-bytes -d 'Send a batch once its body reaches this size (e.g. 5MiB, 500k)' -r
complete -c s3s-es -l flush-interval -d 'Send a batch that has waited this long, full or not (e.g. 1s, 200ms)' -r
complete -c s3s-es -l concurrency -d 'At most N bulk requests in flight' -r
complete -c s3s-es -l max-retries -d 'Retries of a failed request (or of items rejected with 429/503) before its lines fail' -r
complete -c s3s-es -l backoff -d 'The first retry\'s delay; each retry doubles it (with jitter), up to --max-backoff' -r
complete -c s3s-es -l max-backoff -d 'The longest delay between retries' -r
complete -c s3s-es -l timeout -d 'Give up on a request (and retry it) after this long without a complete response' -r
complete -c s3s-es -l dead-letter -d 'Append documents the server rejected (other than 429/503) to FILE as NDJSON, with the reason; without it such a document fails its line' -r -F
complete -c s3s-es -l aws-sigv4 -d 'Sign every request with AWS SigV4 for SERVICE: es (Amazon OpenSearch Service domains, the default) or aoss (OpenSearch Serverless). Credentials come from the standard AWS chain (environment, profile, SSO, web identity, ECS or instance role) and are fetched again before they expire; gzip bodies are signed as sent. Not with --user or the API key or bearer token settings' -r -f -a "es\t'Amazon OpenSearch Service domains (and Elasticsearch domains): service name `es`'
aoss\t'Amazon OpenSearch Serverless collections: service name `aoss`'"
complete -c s3s-es -l aws-region -d 'The AWS region to sign for (default: the standard chain\'s, e.g. AWS_REGION)' -r
complete -c s3s-es -l max-in-flight -d 'At most N lines awaiting a delivery report; reading stdin pauses while the window is full' -r
complete -c s3s-es -l drain-timeout -d 'After SIGTERM/SIGINT (or at the end of input, for the publishers), finish what is in flight for at most this long (e.g. 30s, 500ms, 2m); what is unfinished then is not forwarded and comes back through SQS' -r
complete -c s3s-es -l metrics-addr -d 'Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks a free port, shown by `s3s-status`)' -r
complete -c s3s-es -l metrics-file -d 'Write Prometheus metrics to PATH (atomically: a temporary file renamed over it) every --metrics-interval and at exit, for node_exporter\'s textfile collector (PATH should end in `.prom`). Give each stage its own file' -r -F
complete -c s3s-es -l metrics-interval -d 'Seconds between rewrites of --metrics-file and of the live-state file `s3s-status` reads' -r
complete -c s3s-es -l progress -d 'Progress line on stderr (objects, bytes, lines/s), only ever when stderr is a terminal: `auto` shows it for s3s-cat, `on` for this stage too, `off` never' -r -f -a "auto\t's3s-cat only, when stderr is a terminal'
on\t'This stage, when stderr is a terminal'
off\t'Never'"
complete -c s3s-es -l id-from-source -d 'A deterministic _id from bucket, key, etag (when the record has one) and line number, so that a redelivered object overwrites its documents instead of duplicating them'
complete -c s3s-es -l insecure -d 'Do not verify the server\'s TLS certificate (a test cluster with a self-signed one)'
complete -c s3s-es -l gzip -d 'Compress request bodies with gzip (Content-Encoding: gzip)'
complete -c s3s-es -l dry-run -d 'Publish nothing: describe each line that would be published as one JSON object on stderr. Records are forwarded to stdout as usual (end records included). Line records marked `"dry_run":true` (by `s3s-poll --dry-run`) are always treated this way'
complete -c s3s-es -s v -l verbose -d 'More log output on stderr (once: info, twice: debug, thrice: trace). `S3S_LOG` takes tracing\'s filter syntax and wins over --verbose/--quiet'
complete -c s3s-es -s q -l quiet -d 'Only errors on stderr'
complete -c s3s-es -s h -l help -d 'Print help (see more with \'--help\')'
complete -c s3s-es -s V -l version -d 'Print version'
