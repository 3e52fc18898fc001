"""Download official data files safely: mirrors, checksums, atomic writes.

Rules, each learnt from other projects' bug reports:

* try the most reliable mirror first, with a short timeout per try, and say
  in one line when falling back (yann.lecun.com now answers 403, so it is
  not listed at all);
* check the sha256 of every downloaded byte before the file is used; a file
  that does not match is renamed ``*.corrupt`` and never read;
* write into a temporary file in the destination folder and ``os.replace``
  it into place, so an interrupted download never leaves a file that looks
  complete;
* a file already at its final name is never downloaded again (it was either
  verified when we wrote it or placed there by the user).

Tests point ``MIRRORS`` at a local HTTP server; users can put their own
mirror first with ``MINICNN_MIRROR=https://host/path/`` (same file names
under ``<mirror>/<data set>/``).
"""
import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ._errors import DatasetNotFoundError
from ._paths import offline

TIMEOUT_S = 15          # per connection attempt and per read; mirrors are either fast or dead
# A mirror that drips bytes never trips the per-read timeout, so a whole download also
# has a deadline and, after a grace period, a minimum average rate (163 MiB of CIFAR
# at 50 kB/s is under an hour; anything slower is better fetched by hand).
DEADLINE_S = 3600
MIN_RATE_BYTES_S = 50_000
RATE_GRACE_S = 30
CHUNK_BYTES = 1 << 16
USER_AGENT = "minicnn-datasets/0.1 (python urllib)"

# Base URLs, most reliable first (ECOSYSTEM.md section 4).
MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    ],
    "cifar-10": ["https://www.cs.toronto.edu/~kriz/"],
    "cifar-100": ["https://www.cs.toronto.edu/~kriz/"],
}

# sha256 of the official files (TFDS and Keras publish the same values).
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
    "cifar-10": {
        "cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    },
    "cifar-100": {
        "cifar-100-python.tar.gz": "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
    },
}


class DownloadError(OSError):
    """One mirror failed (unreachable, HTTP error, truncated or bad checksum)."""


def mirrors_for(dataset):
    """Base URLs for ``dataset`` in the order they are tried."""
    extra = os.environ.get("MINICNN_MIRROR")
    user = [extra.rstrip("/") + f"/{dataset}/"] if extra else []
    return user + list(MIRRORS[dataset])


def fetch_all(dataset, filenames, dest_dir, searched=(), hint=""):
    """Make sure every file in ``filenames`` is in ``dest_dir``; return their paths.

    Files already present are kept as they are. ``searched`` lists the folders
    the caller looked in and ``hint`` adds a line, only to make the error
    message complete.
    Raises DatasetNotFoundError (offline, or every mirror failed).
    """
    dest_dir = Path(dest_dir)
    missing = [name for name in filenames if not (dest_dir / name).is_file()]
    if missing and offline():
        raise DatasetNotFoundError(
            missing_files_message(dataset, filenames, searched, "MINICNN_OFFLINE is set", hint))
    paths = []
    for name in filenames:
        try:
            paths.append(fetch(dataset, name, dest_dir))
        except DownloadError as err:
            raise DatasetNotFoundError(
                missing_files_message(dataset, filenames, searched, str(err), hint)) from err
    return paths


