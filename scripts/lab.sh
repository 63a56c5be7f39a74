#!/usr/bin/env bash
# Test hosts for the fleet on one machine: systemd-nspawn containers on
# overlayfs over a cached debootstrap root file system, each in its own
# network namespace, joined by a bridge in a controller namespace. See
# docs/fleet.md ("The lab") and ../shared/LAB.md.
#
#   scripts/lab.sh rootfs RELEASE [ARCH]  build (or reuse) the cached base tarball
#   scripts/lab.sh up NAME:RELEASE:IP[:ARCH] ...
#                                         create and boot hosts (and the bridge)
#   scripts/lab.sh down                   stop every host, remove everything
#   scripts/lab.sh status                 what is running
#   scripts/lab.sh ctl CMD...             run CMD in the controller namespace
#
# Bases are unpacked under .cache/lab/base. Everything else lives in
# $PIWHEELS_LAB_DIR (default /run/piwheels-lab): the
# overlays, the ssh key and ssh_config the controller uses, the pids.
# Hosts have addresses in $PIWHEELS_LAB_NET.0/24 (default 10.77.0); the
# controller side of the bridge is .1. They reach nothing else.
# ARCH is a Debian architecture (default: this machine's). A foreign one (armhf,
# arm64) runs under qemu-user-static through binfmt_misc with the F flag, so the
# emulator is found from inside the container: about 13x slower than native.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAB="${PIWHEELS_LAB_DIR:-/run/piwheels-lab}"
NET="${PIWHEELS_LAB_NET:-10.77.0}"
CACHE="${PIWHEELS_LAB_CACHE:-$ROOT/.cache/lab}"
CTL="${PIWHEELS_LAB_CTL:-pwlab-ctl}"
BR=pwlab-br0
HOST_ARCH="$(dpkg --print-architecture)"
PREFIX=pwlab-

# Every package a role installs must be in the base: the hosts have no network.
BASE_PACKAGES="python3,python3-apt,openssh-server,openssh-client,sudo,iproute2,procps,systemd,systemd-sysv,dbus,ca-certificates,acl,python3-venv,python3-dev,gcc,libc6-dev,sshfs,fuse3,libpq5,less,netcat-openbsd"
MASTER_PACKAGES="postgresql,nginx"
# The master is a native bookworm host; emulated ones are builders and clients.
packages_for() {
    case "$1:${2:-$HOST_ARCH}" in
        "bookworm:$HOST_ARCH") echo "$BASE_PACKAGES,$MASTER_PACKAGES" ;;
        *) echo "$BASE_PACKAGES" ;;
    esac
}

log() { echo "lab: $*" >&2; }
die() { echo "lab: $*" >&2; exit 1; }

need() {
    local missing=()
    command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v nc >/dev/null || missing+=(netcat-openbsd)
    command -v ip >/dev/null || missing+=(iproute2)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    fi
}

# -- root file systems ---------------------------------------------------------

tarball_for() {
    local release="$1" arch="$2" key
    key="$(printf '%s\n' "$release" "$(packages_for "$release" "$arch")" "v2" | sha256sum | cut -c1-12)"
    if [ "$arch" = "$HOST_ARCH" ]; then
        echo "$CACHE/rootfs-$release-$key.tar.zst"
    else
        echo "$CACHE/rootfs-$release-$arch-$key.tar.zst"
    fi
}

qemu_for() {
    case "$1" in
        armhf|armel) echo arm ;;
        arm64) echo aarch64 ;;
        *) die "no emulator known for architecture $1" ;;
    esac
}

# A foreign architecture's binaries run through qemu-user-static; its binfmt
# entry needs the F flag (Debian's has it) so that containers find qemu.
need_emulation() {
    local qemu
    qemu="$(qemu_for "$1")"
    if ! command -v "qemu-$qemu-static" >/dev/null || ! command -v update-binfmts >/dev/null; then
        log "installing qemu-user-static binfmt-support"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            qemu-user-static binfmt-support >/dev/null
    fi
    [ -e /proc/sys/fs/binfmt_misc/register ] \
        || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable "qemu-$qemu" >/dev/null 2>&1 || true
    grep -q '^flags:.*F' "/proc/sys/fs/binfmt_misc/qemu-$qemu" 2>/dev/null \
        || die "binfmt_misc has no qemu-$qemu entry with the F flag: cannot run $1 hosts"
}

