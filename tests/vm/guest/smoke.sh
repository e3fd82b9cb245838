#!/bin/sh
# Smoke test run inside the guest (no meshready): the kernel boots, and the founding failure happens
# for real. Usage: smoke.sh [EXPECTED_RELEASE]  (default: the release the harness booted).
# Prints PASS/FAIL lines and "N passed, N failed".
expected=${1:-$MR_KERNEL_RELEASE}
passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); [ -n "$3" ] && printf '%s\n' "$3" | sed 's/^/    /'; }
pod() { unshare --net --mount sh -c 'mount -t tmpfs tmpfs /usr/lib/modules && exec "$@"' pod "$@"; }
rules=/meshready-vm/rules/sidecar-iptables/dns-uid-gid.v4.rules
fix="ip_tables iptable_nat iptable_raw xt_REDIRECT xt_owner xt_multiport xt_CT xt_tcpudp"

release=$(uname -r)
if [ "$release" = "$expected" ]; then pass smoke/uname; else fail smoke/uname "uname -r is $release, expected $expected"; fi
if [ -f "/lib/modules/$release/modules.dep" ]; then pass smoke/modules-dir; else fail smoke/modules-dir "no /lib/modules/$release/modules.dep"; fi

echo /nonexistent/modprobe > /proc/sys/kernel/modprobe
if grep -q '^ip_tables ' /proc/modules; then fail smoke/precondition "ip_tables already loaded"; else pass smoke/precondition; fi

out=$(pod iptables-legacy-restore < "$rules" 2>&1); rc=$?
if [ $rc -ne 0 ] && printf '%s' "$out" | grep -q "unable to initialize table 'nat'"; then
  pass smoke/founding-failure
else
  fail smoke/founding-failure "iptables-legacy-restore exited $rc without the expected error" "$out"
fi

# shellcheck disable=SC2086
out=$(modprobe -a $fix 2>&1); rc=$?
if [ $rc -eq 0 ]; then pass smoke/modprobe-fix; else fail smoke/modprobe-fix "modprobe exited $rc" "$out"; fi

out=$(pod iptables-legacy-restore < "$rules" 2>&1); rc=$?
if [ $rc -eq 0 ]; then pass smoke/fixed; else fail smoke/fixed "iptables-legacy-restore exited $rc" "$out"; fi

out=$(pod sh -c "iptables-legacy-restore < $rules && iptables-legacy-save -t nat" 2>&1)
if printf '%s' "$out" | grep -q -- '--to-ports 15001'; then pass smoke/rules-in-place; else fail smoke/rules-in-place "REDIRECT rule not listed" "$out"; fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
