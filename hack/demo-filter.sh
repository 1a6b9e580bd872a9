#!/usr/bin/env bash
# Makes `go test -v` output of the host loop tests read as a demo: drops the
# file:line prefixes and keeps the commands, their outputs and the verdict.
set -o pipefail
sed -E -e 's/^    [a-z_]+\.go:[0-9]+: //' -e 's/^        //' -e '/^=== (RUN|CONT|PAUSE)/d'
