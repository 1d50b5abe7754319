complete -c s3s-ack -l queue-url -d 'Delete only from this queue (repeatable, or comma-separated): a record whose ack token names another queue is refused' -r
complete -c s3s-ack -l drain-timeout -d 'After SIGTERM/SIGINT (or at the end of input, for the publishers), finish what is in flight for at most this long (e.g. 30s, 500ms, 2m); what is unfinished then is not forwarded and comes back through SQS' -r
complete -c s3s-ack -l metrics-addr -d 'Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks a free port, shown by `s3s-status`)' -r
complete -c s3s-ack -l metrics-file -d 'Write Prometheus metrics to PATH (atomically: a temporary file renamed over it) every --metrics-interval and at exit, for node_exporter\'s textfile collector (PATH should end in `.prom`). Give each stage its own file' -r -F
complete -c s3s-ack -l metrics-interval -d 'Seconds between rewrites of --metrics-file and of the live-state file `s3s-status` reads' -r
complete -c s3s-ack -l progress -d 'Progress line on stderr (objects, bytes, lines/s), only ever when stderr is a terminal: `auto` shows it for s3s-cat, `on` for this stage too, `off` never' -r -f -a "auto\t's3s-cat only, when stderr is a terminal'
on\t'This stage, when stderr is a terminal'
off\t'Never'"
complete -c s3s-ack -l pass -d 'Echo every input record to stdout'
complete -c s3s-ack -l dry-run -d 'Delete nothing; say on stderr what would have been deleted'
complete -c s3s-ack -s v -l verbose -d 'More log output on stderr (once: info, twice: debug, thrice: trace). `S3S_LOG` takes tracing\'s filter syntax and wins over --verbose/--quiet'
complete -c s3s-ack -s q -l quiet -d 'Only errors on stderr'
complete -c s3s-ack -s h -l help -d 'Print help (see more with \'--help\')'
complete -c s3s-ack -s V -l version -d 'Print version'
