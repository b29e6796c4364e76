#!/usr/bin/env bash
# Installs what building, the lab and the tests need: the Debian packages
# listed in scripts/apt/*.list (one package a line, '#' comments) and the Go
# modules of go.mod. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t want < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' scripts/apt/*.list | tr -d ' \t' | sort -u)
missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	echo "deps: installing ${missing[*]}"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
go mod download
