complete -c s3s-filter -s e -l regexp -d 'Keep lines matching REGEX (repeatable: any match keeps the line)' -r
complete -c s3s-filter -s w -l where -d 'Keep lines whose parsed fields pass EXPR: FIELD=VALUE, FIELD!=VALUE, FIELD>=N, FIELD<=N, FIELD>N, FIELD<N (N a number or an RFC 3339 time), FIELD~REGEX, FIELD!~REGEX (repeatable: all must hold; with -e, both)' -r
complete -c s3s-filter -l replace -d 'Rewrite kept lines: every match of REGEX becomes REPLACEMENT (`$1`, `${name}` for groups). Repeatable; applied in order' -r
complete -c s3s-filter -l drain-timeout -d 'After SIGTERM/SIGINT (or at the end of input, for the publishers), finish what is in flight for at most this long (e.g. 30s, 500ms, 2m); what is unfinished then is not forwarded and comes back through SQS' -r
complete -c s3s-filter -l metrics-addr -d 'Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks a free port, shown by `s3s-status`)' -r
complete -c s3s-filter -l metrics-file -d 'Write Prometheus metrics to PATH (atomically: a temporary file renamed over it) every --metrics-interval and at exit, for node_exporter\'s textfile collector (PATH should end in `.prom`). Give each stage its own file' -r -F
complete -c s3s-filter -l metrics-interval -d 'Seconds between rewrites of --metrics-file and of the live-state file `s3s-status` reads' -r
complete -c s3s-filter -l progress -d 'Progress line on stderr (objects, bytes, lines/s), only ever when stderr is a terminal: `auto` shows it for s3s-cat, `on` for this stage too, `off` never' -r -f -a "auto\t's3s-cat only, when stderr is a terminal'
on\t'This stage, when stderr is a terminal'
off\t'Never'"
complete -c s3s-filter -s v -l invert-match -d 'Invert: keep the lines that -e and --where do not keep'
complete -c s3s-filter -s i -l ignore-case -d 'Case-insensitive matching (for -e, --replace and the regexes of --where)'
complete -c s3s-filter -s q -l quiet -d 'Only errors on stderr'
complete -c s3s-filter -l verbose -d 'More log output on stderr (once: info, twice: debug, thrice: trace). `S3S_LOG` takes tracing\'s filter syntax and wins over --verbose/--quiet'
complete -c s3s-filter -s h -l help -d 'Print help (see more with \'--help\')'
complete -c s3s-filter -s V -l version -d 'Print version'
