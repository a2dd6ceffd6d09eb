"""Downloading a file once, checked: `fetch(url, path, md5=...)`.

The file is streamed into a temporary beside `path` (`files.atomic`) with a progress bar, its
length checked against the server's Content-Length and its checksum against the published
one, and only then renamed to `path`: an interrupted, truncated or wrong download leaves
nothing at `path` (and a file already there unchanged). Only http and https are fetched.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pathlib
import urllib.error
import urllib.request

from difprog import files
from difprog.errors import DownloadError
from difprog.progress import Progress

__all__ = ["fetch"]

_CHUNK = 1 << 16


def fetch(url: str, path: str | os.PathLike, *, md5: str | None = None,
          sha256: str | None = None, progress: bool = True, timeout: float = 60) -> pathlib.Path:
    """Downloads `url` to `path` when its checksums match; `path`.

    Raises:
        DownloadError naming the address: not http(s), unreachable (offline), an HTTP error
        status, a transfer shorter than announced, or another checksum than `md5`/`sha256`.
    """
    if not url.startswith(("https://", "http://")):
        raise DownloadError(f"refusing to download {url!r}: only http and https addresses")
    path = pathlib.Path(path)
    digests = {name: hashlib.new(name) for name, want in (("md5", md5), ("sha256", sha256))
               if want}
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, \
                files.atomic(path) as temporary:
            _stream(url, response, temporary, digests, progress)
            _verify(url, digests, {"md5": md5, "sha256": sha256})
    except urllib.error.HTTPError as error:
        raise DownloadError(f"could not download {url}: the server answered {error.code} "
                            f"{error.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError,
            ConnectionError) as error:
        reason = getattr(error, "reason", None) or f"{type(error).__name__}: {error}"
        raise DownloadError(f"could not download {url}: {reason}") from None
    return path


def _stream(url: str, response, temporary: pathlib.Path, digests: dict,
            progress: bool) -> None:
    """The response body into `temporary`, hashed on the way; a short body is an error."""
    announced = response.headers.get("Content-Length")
    total = int(announced) if announced and announced.isdigit() else None
    received = 0
    with open(temporary, "wb") as out, Progress(total or 0, f"downloading {url.rsplit('/', 1)[-1]}",
                                                 enabled=progress, unit="B") as bar:
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            for digest in digests.values():
                digest.update(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    if total is not None and received != total:
        raise DownloadError(f"could not download {url}: the transfer ended after {received:,} "
                            f"of {total:,} bytes; nothing was kept, try again")


def _verify(url: str, digests: dict, wanted: dict) -> None:
    for name, digest in digests.items():
        if digest.hexdigest() != wanted[name].lower():
            raise DownloadError(f"{url} downloaded with {name} {digest.hexdigest()} instead of "
                                f"the published {wanted[name]}; nothing was kept, try again "
                                f"later or fetch the file another way")
