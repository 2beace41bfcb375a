#!/usr/bin/env bash
# Compile each peer's requirements.in into its requirements.txt: every package pinned, for
# python 3.11. The packages the project also uses keep uv.lock's versions wherever the peer
# allows them (uv prefers the versions already in the output file), so that installing a peer
# takes them from the uv cache the project's install filled.
set -euo pipefail
cd "$(dirname "$0")/../.."
uv=.venv/bin/uv
for folder in benchmarks/peers/*/; do
  pins="${folder}requirements.txt"
  "$uv" export --frozen --no-hashes --no-emit-project --all-groups --quiet \
    | grep -v '^ *#' | sed 's/ *;.*//' >"$pins"
  UV_CUSTOM_COMPILE_COMMAND="benchmarks/peers/compile.sh" "$uv" pip compile --quiet \
    "${folder}requirements.in" --python-version 3.11 --annotation-style line -o "$pins"
done
