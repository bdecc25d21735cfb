#!/usr/bin/env bash
# Prove with snarkjs, for provingmarket's command backend (CommandBackend.snarkjs):
#   snarkjs-prove.sh WASM ZKEY INPUTS_JSON PROOF_JSON PUBLIC_JSON [groth16|plonk]
# The last argument is the circuit's proving system (the zkey's), groth16 if not given.
# The witness comes from circom's wasm witness calculator. snarkjs is $SNARKJS if set, else
# the checkout's own (package.json, so this runs offline), else the one on PATH (an
# installed package: npm install -g snarkjs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
checkout="$here/../../../node_modules/.bin/snarkjs"
snarkjs="${SNARKJS:-}"
if [ -z "$snarkjs" ] && [ -e "$checkout" ]; then snarkjs="$checkout"; fi
snarkjs="${snarkjs:-$(command -v snarkjs || true)}"
if [ -z "$snarkjs" ]; then
  echo "snarkjs-prove.sh: snarkjs not found (set SNARKJS, or npm install snarkjs)" >&2
  exit 127
fi
wasm="$1" zkey="$2" inputs="$3" proof="$4" public="$5" system="${6:-groth16}"
case "$system" in
  groth16 | plonk) ;;
  *)
    echo "snarkjs-prove.sh: unknown proving system '$system' (groth16 or plonk)" >&2
    exit 2
    ;;
esac
witness="$(mktemp --suffix=.wtns)"
trap 'rm -f "$witness"' EXIT
node "$snarkjs" wtns calculate "$wasm" "$inputs" "$witness"
node "$snarkjs" "$system" prove "$zkey" "$witness" "$proof" "$public"
