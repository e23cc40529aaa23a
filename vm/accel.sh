#!/usr/bin/env bash
# vm/accel.sh — sourced by vm/run.sh: which QEMU accelerator boots the guest (KVM only when it
# proves it works here, else TCG) and how TCG is threaded. Uses run.sh's qemu, cache, mode and die.
# shellcheck shell=bash disable=SC2154 # run.sh's globals

# Does KVM really run a guest here? A 512-byte boot sector that writes "KVM" to the serial port and
# exits QEMU through isa-debug-exit must do so within 3 s. The answer is cached per host boot.
kvm_works() {
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
    local key probe img out
    key="$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)-$("$qemu" --version | head -n1 | tr -cd '0-9.')"
    probe="$cache/kvm-probe"
    if [ -f "$probe" ] && [ "$(head -n1 "$probe")" = "$key" ]; then
        [ "$(sed -n 2p "$probe")" = yes ]; return
    fi
    img="$cache/kvm-probe.img"
    {
        printf '\xba\xf8\x03\xb0K\xee\xb0V\xee\xb0M\xee\xb0\n\xee' # mov dx,0x3f8; out 'K','V','M','\n'
        printf '\xba\xf4\x00\xb0\x00\xee\xf4\xeb\xfd'             # out 0xf4 (isa-debug-exit); hlt
    } > "$img.code"
    { cat "$img.code"; head -c $((510 - $(stat -c %s "$img.code"))) /dev/zero; printf '\x55\xaa'; } > "$img"
    out="$(timeout -k 1 3 "$qemu" -nodefaults -display none -no-reboot -accel kvm -m 16 -serial stdio \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 -drive file="$img",format=raw,if=floppy \
        </dev/null 2>/dev/null || true)"
    if [ "$out" = KVM ] || [ "${out%$'\r'}" = KVM ]; then printf '%s\nyes\n' "$key" > "$probe"; return 0; fi
    printf '%s\nno\n' "$key" > "$probe"
    return 1
}

# QEMU accelerator arguments: VM_ACCEL forces, else KVM if it proves itself, else TCG.
# TCG threading (VM_TCG_THREAD=multi|single chooses): multi-threaded TCG can livelock the guest:
# the kernel live-patches its code (static keys flip when the first memory cgroup, cgroup BPF
# program or netfilter hook appears) while the other vCPU runs it, and both vCPUs were seen
# trapping on the patch site's int3 forever (a soft lockup, in CI and on a busy host). One TCG
# thread executes cross-modified code coherently. It runs the test suite ~2.4x slower, so tests
# boot multi-threaded and a retry after a failed guest is single-threaded (run_test); grading
# (as fast either way: 18 s vs 20 s of guest time, and a verdict must never hang on the
# emulator) and the bench (no retry; its figures were measured so) are single-threaded.
accel_args() {
    local accel="${VM_ACCEL:-}"
    if [ -z "$accel" ]; then
        if kvm_works; then accel=kvm; else accel=tcg; fi
    fi
    case "$accel" in
        kvm) echo "-accel kvm -cpu host" ;;
        tcg) echo "-accel tcg,thread=${VM_TCG_THREAD:-$(default_tcg_thread)} -cpu max" ;;
        *) die "VM_ACCEL must be kvm or tcg, not '$accel'" ;;
    esac
}

default_tcg_thread() { case "$mode" in grade | bench) echo single ;; *) echo multi ;; esac; }
