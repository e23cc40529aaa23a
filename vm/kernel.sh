#!/usr/bin/env bash
# vm/kernel.sh — provide the guest kernel and the modules the suite needs.
#
# Output (printed on stdout as shell assignments, also cached):
#   VM_KERNEL=<path of vmlinux (PVH ELF) or vmlinuz>   VM_MODULES=<dir holding lib/modules/<ver>, or empty>
#
# Sources, first match wins:
#   KERNEL=/path/to/vmlinuz [KERNEL_MODULES=/lib/modules/<ver>]   use that kernel as it is
#   Debian:  linux-image-cloud-amd64 → its versioned linux-image-<ver>-cloud-amd64 (apt-get download)
#   Ubuntu:  linux-image-virtual     → linux-image-<ver>-generic + linux-modules-<ver>-generic
# The package is unpacked into vm/cache/kernel/ (git-ignored) once and reused afterwards.
# Only the modules in WANTED (plus their dependencies) are kept, decompressed, with a fresh
# modules.dep so busybox modprobe can load them in the guest.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${VM_CACHE:-$here/cache}/kernel"

# What the suite needs that distribution kernels build as modules: overlay (container roots),
# veth + bridge (--network bridge), nftables/iptables NAT (MASQUERADE), loop (a block device the
# security tests try to reach from a container), tun for good measure, the virtio serial port the
# grader reports on (virtio_pci, virtio_console).
WANTED="overlay veth bridge loop tun virtio_pci virtio_console
  nf_tables nft_chain_nat nft_nat nft_masq nft_ct nft_compat nft_reject_inet nft_fib_inet
  ip_tables iptable_nat iptable_filter xt_MASQUERADE xt_comment xt_conntrack xt_addrtype
  ${VM_EXTRA_MODULES:-}"

log() { echo "kernel.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Use an explicitly given kernel (and optional modules tree) untouched.
use_given_kernel() {
    [ -r "$KERNEL" ] || die "KERNEL=$KERNEL is not a readable file"
    local mods=""
    if [ -n "${KERNEL_MODULES:-}" ]; then
        [ -f "$KERNEL_MODULES/modules.dep" ] || die "KERNEL_MODULES=$KERNEL_MODULES has no modules.dep"
        mods="$cache/given"
        rm -rf "$mods" && mkdir -p "$mods/lib/modules"
        cp -a "$KERNEL_MODULES" "$mods/lib/modules/"
    else
        log "KERNEL given without KERNEL_MODULES: overlay, veth, bridge and NAT must be built in"
    fi
    emit "$(readlink -f "$KERNEL")" "$mods"
}

emit() { printf 'VM_KERNEL=%q\nVM_MODULES=%q\n' "$1" "$2"; }

# The versioned kernel package behind a distribution meta-package (e.g. linux-image-6.1.0-56-cloud-amd64).
# apt-cache takes ~0.8 s, at every boot: its answer is kept in $cache/<meta>.resolved until apt's
# package lists change (apt-get update).
resolve_image_package() {
    local memo="$cache/$1.resolved" lists=/var/lib/apt/lists pkg
    if [ -s "$memo" ] && [ -d "$lists" ] && [ -z "$(find "$lists" -maxdepth 1 -newer "$memo" -print -quit)" ]; then
        cat "$memo"
        return
    fi
    pkg="$(apt-cache depends "$1" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
    if [ -n "$pkg" ]; then mkdir -p "$cache" && echo "$pkg" > "$memo"; fi
    echo "$pkg"
}

# Pick the meta-package of this distribution: Debian's cloud kernel, Ubuntu's virtual kernel.
pick_meta_package() {
    local id=""
    [ -r /etc/os-release ] && id="$(. /etc/os-release && echo "${ID:-} ${ID_LIKE:-}")"
    case "$id" in
        *ubuntu*) echo linux-image-virtual ;;
        *debian*) echo linux-image-cloud-amd64 ;;
        *) echo "" ;;
    esac
}

