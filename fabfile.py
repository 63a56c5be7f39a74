"""Fabric 3 tasks for day-to-day operation of a piwheels fleet.

Hosts come from the same Ansible inventory the playbooks use, read with
``ansible-inventory -i INVENTORY --list`` (any inventory Ansible reads: a
directory, a YAML or INI file, a plugin), so there is one list of machines.
Examples:

    fab status                          what the farm is doing (on the master)
    fab sync [--names numpy,Pillow]     sync now
    fab wave [--batch 10]               a build wave on every builder in parallel
    fab builders                        builder services and store mounts
    fab logs [--unit index] [--lines 50] [--host pi01]
    fab rebuild --package numpy --version 2.1.0 [--target cp313-linux_aarch64]
    fab skip --package bad --version 1.0 [--note "hangs"]
    fab restart --role builders

Options for every task: --inventory DIR (default $PIWHEELS_INVENTORY or
inventory/example) and --ssh-config FILE (default $PIWHEELS_SSH_CONFIG; the
lab's is /run/piwheels-lab/ssh_config). Fabric connects as root, like the
playbooks.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fabric import Config, Connection, task

ROOT = Path(__file__).resolve().parent
CONFIG = "/etc/piwheels/piwheels.toml"
VENV = "/opt/piwheels/venv"


# -- the inventory ---------------------------------------------------------------


def _ansible_inventory() -> str:
    """The ansible-inventory next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "ansible-inventory"
    return str(beside) if beside.exists() else (shutil.which("ansible-inventory")
                                               or "ansible-inventory")


