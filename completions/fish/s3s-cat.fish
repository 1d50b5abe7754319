complete -c s3s-cat -l carry -d 'Copy FIELD of the object record (e.g. `etag`, `event_time` from s3s-poll) onto each of its line records, for publishers that use it (index dates, GELF timestamps, ids). Repeatable, or comma-separated' -r
complete -c s3s-cat -l max-line-bytes -d 'A longer line is cut to this many bytes (at a UTF-8 character boundary) and its record says `"truncated":ORIGINAL_BYTES`; memory per line stays within it. 0: no limit' -r
complete -c s3s-cat -l max-decompressed-bytes -d 'Stop reading an object whose decompressed size passes SIZE (an error, no `end` record). 0: no limit' -r
complete -c s3s-cat -l max-ratio -d 'Stop reading a compressed object that decompresses to more than RATIO times its compressed size (checked once past 64 MiB of output): a decompression bomb. Log files compress about 5-50 to 1 (gzip cannot pass 1032 to 1; zeros at gzip -1 come to about 230). 0: no limit' -r
complete -c s3s-cat -l root -d 'Local files must lie inside DIR (after resolving `..` and symbolic links); any other path, from a record, a stdin line or an argument, is refused as a failed source (error, no `end`). For running s3s-cat on records from elsewhere that may name files' -r -F
complete -c s3s-cat -l drain-timeout -d 'After SIGTERM/SIGINT (or at the end of input, for the publishers), finish what is in flight for at most this long (e.g. 30s, 500ms, 2m); what is unfinished then is not forwarded and comes back through SQS' -r
complete -c s3s-cat -l metrics-addr -d 'Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks a free port, shown by `s3s-status`)' -r
complete -c s3s-cat -l metrics-file -d 'Write Prometheus metrics to PATH (atomically: a temporary file renamed over it) every --metrics-interval and at exit, for node_exporter\'s textfile collector (PATH should end in `.prom`). Give each stage its own file' -r -F
complete -c s3s-cat -l metrics-interval -d 'Seconds between rewrites of --metrics-file and of the live-state file `s3s-status` reads' -r
complete -c s3s-cat -l progress -d 'Progress line on stderr (objects, bytes, lines/s), only ever when stderr is a terminal: `auto` shows it for s3s-cat, `on` for this stage too, `off` never' -r -f -a "auto\t's3s-cat only, when stderr is a terminal'
on\t'This stage, when stderr is a terminal'
off\t'Never'"
complete -c s3s-cat -l whole-documents -d 'Read CloudTrail documents as lines, like any object. By default an object whose bytes start with `{"Records":` becomes one line per event (the event\'s compact JSON; `lines` of its `end` counts the events), streamed with flat memory, and CloudTrail digest objects (`/CloudTrail-Digest/` keys) are skipped with an `end` of 0 lines'
complete -c s3s-cat -s v -l verbose -d 'More log output on stderr (once: info, twice: debug, thrice: trace). `S3S_LOG` takes tracing\'s filter syntax and wins over --verbose/--quiet'
complete -c s3s-cat -s q -l quiet -d 'Only errors on stderr'
complete -c s3s-cat -s h -l help -d 'Print help (see more with \'--help\')'
complete -c s3s-cat -s V -l version -d 'Print version'