no_apt_help() {
    die "no apt here. Give a kernel yourself: KERNEL=/boot/vmlinuz-<ver> KERNEL_MODULES=/lib/modules/<ver> make vm-test
(any x86_64 kernel >= 5.x with cgroup v2, overlayfs, veth, bridge and nftables NAT, built in or as modules)"
}

# apt-get download into $1 the packages named in the rest of the arguments.
download() {
    local dir="$1"; shift
    mkdir -p "$dir"
    # apt's sandbox user cannot write into root-owned dirs; downloading as root is fine here.
    (cd "$dir" && apt-get download -o APT::Sandbox::User=root "$@" >&2) ||
        die "apt-get download $* failed (run 'apt-get update' first?)"
}

# Copy module $1 (path relative to the modules dir) and its dependencies from $2 into $3.
copy_with_deps() {
    local rel="$1" src="$2" dst="$3" dep
    [ -e "$dst/$rel" ] && return 0
    mkdir -p "$dst/$(dirname "$rel")"
    cp "$src/$rel" "$dst/$rel"
    for dep in $(awk -v m="$rel:" '$1 == m { $1 = ""; print }' "$src/modules.dep"); do
        copy_with_deps "$dep" "$src" "$dst"
    done
}

# Modules may be shipped compressed (Ubuntu: .zst, newer Debian: .xz); busybox insmod needs plain .ko.
decompress_modules() {
    local f
    while IFS= read -r f; do
        case "$f" in
            *.ko.zst) zstd -q -d --rm "$f" -o "${f%.zst}" ;;
            *.ko.xz) xz -d "$f" ;;
            *.ko.gz) gzip -d "$f" ;;
        esac
    done < <(find "$1" -name '*.ko.*')
}

# Drop the appended signature of module $1: verifying RSA signatures under TCG costs ~50 ms a
# module. The kernel (MODULE_SIG without FORCE) loads unsigned modules, noting a taint once.
strip_signature() {
    local f="$1" magic='~Module signature appended~' size siglen
    [ "$(tail -c 28 "$f" | head -c 27)" = "$magic" ] || return 0
    size="$(stat -c %s "$f")"
    # struct module_signature (12 bytes) precedes the magic; its last 4 bytes: sig_len, big-endian.
    siglen="$(od -An -tu1 -j $((size - 32)) -N4 "$f" | awk '{ print (($1 * 256 + $2) * 256 + $3) * 256 + $4 }')"
    truncate -s $((size - 28 - 12 - siglen)) "$f"
}

