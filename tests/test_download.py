"""difprog.download.fetch and data.fashion_mnist's download, against a local HTTP server on
127.0.0.1: good files are kept; a truncated transfer, a wrong checksum, a server error, a
missing file and no server at all are one-line DownloadErrors that leave nothing behind (and a
file already there unchanged)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest

from difprog import data
from difprog.download import fetch
from difprog.errors import DataError, DownloadError
from tests.test_idx import idx_bytes

BODY = b"the published file " * 1000
MD5 = hashlib.md5(BODY).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves `files` ({path: bytes}); /truncated announces more than it sends; /error is 500."""

    files: dict = {}

    def do_GET(self):  # noqa: N802 - the name http.server calls
        if self.path == "/error":
            self.send_error(500, "Internal Server Error")
            return
        body = BODY if self.path in ("/good", "/truncated") else self.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:len(body) // 2] if self.path == "/truncated" else body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_a_good_file_is_kept(server, tmp_path):
    assert fetch(f"{server}/good", tmp_path / "f.gz", md5=MD5, progress=False).read_bytes() \
        == BODY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.gz"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("path, md5, message", [
    ("/truncated", MD5, "the transfer ended after 9,500 of 19,000 bytes"),
    ("/good", "0" * 32, f"downloaded with md5 {MD5} instead of the published 00000000"),
    ("/error", MD5, "the server answered 500 Internal Server Error"),
    ("/missing", MD5, "the server answered 404 Not Found"),
    (None, MD5, "Connection refused"),
])
def test_a_failed_download_is_one_line_and_leaves_the_old_file(server, tmp_path, path, md5,
                                                               message):
    url = f"{server}{path}" if path else f"http://127.0.0.1:{_closed_port()}/good"
    (tmp_path / "f.gz").write_bytes(b"the file before")
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "f.gz", md5=md5, progress=False)
    assert message in str(caught.value) and url in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.gz"]
    assert (tmp_path / "f.gz").read_bytes() == b"the file before"


def test_only_http_and_https_are_fetched(tmp_path):
    with pytest.raises(DownloadError, match="only http and https"):
        fetch("file:///etc/passwd", tmp_path / "f", progress=False)


# --- data.fashion_mnist: where it looks, and its download -----------------------------------

def _synthetic(directory, count=20, packed=True):
    """Four idx files of a tiny 10-class set in `directory`; {file: sha256}, {file: md5}."""
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (count, 28, 28), np.uint8),
              "train-labels-idx1-ubyte": np.arange(count, dtype=np.uint8) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28), np.uint8),
              "t10k-labels-idx1-ubyte": np.arange(10, dtype=np.uint8)}
    directory.mkdir(parents=True, exist_ok=True)
    sha, md5 = {}, {}
    for stem, array in arrays.items():
        raw = idx_bytes(array)
        stored = gzip.compress(raw, mtime=0) if packed else raw
        (directory / (stem + (".gz" if packed else ""))).write_bytes(stored)
        sha[stem], md5[stem] = hashlib.sha256(raw).hexdigest(), hashlib.md5(stored).hexdigest()
    return sha, md5


@pytest.fixture
def places(tmp_path, monkeypatch):
    """No Fashion-MNIST anywhere (an empty cache, no Debian package) unless a test puts it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DIFPROG_DATA", raising=False)
    monkeypatch.setattr(data, "FASHION_MNIST_PACKAGE", str(tmp_path / "debian"))
    return tmp_path


def test_fashion_mnist_is_looked_for_in_order(places, monkeypatch):
    sha, _ = _synthetic(places / "debian", count=30)
    monkeypatch.setattr(data, "_FASHION_SHA256", sha)
    assert len(data.fashion_mnist(download=False).x_train) == 30  # Debian's directory, last
    sha, _ = _synthetic(places / "cache" / "difprog" / "fashion-mnist", count=40, packed=False)
    monkeypatch.setattr(data, "_FASHION_SHA256", sha)
    assert len(data.fashion_mnist(download=False).x_train) == 40  # the cache before it
    sha, _ = _synthetic(places / "mine" / "fashion-mnist", count=50)
    monkeypatch.setattr(data, "_FASHION_SHA256", sha)
    monkeypatch.setenv("DIFPROG_DATA", str(places / "mine"))
    fashion = data.fashion_mnist(download=False)  # $DIFPROG_DATA/fashion-mnist before both
    assert len(fashion.x_train) == 50 and fashion.x_train.shape[1:] == (28, 28, 1)
    assert fashion.class_name(9) == "Ankle boot" and fashion.name == "fashion-mnist"
    with pytest.raises(DataError, match="holds other contents than expected"):
        data.fashion_mnist(places / "debian")  # an explicit path first; its contents checked
    with pytest.raises(DataError, match="no Fashion-MNIST in"):
        data.fashion_mnist(places / "nowhere")


def test_fashion_mnist_is_downloaded_once_into_the_cache(places, server, monkeypatch):
    sha, md5 = _synthetic(places / "served", count=30)
    monkeypatch.setattr(data, "_FASHION_SHA256", sha)
    monkeypatch.setattr(data, "_FASHION_MD5", md5)
    _Handler.files = {f"/served/{p.name}": p.read_bytes() for p in (places / "served").iterdir()}
    urls = (f"http://127.0.0.1:{_closed_port()}/", f"{server}/served/")  # the first is down
    assert len(data.fashion_mnist(urls=urls, progress=False).x_train) == 30
    cache = places / "cache" / "difprog" / "fashion-mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{s}.gz" for s in data.IDX_FILES)
    _Handler.files = {}
    assert len(data.fashion_mnist(urls=urls, progress=False).x_train) == 30  # from the cache


def test_offline_fashion_mnist_names_the_apt_package_and_the_address(places):
    url = f"http://127.0.0.1:{_closed_port()}/"
    with pytest.raises(DownloadError) as caught:
        data.fashion_mnist(urls=(url,), progress=False)
    text = str(caught.value)
    assert "apt-get install dataset-fashion-mnist" in text and url in text
    assert len(text.splitlines()) == 1
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        data.fashion_mnist(download=False)


def test_the_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv("DIFPROG_DATA", raising=False)
    if not all((data.Path(data.FASHION_MNIST_PACKAGE) / f"{s}.gz").exists()
               for s in data.IDX_FILES):
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    fashion = data.fashion_mnist(data.FASHION_MNIST_PACKAGE)
    assert fashion.x_train.shape == (60000, 28, 28, 1)
    assert fashion.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(fashion.y_train).tolist() == [6000] * 10
    assert np.bincount(fashion.y_test).tolist() == [1000] * 10
    assert fashion.classes == data.FASHION_MNIST_CLASSES and fashion.num_classes == 10
    assert 0 <= fashion.x_train.min() and fashion.x_train.max() == 1.0


