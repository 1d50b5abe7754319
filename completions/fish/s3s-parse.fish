complete -c s3s-parse -l format -d 'The log format, or auto (per object)' -r -f -a "auto\t'Per object, from its key and its first line (see DESCRIPTION)'
cloudfront\t'CloudFront standard logs (W3C, tabs; names from `#Fields:`, else the 33 standard ones)'
w3c\t'W3C extended log files (IIS and others; tabs or spaces; names from `#Fields:`)'
alb\t'Application Load Balancer access logs'
elb\t'Classic Load Balancer access logs'
nlb\t'Network Load Balancer (TLS listener) access logs'
s3-access\t'S3 server access logs'
vpc-flow\t'VPC flow logs (names from the header line, else the version 2 default format)'
cloudtrail\t'CloudTrail events (one per line, as s3s-cat splits documents)'
json\t'JSON lines (the object is the fields)'
csv\t'Comma-separated values (header row, or --header)'
tsv\t'Tab-separated values (header row, or --header)'"
complete -c s3s-parse -l header -d 'Column names (comma-separated) for csv and tsv objects without a header row; for w3c and vpc-flow, the names used until an object\'s own header' -r
complete -c s3s-parse -l drain-timeout -d 'After SIGTERM/SIGINT (or at the end of input, for the publishers), finish what is in flight for at most this long (e.g. 30s, 500ms, 2m); what is unfinished then is not forwarded and comes back through SQS' -r
complete -c s3s-parse -l metrics-addr -d 'Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks a free port, shown by `s3s-status`)' -r
complete -c s3s-parse -l metrics-file -d 'Write Prometheus metrics to PATH (atomically: a temporary file renamed over it) every --metrics-interval and at exit, for node_exporter\'s textfile collector (PATH should end in `.prom`). Give each stage its own file' -r -F
complete -c s3s-parse -l metrics-interval -d 'Seconds between rewrites of --metrics-file and of the live-state file `s3s-status` reads' -r
complete -c s3s-parse -l progress -d 'Progress line on stderr (objects, bytes, lines/s), only ever when stderr is a terminal: `auto` shows it for s3s-cat, `on` for this stage too, `off` never' -r -f -a "auto\t's3s-cat only, when stderr is a terminal'
on\t'This stage, when stderr is a terminal'
off\t'Never'"
complete -c s3s-parse -l drop-line -d 'Remove the `line` member from parsed records (the fields hold everything)'
complete -c s3s-parse -s v -l verbose -d 'More log output on stderr (once: info, twice: debug, thrice: trace). `S3S_LOG` takes tracing\'s filter syntax and wins over --verbose/--quiet'
complete -c s3s-parse -s q -l quiet -d 'Only errors on stderr'
complete -c s3s-parse -s h -l help -d 'Print help (see more with \'--help\')'
complete -c s3s-parse -s V -l version -d 'Print version'