# Unpack the ELF vmlinux $2 from bzImage $1. QEMU boots an ELF with a PVH note directly: no
# firmware real-mode setup and no in-guest decompression, about a second less under TCG.
extract_vmlinux() {
    local magic tool off
    for magic in '\x02\x21\x4c\x18:lz4 -dc' '\x28\xb5\x2f\xfd:zstd -dcq' '\x1f\x8b\x08:gzip -dc' '\xfd\x37\x7a\x58\x5a\x00:xz -dcq'; do
        tool="${magic#*:}"
        command -v "${tool%% *}" >/dev/null || continue
        for off in $(LC_ALL=C grep -obUaP "${magic%%:*}" "$1" | cut -d: -f1 | head -n 3); do
            tail -c +$((off + 1)) "$1" | $tool > "$2" 2>/dev/null || true
            if [ "$(head -c 4 "$2" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then return 0; fi
        done
    done
    rm -f "$2"
    return 1
}

# Run depmod (kmod's, else busybox's) for the unpacked tree rooted at $1, kernel version $2.
run_depmod() {
    if command -v depmod >/dev/null; then depmod -b "$1" "$2"
    elif command -v busybox >/dev/null; then busybox depmod -b "$1" "$2"
    else die "need depmod (kmod) or busybox to index the kernel modules"
    fi
}

# Unpack the downloaded .debs and keep vmlinuz + the wanted modules under $cache/<pkg>/.
extract_kernel() {
    local pkg="$1" debs="$2" out="$cache/$pkg" raw="$cache/$pkg.raw" ver full m rel
    rm -rf "$raw" "$out" && mkdir -p "$raw" "$out"
    for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$raw"; done
    ver="$(ls "$raw/lib/modules" 2>/dev/null | head -n1)"
    [ -n "$ver" ] || ver="$(ls "$raw/usr/lib/modules" | head -n1)"
    full="$raw/lib/modules/$ver"; [ -d "$full" ] || full="$raw/usr/lib/modules/$ver"
    decompress_modules "$full"
    run_depmod "${full%/lib/modules/$ver}" "$ver"
    mkdir -p "$out/modules/lib/modules/$ver"
    for m in $WANTED; do
        rel="$(awk -F: -v m="$m" '{ n = $1; sub(".*/", "", n); sub("\\.ko$", "", n); gsub("-", "_", n) }
                                  n == m { print $1; exit }' "$full/modules.dep")"
        if [ -n "$rel" ]; then copy_with_deps "$rel" "$full" "$out/modules/lib/modules/$ver"
        elif ! grep -q "/$m.ko" "$full/modules.builtin" 2>/dev/null; then log "note: module $m not in $pkg"
        fi
    done
    if [ "${VM_KEEP_MODULE_SIGNATURES:-0}" != 1 ]; then
        find "$out/modules" -name '*.ko' | while IFS= read -r m; do strip_signature "$m"; done
    fi
    cp "$full"/modules.builtin* "$full/modules.order" "$out/modules/lib/modules/$ver/" 2>/dev/null || true
    run_depmod "$out/modules" "$ver"
    cp "$raw"/boot/vmlinuz-* "$out/vmlinuz"
    if grep -q '^CONFIG_PVH=y' "$raw"/boot/config-* 2>/dev/null; then
        extract_vmlinux "$out/vmlinuz" "$out/vmlinux" || log "note: no vmlinux in the bzImage; booting vmlinuz"
    fi
    echo "$ver" > "$out/version"
    rm -rf "$raw"
    log "kernel $ver with $(find "$out/modules" -name '*.ko' | wc -l) modules in $out"
}

main() {
    if [ -n "${KERNEL:-}" ]; then use_given_kernel; return; fi
    command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || no_apt_help
    local meta pkg stamp
    meta="${VM_KERNEL_PACKAGE:-$(pick_meta_package)}"
    [ -n "$meta" ] || die "unknown distribution: set VM_KERNEL_PACKAGE (e.g. linux-image-cloud-amd64) or KERNEL=..."
    pkg="$(resolve_image_package "$meta")"
    [ -n "$pkg" ] || die "apt knows no versioned dependency of $meta (run 'apt-get update'?)"
    # Re-extract when this script changed (module list, stripping); the .debs stay cached.
    stamp="$(sha256sum "$0" | cut -c1-16)"
    if [ ! -s "$cache/$pkg/vmlinuz" ] || [ "$(cat "$cache/$pkg/stamp" 2>/dev/null)" != "$stamp" ]; then
        if ! ls "$cache/$pkg.debs/"*.deb >/dev/null 2>&1; then
            log "fetching $pkg (dependency of $meta)"
            local extra=() modpkg="linux-modules-${pkg#linux-image-}"
            # Ubuntu splits modules out of the image package.
            if apt-cache show "$modpkg" >/dev/null 2>&1; then extra+=("$modpkg"); fi
            download "$cache/$pkg.debs" "$pkg" "${extra[@]}"
        fi
        extract_kernel "$pkg" "$cache/$pkg.debs"
        echo "$stamp" > "$cache/$pkg/stamp"
    fi
    if [ -s "$cache/$pkg/vmlinux" ] && [ "${VM_PVH:-1}" = 1 ]; then
        emit "$cache/$pkg/vmlinux" "$cache/$pkg/modules"
    else
        emit "$cache/$pkg/vmlinuz" "$cache/$pkg/modules"
    fi
}

main "$@"
