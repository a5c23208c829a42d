# Sourced by the test tool installers (tests/kinesis/setup.sh, tests/firehose/setup.sh): sets
# `repo` (the repository root, and changes into it) and `target_dir` (CARGO_TARGET_DIR made
# absolute, else cargo's own target directory), and creates the latter.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
if [[ -n "${CARGO_TARGET_DIR:-}" && "${CARGO_TARGET_DIR}" != /* ]]; then
    CARGO_TARGET_DIR="$repo/$CARGO_TARGET_DIR"
fi
target_dir="${CARGO_TARGET_DIR:-}"
if [[ -z "$target_dir" ]]; then
    metadata="$(cargo metadata --format-version 1 --no-deps)"
    target_dir="$(sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' <<<"$metadata")"
    [[ -n "$target_dir" ]] || target_dir="$repo/target"
fi
mkdir -p "$target_dir"
