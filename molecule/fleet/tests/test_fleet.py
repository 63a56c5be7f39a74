"""testinfra checks of the converged lab fleet after one build wave
(molecule/fleet): services, the store mount, wheels for both ABIs, the
queue rules as the farm applied them, and a real pip install on a client."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import testinfra
import yaml

ROOT = Path(__file__).resolve().parents[3]
LAB = os.environ.get("PIWHEELS_LAB_DIR") or "/run/piwheels-lab"
INVENTORY = yaml.safe_load((ROOT / "inventory" / "lab" / "hosts.yml").read_text())
GROUPS = INVENTORY["all"]["children"]
STORE = "/srv/piwheels/www/simple"


def _address(name: str) -> str:
    def walk(node):
        hosts = node.get("hosts") or {}
        if hosts.get(name) and "ansible_host" in hosts[name]:
            return hosts[name]["ansible_host"]
        for child in (node.get("children") or {}).values():
            found = walk(child)
            if found:
                return found
        return None
    return walk(INVENTORY["all"])


def _host(name: str):
    return testinfra.get_host(f"ssh://{_address(name)}", ssh_config=f"{LAB}/ssh_config")


def _names(group: str) -> list[str]:
    node = GROUPS[group]
    names = list(node.get("hosts") or {})
    for child in (node.get("children") or {}).values():
        names += list(child.get("hosts") or {})
    return names


MASTER = _names("master")[0]
WEB = _names("webserver")[0]
BUILDERS = _names("builders")
CLIENT = _names("clients")[0]


@pytest.fixture(scope="module")
def master():
    return _host(MASTER)


def _sql(master, query: str) -> list[list[str]]:
    out = master.check_output(f"runuser -u postgres -- psql -d piwheels -AtF '|' -c \"{query}\"")
    return [line.split("|") for line in out.splitlines() if line]


# -- the master --------------------------------------------------------------------

@pytest.mark.parametrize("unit", ["postgresql", "piwheels-index.service", "piwheels-sync.timer",
                                  "ssh", "nginx"])
def test_master_services_running(master, unit):
    svc = master.service(unit)
    assert svc.is_running, unit
    assert svc.is_enabled, unit


def test_store_account_is_sftp_only_and_chrooted(master):
    account = master.user("piwheels-store")
    assert account.shell == "/usr/sbin/nologin"
    root = master.file("/srv/piwheels")
    assert root.user == "root" and root.mode == 0o755
    www = master.file("/srv/piwheels/www")
    assert www.group == "piwheels" and www.mode & 0o2070 == 0o2070
    config = master.check_output("sshd -T -C user=piwheels-store,host=x,addr=10.77.0.21")
    assert "chrootdirectory /srv/piwheels" in config
    assert "forcecommand internal-sftp" in config


def test_builder_logins_cannot_read_tables(master):
    rows = _sql(master, "SELECT r.rolname FROM pg_roles r JOIN pg_auth_members m ON"
                        " m.member = r.oid JOIN pg_roles g ON g.oid = m.roleid"
                        " WHERE g.rolname = 'piwheels_builder' ORDER BY 1")
    assert [r[0] for r in rows] == sorted(f"builder_{b}" for b in BUILDERS)
    rows = _sql(master, "SELECT has_table_privilege('builder_pwb1', 'packages', 'SELECT')")
    assert rows == [["f"]]


# -- builders -----------------------------------------------------------------------

@pytest.mark.parametrize("name", BUILDERS)
def test_builder_service_and_store_mount(name):
    host = _host(name)
    # The wave has just started the service again; systemd restarts it (Restart=always,
    # RestartSec=10) if a start fails, so give it one restart before judging, and show
    # its journal when it is still not running.
    deadline = time.monotonic() + 45
    while (not host.service("piwheels-builder.service").is_running
           and time.monotonic() < deadline):
        time.sleep(1)
    journal = host.run("journalctl -u piwheels-builder.service --no-pager -n 30").stdout
    assert host.service("piwheels-builder.service").is_running, journal
    mount = host.mount_point("/srv/piwheels/www")
    assert mount.exists and mount.filesystem == "fuse.sshfs"
    assert mount.device.startswith("piwheels-store@")
    assert host.file("/srv/piwheels/www/simple/index.html").exists  # the store through sshfs
    assert host.file("/etc/piwheels/piwheels.toml").mode == 0o640
    assert host.user("piwheels-build").shell == "/usr/sbin/nologin"


@pytest.mark.parametrize(("name", "version"), [("pwb1", "3.11"), ("pwt1", "3.13")])
def test_builders_have_their_release_python(name, version):
    host = _host(name)
    out = host.check_output("/opt/piwheels/pythons/python%s/bin/python -c "
                            "'import sys; print(sys.version)'", version)
    assert out.startswith(version + ".")


def test_store_key_cannot_get_a_shell():
    host = _host(BUILDERS[0])
    cmd = host.run("ssh -F /dev/null -i /root/.ssh/piwheels_store -o BatchMode=yes "
                   "-o UserKnownHostsFile=/etc/piwheels/known_hosts -o ConnectTimeout=5 "
                   "piwheels-store@%s id", _address(MASTER))
    assert "uid=" not in cmd.stdout


def _sftp(host, commands: str):
    """Run an sftp batch as the store account from a builder (a '-' before a command
    lets the batch go on when it fails)."""
    return host.run("printf %%s %s | sftp -b - -F /dev/null -i /root/.ssh/piwheels_store "
                    "-o BatchMode=yes -o UserKnownHostsFile=/etc/piwheels/known_hosts "
                    "-o ConnectTimeout=5 piwheels-store@%s", commands, _address(MASTER))


def test_store_account_cannot_leave_the_store(master):
    host = _host(BUILDERS[0])
    host.run("rm -f /tmp/piwheels-leak")
    out = _sftp(host, "ls -1 /\n-cd /..\nls -1 /\n-get /etc/passwd /tmp/piwheels-leak\n"
                      "-get ../../etc/passwd /tmp/piwheels-leak\n")
    assert out.rc == 0, out.stderr
    listed = [line.strip() for line in out.stdout.splitlines()
              if line.strip() and not line.startswith("sftp>")]
    assert listed == ["/www", "/www"]  # the chroot holds the store and nothing else
    assert not host.file("/tmp/piwheels-leak").exists


def test_a_link_out_of_the_store_is_not_served(master):
    # The store account can make symlinks; nginx (on the master, outside the chroot)
    # must not follow one to a file the account does not own.
    host = _host(BUILDERS[0])
    made = _sftp(host, "-mkdir /www/simple/zz-leak\n"
                       "symlink /etc/passwd /www/simple/zz-leak/passwd.whl\n")
    try:
        assert made.rc == 0, made.stderr
        assert master.file(f"{STORE}/zz-leak/passwd.whl").is_symlink
        got = master.run("python3 -c \"import urllib.request as u, urllib.error as e\n"
                         "try: print(u.urlopen('http://127.0.0.1/simple/zz-leak/passwd.whl')"
                         ".read()[:20])\nexcept e.HTTPError as x: print(x.code)\"")
        assert got.stdout.strip() in ("403", "404"), got.stdout
    finally:
        _sftp(host, "-rm /www/simple/zz-leak/passwd.whl\n-rmdir /www/simple/zz-leak\n")
    assert not master.file(f"{STORE}/zz-leak").exists


@pytest.mark.parametrize(("name", "unit"), [
    ("master", "piwheels-index.service"), ("builder", "piwheels-builder.service")])
def test_services_run_unprivileged(master, name, unit):
    host = master if name == "master" else _host(BUILDERS[0])
    pid = host.check_output("systemctl show -p MainPID --value %s", unit)
    assert pid not in ("", "0"), f"{unit} is not running"
    user = host.check_output("ps -o user= -p %s", pid)
    assert user == "piwheels", f"{unit} runs as {user}"
    assert host.check_output("systemctl show -p User --value piwheels-sync.service"
                             if name == "master" else "echo piwheels") == "piwheels"


# -- what the wave built ---------------------------------------------------------------

def test_builders_registered_both_targets(master):
    rows = _sql(master, "SELECT name, target FROM builders ORDER BY 1")
    assert rows == [["pwb1", "cp311-linux_x86_64"], ["pwt1", "cp313-linux_x86_64"]]


def test_pure_wheel_built_once(master):
    rows = _sql(master, "SELECT target, status FROM builds WHERE package = 'fleetpure'")
    assert rows == [["cp311-linux_x86_64", "success"]]
    files = master.check_output(f"ls {STORE}/fleetpure").split()
    assert [f for f in files if f.endswith(".whl")] == ["fleetpure-1.0-py3-none-any.whl"]


def test_c_extension_built_for_both_targets(master):
    rows = _sql(master, "SELECT target, status FROM builds WHERE package = 'fleetcext'"
                        " ORDER BY 1")
    assert rows == [["cp311-linux_x86_64", "success"], ["cp313-linux_x86_64", "success"]]
    files = master.check_output(f"ls {STORE}/fleetcext").split()
    wheels = sorted(f for f in files if f.endswith(".whl"))
    assert [w.split("-")[2:4] for w in wheels] == [["cp311", "cp311"], ["cp313", "cp313"]]
    assert all(f"{w}.metadata" in files for w in wheels)


def test_abi3_wheel_covers_the_newer_abi(master):
    rows = _sql(master, "SELECT target, status FROM builds WHERE package = 'fleetabi3'")
    assert rows == [["cp311-linux_x86_64", "success"]]


def test_nothing_left_in_the_queue(master):
    assert _sql(master, "SELECT count(*) FROM queue") == [["0"]]
    assert _sql(master, "SELECT count(*) FROM index_dirty") == [["0"]]


# -- the webserver and a client ------------------------------------------------------

def test_webserver_negotiates_pep691(master):
    web = _host(WEB)
    url = "http://127.0.0.1/simple/fleetcext/"
    head = web.check_output("python3 -c \"import urllib.request as u; r = u.urlopen(u.Request("
                            "'%s', headers={'Accept': 'application/vnd.pypi.simple.v1+json'})); "
                            "print(r.headers['Content-Type']); print(r.read().decode())\"", url)
    ctype, body = head.split("\n", 1)
    assert ctype.startswith("application/vnd.pypi.simple.v1+json")
    data = json.loads(body)
    assert len(data["files"]) == 2
    html = web.check_output("python3 -c \"import urllib.request as u; "
                            "print(u.urlopen('%s').headers['Content-Type'])\"", url)
    assert html.startswith("text/html")


def test_pip_install_on_the_client():
    client = _host(CLIENT)
    assert "index-url = http://" in client.file("/etc/pip.conf").content_string
    client.run("rm -rf /tmp/piwheels-venv")
    client.check_output("python3 -m venv /tmp/piwheels-venv")
    out = client.check_output("/tmp/piwheels-venv/bin/pip install --disable-pip-version-check "
                              "--no-cache-dir fleetpure fleetcext fleetabi3")
    assert "Successfully installed" in out
    got = client.check_output("/tmp/piwheels-venv/bin/python -c 'import fleetcext, fleetabi3, "
                              "fleetpure; print(fleetcext.add(2, 3), fleetabi3.add(1, 1), "
                              "fleetpure.VALUE)'")
    assert got.split() == ["5", "2", "42"]
