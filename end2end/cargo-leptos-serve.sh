#!/usr/bin/env bash
# `cargo leptos serve --release -- ARGS`, for the journeys of OFFLOAD_E2E_MODE=leptos.
# cargo-leptos starts the server in a process group of its own, so Playwright's stop (SIGTERM
# to this script's group) would leave the server running: pass the stop on to it.
set -u
cargo leptos serve --release -- "$@" &
leptos=$!
stop() {
  pkill -TERM -f -- "release/offload $*" 2>/dev/null
  while pgrep -f -- "release/offload $*" > /dev/null; do sleep 0.1; done
  kill -TERM "$leptos" 2>/dev/null
  wait "$leptos" 2>/dev/null
  exit 0
}
trap stop TERM INT
wait "$leptos"
