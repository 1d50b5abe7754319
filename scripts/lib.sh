# shellcheck shell=bash
# scripts/lib.sh — small helpers for the project's shell scripts.
#
# Usage (from another script):
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   s3s_env            # export the local service endpoints (scripts/services env)
#   die "message"      # print to stderr and exit 1
#
# Defines:
#   S3S_ROOT   the repository root (the parent of scripts/)
#   S3S_LOCAL  where local tools and services live (default $S3S_ROOT/.local, git-ignored)
#   S3S_VENV   the Python venv inside it ($S3S_LOCAL/venv)

S3S_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
S3S_LOCAL="${S3S_LOCAL:-$S3S_ROOT/.local}"
case "$S3S_LOCAL" in /*) ;; *) S3S_LOCAL="$PWD/$S3S_LOCAL" ;; esac  # absolute: paths get baked into wrappers
S3S_VENV="$S3S_LOCAL/venv"
export S3S_ROOT S3S_LOCAL S3S_VENV

# Print a message to stderr and exit 1.
die() {
    printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2
    exit 1
}

# Print a progress message to stderr.
note() {
    printf '%s: %s\n' "$(basename "$0")" "$*" >&2
}

# Export the endpoints of the local services (moto, tansu) and the tool paths.
s3s_env() {
    local out
    out="$("$S3S_ROOT/scripts/services" env)" || die "scripts/services env failed"
    eval "$out"
}
