complete -c s3s-status -s n -l last -d 'How many pipeline runs to show (the most recent)' -r
complete -c s3s-status -s p -l pipeline -d 'Only the runs of pipeline ID (`S3S_PIPELINE`)' -r
complete -c s3s-status -l state-dir -d 'The state directory [default: see above]' -r -F
complete -c s3s-status -s s -l stages -d 'Also list every stage of each pipeline run'
complete -c s3s-status -l json -d 'One JSON document for scripts: {"state_dir", "running": [...], "pipelines": [...]}, each pipeline with its totals and its stages\' records as logged'
complete -c s3s-status -s h -l help -d 'Print help (see more with \'--help\')'
complete -c s3s-status -s V -l version -d 'Print version'
