"""Shared fixtures: a real throwaway PostgreSQL cluster for the whole session,
and a freshly migrated database for every test (cloned from a template)."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import psycopg2
import pytest
from helpers.pgdb import fresh_database
from helpers.upstream_server import FakeUpstream

from piwheels_build import db
from piwheels_build.db.localdb import LocalCluster

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster():
    """One real PostgreSQL server for the session, in a temporary directory."""
    tmp = Path(tempfile.mkdtemp(prefix="piwheels-pg-"))
    os.chmod(tmp, 0o755)
    cluster = LocalCluster(tmp / "pg", port=5432)
    cluster.init()
    cluster.start()
    conn = psycopg2.connect(cluster.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute('CREATE DATABASE "template_piwheels"')
    conn.close()
    tconn = db.connect(cluster.dsn("template_piwheels"))
    db.migrate(tconn)
    tconn.close()
    yield cluster
    cluster.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def dsn(pg_cluster) -> str:
    """DSN of a new, migrated database used by this test only."""
    yield from fresh_database(pg_cluster, f"t{os.getpid()}_{next(_counter)}")


@pytest.fixture
def conn(dsn):
    c = db.connect(dsn)
    yield c
    c.close()


@pytest.fixture
def fake():
    """A local upstream index (PEP 691 JSON and HTML, XML-RPC changelog) on 127.0.0.1."""
    with FakeUpstream(xmlrpc=True) as f:
        yield f


@pytest.fixture
def html_fake():
    """The same, answering HTML only, as some mirrors do."""
    with FakeUpstream(json=False, xmlrpc=True) as f:
        yield f
