#!/usr/bin/env bash
# Prove with snarkjs, for provingmarket's command backend (CommandBackend.snarkjs):
#   snarkjs-prove.sh WASM ZKEY INPUTS_JSON PROOF_JSON PUBLIC_JSON
# The witness comes from circom's wasm witness calculator; snarkjs and node are the
# project's own (package.json), so this runs offline.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
snarkjs="$here/../node_modules/.bin/snarkjs"
wasm="$1" zkey="$2" inputs="$3" proof="$4" public="$5"
witness="$(mktemp --suffix=.wtns)"
trap 'rm -f "$witness"' EXIT
node "$snarkjs" wtns calculate "$wasm" "$inputs" "$witness"
node "$snarkjs" groth16 prove "$zkey" "$witness" "$proof" "$public"