cmd_rootfs() {
    local release="$1" arch="${2:-$HOST_ARCH}" tarball base foreign=()
    need
    [ "$arch" = "$HOST_ARCH" ] || { need_emulation "$arch"; foreign=(--arch="$arch" --foreign); }
    tarball="$(tarball_for "$release" "$arch")"
    base="$CACHE/base/$release"
    [ "$arch" = "$HOST_ARCH" ] || base="$CACHE/base/$release-$arch"
    if [ ! -f "$tarball" ]; then
        mkdir -p "$CACHE"
        local tmp
        tmp="$(mktemp -d "$CACHE/debootstrap-$release.XXXX")"
        log "debootstrap $release $arch (cached as $(basename "$tarball"))"
        local mirror
        mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
        mirror="${mirror:-$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)}"
        if ! debootstrap "${foreign[@]}" --variant=minbase --include="$(packages_for "$release" "$arch")" \
                "$release" "$tmp/root" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
            tail -20 "$tmp/debootstrap.log" >&2
            rm -rf "$tmp"
            die "debootstrap $release $arch failed"
        fi
        # A foreign base is unpacked here and configured by its own binaries, emulated.
        if [ ${#foreign[@]} -gt 0 ] && ! chroot "$tmp/root" /debootstrap/debootstrap \
                --second-stage >>"$tmp/debootstrap.log" 2>&1; then
            tail -20 "$tmp/debootstrap.log" >&2
            rm -rf "$tmp"
            die "debootstrap $release $arch (second stage, emulated) failed"
        fi
        # What every host needs and no role should have to do.
        chroot "$tmp/root" systemctl enable ssh systemd-networkd >/dev/null 2>&1 || true
        rm -f "$tmp/root/etc/ssh/ssh_host_"*  # each host makes its own (ssh.service keygen)
        rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"*
        echo "$release" >"$tmp/root/etc/piwheels-lab-release"
        tar -C "$tmp/root" --zstd -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$tmp"
    fi
    if [ ! -f "$base/.complete-$(basename "$tarball")" ]; then
        rm -rf "$base"
        mkdir -p "$base"
        tar -C "$base" --zstd -xf "$tarball"
        touch "$base/.complete-$(basename "$tarball")"
    fi
    echo "$base"
}

# -- network -------------------------------------------------------------------

ensure_ctl() {
    if ! ip netns list | grep -qw "$CTL"; then
        ip netns add "$CTL"
        ip -n "$CTL" link set lo up
        ip -n "$CTL" link add "$BR" type bridge
        ip -n "$CTL" addr add "$NET.1/24" dev "$BR"
        ip -n "$CTL" link set "$BR" up
    fi
}

# -- hosts ---------------------------------------------------------------------

host_up() {
    local name="$1" release="$2" addr="$3" arch="${4:-$HOST_ARCH}" base up ns="$PREFIX$1"
    base="$(cmd_rootfs "$release" "$arch")"
    up="$LAB/hosts/$name"
    [ -f "$up/pid" ] && kill -0 "$(cat "$up/pid")" 2>/dev/null && { log "$name is up"; return; }
    mkdir -p "$up/upper" "$up/work" "$up/merged"
    mount -t overlay overlay -o "lowerdir=$base,upperdir=$up/upper,workdir=$up/work" "$up/merged"
    echo "$up/merged" >"$up/mounted"
    local m="$up/merged"
    echo "$name" >"$m/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$name" >"$m/etc/hosts"
    mkdir -p "$m/root/.ssh" "$m/etc/systemd/network" "$m/etc/ssh"
    [ -f "$m/etc/ssh/ssh_host_ed25519_key" ] || ssh-keygen -q -A -f "$m" >/dev/null
    chmod 700 "$m/root/.ssh"
    cp "$LAB/id_ed25519.pub" "$m/root/.ssh/authorized_keys"
    chmod 600 "$m/root/.ssh/authorized_keys"
    if [ "$arch" = "$HOST_ARCH" ]; then
        cat >"$m/etc/systemd/network/10-lab.network" <<EOF
[Match]
Name=host0
[Network]
Address=$addr/24
Gateway=$NET.1
LinkLocalAddressing=no
EOF
    else
        # systemd-networkd cannot run under qemu-user ("Could not setup manager:
        # Protocol not supported": a netlink family it lacks); the address is set
        # from outside below instead.
        ln -sf /dev/null "$m/etc/systemd/system/systemd-networkd.service"
    fi
    # The network namespace and its veth into the bridge.
    ip netns list | grep -qw "$ns" || ip netns add "$ns"
    echo "$ns" >"$up/netns"
    if ! ip -n "$CTL" link show "v-$name" >/dev/null 2>&1; then
        ip link add "v-$name" type veth peer name host0
        ip link set host0 netns "$ns"
        ip link set "v-$name" netns "$CTL"
        ip -n "$CTL" link set "v-$name" master "$BR" up
    fi
    ip -n "$ns" link set lo up
    if [ "$arch" != "$HOST_ARCH" ]; then
        ip -n "$ns" addr replace "$addr/24" dev host0
        ip -n "$ns" link set host0 up
        ip -n "$ns" route replace default via "$NET.1"
    fi
    log "booting $name ($release $arch, $addr)"
    setsid systemd-nspawn -q -D "$m" -b -M "$PREFIX$name" --register=no --keep-unit \
        --network-namespace-path="/run/netns/$ns" --bind=/dev/fuse --console=pipe \
        --capability=CAP_NET_ADMIN </dev/null >"$up/console.log" 2>&1 &
    echo $! >"$up/pid"
}

write_ssh_config() {
    local f="$LAB/ssh_config"
    {
        echo "Host *"
        echo "    User root"
        echo "    IdentityFile $LAB/id_ed25519"
        echo "    IdentitiesOnly yes"
        echo "    StrictHostKeyChecking no"
        echo "    UserKnownHostsFile /dev/null"
        echo "    LogLevel ERROR"
        echo "    ConnectTimeout 10"
        echo "    ProxyCommand ip netns exec $CTL nc %h %p"
    } >"$f.tmp"
    mv "$f.tmp" "$f"
}

wait_ssh() {
    local addr="$1" seconds="${2:-90}" i
    for i in $(seq 1 "$seconds"); do
        if ip netns exec "$CTL" nc -z -w 1 "$addr" 22 2>/dev/null \
                && ssh -F "$LAB/ssh_config" -o ConnectTimeout=5 "$addr" true 2>/dev/null; then
            return 0
        fi
        sleep 1
    done
    return 1
}

cmd_up() {
    need
    mkdir -p "$LAB"
    [ -f "$LAB/id_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -f "$LAB/id_ed25519" -C piwheels-lab
    write_ssh_config
    ensure_ctl
    local spec name release addr arch
    for spec in "$@"; do
        IFS=: read -r name release addr arch <<<"$spec"
        [[ "$addr" == *.* ]] || addr="$NET.$addr"
        host_up "$name" "$release" "$addr" "${arch:-$HOST_ARCH}"
        echo "$addr" >"$LAB/hosts/$name/addr"
    done
    for spec in "$@"; do
        IFS=: read -r name release addr arch <<<"$spec"
        addr="$(cat "$LAB/hosts/$name/addr")"
        # An emulated host boots about 13x slower.
        wait_ssh "$addr" "$([ "${arch:-$HOST_ARCH}" = "$HOST_ARCH" ] && echo 90 || echo 600)" || { tail -30 "$LAB/hosts/$name/console.log" >&2; die "$name ($addr): no ssh"; }
        log "$name is up at $addr"
    done
}

host_down() {
    local up="$1" name pid
    name="$(basename "$up")"
    if [ -f "$up/pid" ]; then
        pid="$(cat "$up/pid")"
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$up/pid"
    fi
    if [ -f "$up/mounted" ]; then
        # sshfs/fuse mounts made inside the host go with it; the overlay is ours.
        umount "$up/merged" 2>/dev/null || umount -l "$up/merged" 2>/dev/null || true
        rm -f "$up/mounted"
    fi
    if [ -f "$up/netns" ]; then
        ip netns del "$(cat "$up/netns")" 2>/dev/null || true
    fi
    ip -n "$CTL" link del "v-$name" 2>/dev/null || true
    rm -rf "/run/systemd/nspawn/propagate/$PREFIX$name"
    rm -rf "$up"
}

cmd_down() {
    # Let Ansible's ssh ControlPersist masters for the lab exit first.
    pkill_masters
    local up
    for up in "$LAB"/hosts/*/; do
        [ -d "$up" ] && host_down "${up%/}"
    done
    ip netns del "$CTL" 2>/dev/null || true
    rm -rf "$LAB/hosts"
    log "down"
}

pkill_masters() {
    # Ansible's ssh ControlPersist masters for the lab (their sockets are in
    # $LAB/cp when ANSIBLE_SSH_CONTROL_PATH_DIR points there): ask each to exit.
    local sock
    for sock in "$LAB"/cp/*; do
        [ -S "$sock" ] && ssh -o ControlPath="$sock" -O exit lab >/dev/null 2>&1 || true
    done
}

cmd_status() {
    local up
    for up in "$LAB"/hosts/*/; do
        [ -d "$up" ] || continue
        local pid state=down
        pid="$(cat "$up/pid" 2>/dev/null || echo)"
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && state=running
        echo "$(basename "$up") $(cat "$up/addr" 2>/dev/null) $state"
    done
}

case "${1:-}" in
    rootfs) shift; cmd_rootfs "$@" ;;
    up) shift; cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    ctl) shift; exec ip netns exec "$CTL" "$@" ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
esac
