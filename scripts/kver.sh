#!/usr/bin/env bash
# scripts/kver.sh - print the kernel release to build and boot against.
#
# Picks the newest release X that has both a bootable image (/boot/vmlinuz-X)
# and headers (/usr/src/linux-headers-X or /lib/modules/X/build), so the
# module we build loads into the kernel we boot. MORSEL_KVER overrides
# (it is still checked).
set -euo pipefail

has_pair() {
    [[ -f "/boot/vmlinuz-$1" ]] &&
        { [[ -d "/usr/src/linux-headers-$1" ]] || [[ -d "/lib/modules/$1/build" ]]; }
}

if [[ -n "${MORSEL_KVER:-}" ]]; then
    if has_pair "$MORSEL_KVER"; then
        echo "$MORSEL_KVER"
        exit 0
    fi
    echo "kver.sh: MORSEL_KVER=$MORSEL_KVER lacks /boot/vmlinuz-$MORSEL_KVER or its headers" >&2
    exit 1
fi

best=""
shopt -s nullglob
for img in /boot/vmlinuz-*; do
    x=${img#/boot/vmlinuz-}
    has_pair "$x" || continue
    # newest by version order
    if [[ -z "$best" ]] || [[ "$(printf '%s\n%s\n' "$best" "$x" | sort -V | tail -n1)" == "$x" ]]; then
        best=$x
    fi
done

if [[ -z "$best" ]]; then
    echo "kver.sh: no kernel with both /boot/vmlinuz-X and headers; run scripts/deps.sh" >&2
    exit 1
fi
echo "$best"
