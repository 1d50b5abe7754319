complete -c s3s-poll -l queue-url -d 'The SQS queue\'s URL' -r
complete -c s3s-poll -l wait-time -d 'Long-polling wait of each receive, in seconds (0-20) [default: 20, 1 with --once]' -r
complete -c s3s-poll -l batch -d 'Messages per receive (1-10)' -r
complete -c s3s-poll -l visibility-timeout -d 'Visibility timeout for received messages, in seconds [default: the queue\'s]' -r
complete -c s3s-poll -l interval -d 'Seconds to sleep after a receive that came back empty' -r
complete -c s3s-poll -l max-messages -d 'Stop after receiving N messages' -r
complete -c s3s-poll -l key-regex -d 'Only objects whose key matches REGEX are read; the others are acknowledged unread' -r
complete -c s3s-poll -l exclude-key-regex -d 'Objects whose key matches REGEX are acknowledged unread' -r
complete -c s3s-poll -l lock -d 'Hold an exclusive lock on FILE while running; if another process holds it, exit 0 at once with a message (or wait for it with --lock-wait)' -r -F
complete -c s3s-poll -l max-receives -d 'A message received more than N times (it keeps failing somewhere: an empty or broken object, a poison body) is written to --dead-letter FILE with its reason and deleted, so a queue without a redrive policy does not loop on it forever. Without --dead-letter it is only reported and left for the queue\'s redrive policy' -r
complete -c s3s-poll -l dead-letter -d 'Where --max-receives writes the messages it gives up on (NDJSON, appended)' -r -F
complete -c s3s-poll -l metrics-addr -d 'Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks a free port, shown by `s3s-status`)' -r
complete -c s3s-poll -l metrics-file -d 'Write Prometheus metrics to PATH (atomically: a temporary file renamed over it) every --metrics-interval and at exit, for node_exporter\'s textfile collector (PATH should end in `.prom`). Give each stage its own file' -r -F
complete -c s3s-poll -l metrics-interval -d 'Seconds between rewrites of --metrics-file and of the live-state file `s3s-status` reads' -r
complete -c s3s-poll -l progress -d 'Progress line on stderr (objects, bytes, lines/s), only ever when stderr is a terminal: `auto` shows it for s3s-cat, `on` for this stage too, `off` never' -r -f -a "auto\t's3s-cat only, when stderr is a terminal'
on\t'This stage, when stderr is a terminal'
off\t'Never'"
complete -c s3s-poll -l once -d 'Drain what is in the queue now: exit 0 at the first empty receive'
complete -c s3s-poll -l dry-run -d 'Peek: receive with visibility timeout 0 (other consumers are not held up) and mark every record dry-run, so no stage publishes or deletes anything'
complete -c s3s-poll -l lock-wait -d 'With --lock: wait for the lock instead of exiting'
complete -c s3s-poll -s v -l verbose -d 'More log output on stderr (once: info, twice: debug, thrice: trace). `S3S_LOG` takes tracing\'s filter syntax and wins over --verbose/--quiet'
complete -c s3s-poll -s q -l quiet -d 'Only errors on stderr'
complete -c s3s-poll -s h -l help -d 'Print help (see more with \'--help\')'
complete -c s3s-poll -s V -l version -d 'Print version'
