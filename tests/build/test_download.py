"""The builder's sdist download goes through the retrying session: a 503 (with
Retry-After) or a dropped connection is retried, not an infrastructure failure."""

from __future__ import annotations

import hashlib

import pytest
import urllib3.util.retry
from helpers.upstream_server import make_sdist

from piwheels_build.build.builder import Builder
from piwheels_build.config import from_dict
from piwheels_build.errors import PiwheelsError
from piwheels_build.queue import Claim


@pytest.fixture
def builder(dsn, fake, tmp_path, monkeypatch):
    monkeypatch.setattr(urllib3.util.retry.time, "sleep", lambda _s: None)  # no real waits
    cfg = from_dict({"database": dsn, "upstream": fake.url, "www": str(tmp_path / "www"),
                     "sandbox": "none", "http_retries": 2, "http_timeout": 5})
    b = Builder(cfg, [])
    yield b
    b.close()


def _claim(fake, sha256: str | None = None) -> tuple[Claim, bytes]:
    name, data = make_sdist("dl", "1.0")
    fake.add_file("dl", name, data)
    claim = Claim(1, "dl", "1.0", "cp311-linux_x86_64", name, f"{fake.root}/files/{name}",
                  sha256 or hashlib.sha256(data).hexdigest())
    return claim, data


def test_download_retries_a_503_with_retry_after(builder, fake, tmp_path):
    claim, data = _claim(fake)
    fake.fail(f"/files/{claim.sdist_filename}", times=1, status=503, retry_after="1")
    path = builder._download(claim, tmp_path)
    assert path.read_bytes() == data
    assert fake.requests_for(f"/files/{claim.sdist_filename}") == 2


def test_download_retries_a_dropped_connection(builder, fake, tmp_path):
    claim, data = _claim(fake)
    fake.drop(f"/files/{claim.sdist_filename}")
    assert builder._download(claim, tmp_path).read_bytes() == data
    assert fake.requests_for(f"/files/{claim.sdist_filename}") == 2


def test_download_gives_up_with_one_line(builder, fake, tmp_path):
    claim, _ = _claim(fake)
    fake.fail(f"/files/{claim.sdist_filename}", times=3, status=502)
    with pytest.raises(PiwheelsError) as e:
        builder._download(claim, tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and claim.sdist_url in msg and "HTTP 502, 3 attempts" in msg
    assert fake.requests_for(f"/files/{claim.sdist_filename}") == 3


def test_download_404_and_bad_hash_are_not_retried(builder, fake, tmp_path):
    claim, _ = _claim(fake, sha256="0" * 64)
    with pytest.raises(PiwheelsError, match="sha256 mismatch"):
        builder._download(claim, tmp_path)
    assert fake.requests_for(f"/files/{claim.sdist_filename}") == 1
    gone = Claim(2, "dl", "1.0", "cp311-linux_x86_64", "gone-1.0.tar.gz",
                 f"{fake.root}/files/gone-1.0.tar.gz", None)
    with pytest.raises(PiwheelsError, match="404"):
        builder._download(gone, tmp_path)
    assert fake.requests_for("/files/gone-1.0.tar.gz") == 1
