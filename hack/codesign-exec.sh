#!/bin/sh
# go test -exec wrapper for macOS: sign the test binary with the
# virtualization entitlement, then run it. Virtualization.framework refuses
# unsigned processes, and go test builds a fresh binary every time.
#
#   go test -exec "$PWD/hack/codesign-exec.sh" ./vm/vz/...
#
# On other systems it only runs the binary, so the same command works in
# Linux CI.
set -eu

if [ "$#" -lt 1 ]; then
	echo "usage: $0 TEST-BINARY [ARGS...]" >&2
	exit 2
fi
bin=$1
shift

if [ "$(uname -s)" = Darwin ]; then
	root=$(cd "$(dirname "$0")/.." && pwd)
	entitlements="$root/deploy/vz.entitlements"
	if ! out=$(codesign -f --entitlements "$entitlements" -s - "$bin" 2>&1); then
		echo "codesign-exec: signing $bin with $entitlements failed:" >&2
		echo "$out" >&2
		exit 1
	fi
fi
exec "$bin" "$@"
