#!/usr/bin/env bash
# Self-test of the interop peers, no kvseal involved: every peer seals every
# value in every scope, peer_open.py must give back the exact bytes; wrong
# labels must fail; unsupported scopes must exit 3.
# Usage: bash tests/interop/selftest.sh   (PYTHON=... to pick the interpreter)
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
PY="${PYTHON:-python3}"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok()  { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }

openssl req -x509 -newkey rsa:4096 -nodes -keyout "$T/key8.pem" -out "$T/cert.pem" \
  -days 1 -subj "/CN=interop-selftest" >/dev/null 2>&1 || { echo "openssl failed" >&2; exit 1; }
openssl rsa -in "$T/key8.pem" -traditional -out "$T/key1.pem" >/dev/null 2>&1 || { echo "openssl rsa failed" >&2; exit 1; }

printf 'hunter2' > "$T/v_ascii"
: > "$T/v_empty"
printf 'pässwörd ✓ 日本語 🔐\n' > "$T/v_utf8"
head -c 1048576 /dev/urandom > "$T/v_bin1m"
"$PY" -c 'import sys; sys.stdout.write("€αβγ-0123456789\n" * 55189)' > "$T/v_text1m"  # ~1 MiB UTF-8

NS=team-a NAME=db-creds
label() { case $1 in strict) echo "$NS/$NAME";; namespace-wide) echo "$NS";; cluster-wide) echo "";; esac; }
wrong_label() { case $1 in strict) echo "$NS";; namespace-wide) echo "";; cluster-wide) echo "$NS/$NAME";; esac; }

for peer in kubesealpy aes-gcm-rsa-oaep linode-kubeseal-encrypt; do
  for scope in strict namespace-wide cluster-wide; do
    for v in v_ascii v_empty v_utf8 v_bin1m v_text1m; do
      id="$peer/$scope/$v"
      "$PY" "$HERE/peer_seal.py" --peer "$peer" --cert "$T/cert.pem" --scope "$scope" \
        --namespace "$NS" --name "$NAME" --value-file "$T/$v" > "$T/ct" 2> "$T/err"
      rc=$?
      if [ $rc -eq 3 ]; then
        # only the npm peer is allowed to refuse (non-namespace-wide scopes, binary values)
        if [ "$peer" = linode-kubeseal-encrypt ] && { [ "$scope" != namespace-wide ] || [ "$v" = v_bin1m ]; }; then
          ok; echo "unsupported (exit 3): $id: $(cat "$T/err")"
        else bad "$id refused: $(cat "$T/err")"; fi
        continue
      fi
      [ $rc -eq 0 ] || { bad "$id seal rc=$rc: $(cat "$T/err")"; continue; }
      for key in key1 key8; do
        if "$PY" "$HERE/peer_open.py" --key "$T/$key.pem" --label "$(label $scope)" \
             --ciphertext-file "$T/ct" > "$T/out" 2> "$T/err" && cmp -s "$T/out" "$T/$v"; then ok
        else bad "$id open with $key: $(cat "$T/err")"; fi
      done
      if "$PY" "$HERE/peer_open.py" --key "$T/key8.pem" --label "$(wrong_label $scope)" \
           --ciphertext-file "$T/ct" > /dev/null 2>&1; then bad "$id opened with wrong label"
      else ok; fi
    done
  done
done
# a corrupted ciphertext must fail
"$PY" "$HERE/peer_seal.py" --peer kubesealpy --cert "$T/cert.pem" --scope cluster-wide \
  --value-file "$T/v_ascii" | "$PY" -c 'import sys,base64; b=bytearray(base64.b64decode(sys.stdin.read())); b[-1]^=1; print(base64.b64encode(bytes(b)).decode())' > "$T/ct"
if "$PY" "$HERE/peer_open.py" --key "$T/key8.pem" --label "" --ciphertext-file "$T/ct" >/dev/null 2>&1
then bad "tampered ciphertext opened"; else ok; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