@functools.cache
def _inventory(path: str | None) -> dict:
    """``ansible-inventory -i INVENTORY --list``: what the playbooks see, as JSON."""
    source = path or os.environ.get("PIWHEELS_INVENTORY") or str(ROOT / "inventory" / "example")
    proc = subprocess.run([_ansible_inventory(), "-i", source, "--list"], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"fab: ansible-inventory -i {source} failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout)


def hosts_of(group: str, inventory: str | None = None) -> dict[str, str]:
    """{inventory name: address (ansible_host, else the name)} of a group, children included,
    in inventory order."""
    data = _inventory(inventory)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    found: dict[str, str] = {}

    def walk(name: str) -> None:
        node = data.get(name) or {}
        for host in node.get("hosts", []):
            found.setdefault(host, str((hostvars.get(host) or {}).get("ansible_host", host)))
        for child in node.get("children", []):
            walk(child)

    walk(group)
    return found


def _connect(address: str, ssh_config: str | None) -> Connection:
    path = ssh_config or os.environ.get("PIWHEELS_SSH_CONFIG")
    config = Config(runtime_ssh_path=path) if path else Config()
    return Connection(address, user="root", config=config)


def _master(inventory, ssh_config) -> Connection:
    masters = hosts_of("master", inventory)
    if not masters:
        raise SystemExit("fab: the inventory has no master")
    return _connect(next(iter(masters.values())), ssh_config)


def _piwheels(c: Connection, args: str, hide: bool = False, warn: bool = False):
    return c.run(f"runuser -u piwheels -- env PIWHEELS_CONFIG={CONFIG} {VENV}/bin/piwheels "
                 f"{args}", hide=hide, warn=warn, pty=False)


def _admin(c: Connection, action: str, params: dict, user: str = "piwheels") -> dict:
    """One request to piwheels_build.admin (what the Ansible modules use)."""
    request = shlex.quote(json.dumps({"action": action, "params": params}))
    out = c.run(f"echo {request} | runuser -u {user} -- {VENV}/bin/python -m "
                "piwheels_build.admin", hide=True, warn=True)
    answer = json.loads(out.stdout or "{}")
    if answer.get("failed"):
        raise SystemExit(f"fab: {answer.get('msg')}")
    return answer


def _parallel(group: str, inventory, ssh_config, fn) -> dict[str, object]:
    hosts = hosts_of(group, inventory)
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        futures = {name: pool.submit(fn, name, _connect(addr, ssh_config))
                   for name, addr in hosts.items()}
    return {name: f.result() for name, f in futures.items()}


# -- tasks ---------------------------------------------------------------------------


@task
def status(c, inventory=None, ssh_config=None, json_=False):
    """What the farm is doing (piwheels status on the master)."""
    _piwheels(_master(inventory, ssh_config), "status --json" if json_ else "status")


@task
def sync(c, names="", inventory=None, ssh_config=None):
    """Sync with the upstream now: everything changed, or --names a,b,c."""
    _piwheels(_master(inventory, ssh_config), "sync " + " ".join(
        shlex.quote(n) for n in names.split(",") if n))


@task
def queue(c, inventory=None, ssh_config=None):
    """Refresh the queue and show it per ABI."""
    _piwheels(_master(inventory, ssh_config), "queue")


@task
def wave(c, batch=10, idle=30, inventory=None, ssh_config=None):
    """A build wave: each builder builds --batch N in parallel (services paused); a summary."""
    def one(name: str, conn: Connection) -> dict:
        conn.run("systemctl stop piwheels-builder.service", hide=True)
        try:
            return _admin(conn, "build", {"config": CONFIG, "batch": int(batch),
                                          "idle_timeout": float(idle)})
        finally:
            conn.run("systemctl start piwheels-builder.service", hide=True, warn=True)

    _piwheels(_master(inventory, ssh_config), "sync", hide=True, warn=True)
    results = _parallel("builders", inventory, ssh_config, one)
    for name, r in sorted(results.items()):
        print(f"{name}: {r['builds']} builds in {r['elapsed']}s {r['by_status']}")
        for f in r.get("failed_builds", []):
            print(f"  {f['line']}")
    built = sorted(w for r in results.values() for w in r["built"])
    print(f"built {len(built)} wheels:", *built, sep="\n  ")


@task
def builders(c, inventory=None, ssh_config=None):
    """Each builder's service state, store mount and interpreters."""
    def one(name: str, conn: Connection) -> str:
        state = conn.run("systemctl is-active piwheels-builder.service", hide=True,
                         warn=True).stdout.strip()
        mount = conn.run("findmnt -n -o SOURCE /srv/piwheels/www", hide=True,
                         warn=True).stdout.strip() or "NOT MOUNTED"
        pys = conn.run("ls /opt/piwheels/pythons", hide=True, warn=True).stdout.split()
        return f"{name}: builder {state}, store {mount}, pythons {' '.join(pys)}"

    for line in _parallel("builders", inventory, ssh_config, one).values():
        print(line)


@task
def logs(c, unit="builder", lines=50, host=None, inventory=None, ssh_config=None):
    """The last --lines of a unit's journal (builder, index, sync, nginx, postgresql)."""
    units = {"builder": "piwheels-builder", "index": "piwheels-index", "sync": "piwheels-sync"}
    name = units.get(unit, unit)
    group = "builders" if unit == "builder" else "master"
    targets = hosts_of(group, inventory)
    if host:
        everything = hosts_of("all", inventory)
        targets = {host: everything.get(host, host)}
    for hname, addr in targets.items():
        print(f"== {hname}: {name}")
        _connect(addr, ssh_config).run(f"journalctl -u {shlex.quote(name)} -n {int(lines)} "
                                       "--no-pager", warn=True)


@task
def tail(c, unit="builder", host=None, inventory=None, ssh_config=None):
    """Follow a unit's journal on one host (Ctrl-C to stop)."""
    units = {"builder": "piwheels-builder", "index": "piwheels-index", "sync": "piwheels-sync"}
    name = units.get(unit, unit)
    group = "builders" if unit == "builder" else "master"
    hosts = hosts_of("all", inventory) if host else hosts_of(group, inventory)
    addr = hosts[host] if host else next(iter(hosts.values()))
    _connect(addr, ssh_config).run(f"journalctl -f -u {shlex.quote(name)}", pty=True, warn=True)


@task
def rebuild(c, package, version, target=None, priority=10, inventory=None, ssh_config=None):
    """An operator's rebuild of a version (forget its failures, queue it first)."""
    params = {"op": "requeue", "config": CONFIG, "package": package, "version": version,
              "priority": int(priority), "facts": False}
    if target:  # a target (cp313-linux_aarch64), an ABI or a platform
        params["target"] = target
    r = _admin(_master(inventory, ssh_config), "queue", params)
    print(f"{r['package']} {r['version']}: queued for {', '.join(r['queued']) or 'nothing'}"
          f" ({r['forgotten']} failed attempts forgotten)")


@task
def skip(c, package, version=None, target=None, note=None, undo=False, inventory=None,
         ssh_config=None):
    """Skip a package, a version, or a version on some build targets (--undo lifts it)."""
    params = {"op": "skip", "config": CONFIG, "package": package, "version": version,
              "target": target, "note": note, "state": "absent" if undo else "present",
              "facts": False}
    r = _admin(_master(inventory, ssh_config), "queue", params)
    print(("changed" if r["changed"] else "unchanged") + f": {package} {version or ''}")


@task
def restart(c, role="builders", inventory=None, ssh_config=None):
    """Restart the services of a role: builders (finish the build in hand) or master."""
    units = {"builders": "piwheels-builder.service",
             "master": "piwheels-index.service piwheels-sync.timer"}
    group = "builders" if role == "builders" else "master"
    _parallel(group, inventory, ssh_config,
              lambda name, conn: conn.run(f"systemctl restart {units[group]}", hide=True))
    print(f"restarted {units[group]} on {', '.join(hosts_of(group, inventory))}")


@task
def upgrade(c, inventory=None):
    """Install this checkout's code everywhere (site.yml with a fresh wheelhouse)."""
    inv = inventory or os.environ.get("PIWHEELS_INVENTORY") or str(ROOT / "inventory" / "example")
    wheelhouse = ROOT / ".cache" / "wheelhouse"
    c.run(f"bash {ROOT}/scripts/fleet-wheelhouse.sh {wheelhouse}")
    c.run(f"ansible-playbook -i {shlex.quote(inv)} {ROOT}/playbooks/site.yml "
          f"-e piwheels_wheelhouse={wheelhouse}", pty=True)