def fetch(dataset, filename, dest_dir):
    """Download one official file into ``dest_dir`` (unless there already) and return its path."""
    dest = Path(dest_dir) / filename
    if dest.is_file():
        return dest
    created = [folder for folder in (dest.parent, *dest.parent.parents) if not folder.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = SHA256[dataset][filename]
    urls = [base + filename for base in mirrors_for(dataset)]
    failures = []
    for i, url in enumerate(urls):
        try:
            _download_verified(url, dest, expected)
            return dest
        except DownloadError as err:
            failures.append(f"{url}: {err}")
            if i + 1 < len(urls):
                print(f"minicnn: {url} failed ({err}); trying {urls[i + 1]}", file=sys.stderr)
    for folder in created:             # innermost first: leave no empty cache folders behind
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    raise DownloadError("all mirrors failed:\n    " + "\n    ".join(failures))


def _download_verified(url, dest, expected_sha256):
    """Stream ``url`` into a temp file beside ``dest``, verify, then move it into place."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _stream(request, out)
        if digest != expected_sha256:
            corrupt = dest.with_name(dest.name + ".corrupt")
            os.replace(tmp, corrupt)   # keep it for inspection, but never under the real name
            raise DownloadError(f"sha256 mismatch: got {digest}, expected {expected_sha256}; "
                                f"the file was moved aside to {corrupt}")
        os.replace(tmp, dest)          # atomic: dest is either absent or complete
    except DownloadError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise DownloadError(_describe(err)) from err   # socket.timeout is an OSError too
    finally:
        if tmp.exists():               # interrupted (even by Ctrl-C): drop the partial file
            tmp.unlink()


def _stream(request, out):
    """Copy the response body to ``out`` with a progress bar; return its sha256 hex digest."""
    sha = hashlib.sha256()
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = ProgressBar(total, label=request.full_url.rsplit("/", 1)[-1])
        done, start = 0, time.monotonic()
        while True:
            chunk = response.read1(CHUNK_BYTES)   # read1: returns what has arrived, so checks run
            if not chunk:
                break
            sha.update(chunk)
            out.write(chunk)
            done += len(chunk)
            bar.update(done)
            _check_progress(done, time.monotonic() - start)
        bar.close()
    # http.client returns b"" rather than raising when a server hangs up early.
    if total is not None and done != total:
        raise DownloadError(f"transfer cut short: {done} of {total} bytes")
    return sha.hexdigest()


def _check_progress(done, elapsed):
    """Give up on a mirror past the deadline, or too slow once the grace period is over."""
    if elapsed > DEADLINE_S:
        raise DownloadError(f"gave up after {elapsed:.0f} s ({done} bytes received); the "
                            f"deadline is {DEADLINE_S} s")
    if elapsed > RATE_GRACE_S and done / elapsed < MIN_RATE_BYTES_S:
        raise DownloadError(f"too slow: {done / elapsed / 1000:.1f} kB/s over {elapsed:.0f} s, "
                            f"below the minimum of {MIN_RATE_BYTES_S / 1000:.0f} kB/s")


def _describe(err):
    """A short reason for a failed try (the full traceback helps nobody here)."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"unreachable ({err.reason})"
    return f"{type(err).__name__}: {err}"


class ProgressBar:
    """A Keras-like one-line progress bar: ``name  1.2/9.9 MB [====>.....] 12%``.

    Redraws at most ten times a second on stderr so that stdout stays clean.
    """

    def __init__(self, total, label="", width=30, stream=None):
        self.total, self.label, self.width = total, label, width
        self.stream = stream if stream is not None else sys.stderr
        self._last_draw = 0.0
        self._done = 0

    def update(self, done):
        self._done = done
        now = time.monotonic()
        if now - self._last_draw >= 0.1:
            self._last_draw = now
            self._draw()

    def close(self):
        self._draw()
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self):
        mb = self._done / 1e6
        if self.total:
            filled = min(self.width, int(self.width * self._done / self.total))
            arrow = ">" if filled < self.width else ""
            bar = ("=" * filled + arrow).ljust(self.width, ".")[: self.width]
            text = f"{mb:.1f}/{self.total / 1e6:.1f} MB [{bar}] {100 * self._done // self.total}%"
        else:
            text = f"{mb:.1f} MB"
        self.stream.write(f"\r{self.label}  {text}")
        self.stream.flush()


def missing_files_message(dataset, filenames, searched, reason, hint=""):
    """Tell the user exactly which files to put where, with their checksums, in one message."""
    lines = [f"minicnn could not find the {dataset} files and could not download them ({reason}).",
             "Folders searched:"]
    lines += [f"    {folder}" for folder in searched]
    lines += ["To fix it, download these files yourself:"]
    for name in filenames:
        sha = SHA256.get(dataset, {}).get(name, "")
        urls = "  or  ".join(base + name for base in mirrors_for(dataset))
        lines.append(f"    {name}  sha256 {sha}" if sha else f"    {name}")
        lines.append(f"        from {urls}")
    layout = EXPECTED_LAYOUT.get(dataset, f"{dataset}/<file>")
    lines += ["and put them under the folder named by MINICNN_DATA (or pass root= to load_data) as",
              f"    $MINICNN_DATA/{layout}",
              "or in the cache folder searched above.",
              "MINICNN_OFFLINE=1 forbids downloads"
              + ("; it is set now: unset it to let minicnn download." if offline() else ".")]
    if hint:
        lines.append(hint)
    return "\n".join(lines)


# Where each data set's files go under a data root, for the message above.
EXPECTED_LAYOUT = {
    "mnist": "mnist/train-images-idx3-ubyte.gz (and the other three)",
    "fashion-mnist": "fashion-mnist/train-images-idx3-ubyte.gz (and the other three)",
    "cifar-10": "cifar-10-python.tar.gz",
    "cifar-100": "cifar-100-python.tar.gz",
}
