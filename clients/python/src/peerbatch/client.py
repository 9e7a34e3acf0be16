"""The client: finds a node as the CLI does and calls its HTTP API.

Owns finding the node (``data_dir`` files, or ``api`` + ``token``, or the
``PEERBATCH_*`` environment), trusting an HTTPS node's certificate (its
SHA-256 fingerprint pinned, or a CA file), sending requests with the token, turning
refusals into ``peerbatch.errors`` exceptions, and the few steps that take
more than one request (waiting for a job, exports, following a log). The
JSON it returns is the node's, as ``/v1/openapi.json`` describes it; it
must not reshape it.
"""

import hashlib
import http.client
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from . import errors

#: Every route this client calls, as (method, pattern): its tests check
#: that ``/v1/openapi.json`` describes each one.
ROUTES = [
    ("GET", "/v1/status"),
    ("GET", "/v1/nodes"),
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("POST", "/v1/jobs/file"),
    ("GET", "/v1/jobs/{job}"),
    ("GET", "/v1/jobs/{job}/tasks"),
    ("POST", "/v1/jobs/{job}/cancel"),
    ("GET", "/v1/jobs/{job}/tasks/{task}/log"),
    ("POST", "/v1/jobs/{job}/outputs/export"),
    ("POST", "/v1/blobs"),
    ("PUT", "/v1/blobs/stream"),
    ("GET", "/v1/blobs/{id}/bytes"),
    ("POST", "/v1/blobs/{id}/export"),
    ("GET", "/v1/exports/{n}"),
    ("GET", "/v1/functions/{name}/keys"),
    ("POST", "/v1/functions/{name}/keys"),
    ("DELETE", "/v1/functions/{name}/keys/{label}"),
    ("GET", "/v1/functions/{name}/calls"),
    ("GET", "/v1/function-calls"),
    ("GET", "/v1/openapi.json"),
]

#: States after which a task or a job changes no more.
ENDED = {"succeeded", "failed", "cancelled", "skipped"}

#: Seconds a followed log may go without a byte before the read gives up
#: (the node ends such a body after 30 minutes itself).
FOLLOW_IDLE = 31 * 60


def default_data_dir():
    """The data dir the CLI uses without ``--data-dir``."""
    env = os.environ.get("PEERBATCH_DATA_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg:
        return Path(xdg) / "peerbatch"
    return Path.home() / ".local" / "share" / "peerbatch"


def _segment(text):
    return urllib.parse.quote(str(text), safe="")


def _is_blob_id(text):
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _fingerprint_bytes(text):
    """32 bytes from ``AB:CD:…`` (colons, case and a ``SHA256:`` prefix optional)."""
    hex_digits = text.strip()
    if hex_digits.lower().startswith("sha256:"):
        hex_digits = hex_digits[len("sha256:"):]
    hex_digits = hex_digits.replace(":", "")
    try:
        raw = bytes.fromhex(hex_digits)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise errors.BadRequest(
            "{!r} is not a SHA-256 fingerprint (32 hex bytes, as AB:CD:…)".format(text)
        )
    return raw


class _PinnedHTTPSHandler(urllib.request.HTTPSHandler):
    """HTTPS to a node whose certificate has the pinned SHA-256 (its name
    is not checked: a self-signed certificate names no address for certain)."""

    def __init__(self, sha256):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        super().__init__(context=context)
        self._sha256 = sha256

    def https_open(self, req):
        sha256 = self._sha256

        class Pinned(http.client.HTTPSConnection):
            def connect(self):
                super().connect()
                seen = hashlib.sha256(self.sock.getpeercert(binary_form=True)).digest()
                if seen != sha256:
                    self.sock.close()
                    raise ssl.SSLError(
                        "the node's certificate has fingerprint {}, not the one trusted".format(
                            ":".join("{:02X}".format(b) for b in seen)
                        )
                    )

        return self.do_open(Pinned, req, context=self._context)


class Client:
    """A connection to one node's API.

    ``Client()`` uses the node of the default data dir; ``Client(data_dir=D)``
    the node running on ``D`` (its ``api`` and ``token`` files);
    ``Client(api="127.0.0.1:PORT", token=T)`` a node by address. ``api`` and
    ``token`` default to ``PEERBATCH_API`` and ``PEERBATCH_TOKEN``.

    A node serving beyond loopback speaks HTTPS (``api="https://HOST:PORT"``):
    its certificate is trusted by its SHA-256 ``fingerprint`` (``AB:CD:…``,
    default ``PEERBATCH_API_FINGERPRINT``, else the one the node wrote to the
    data dir's ``api-tls/fingerprint``), or by a CA file ``ca``
    (``PEERBATCH_CA``) for a node started with ``--tls-cert``.
    """

    def __init__(self, data_dir=None, api=None, token=None, timeout=120.0,
                 fingerprint=None, ca=None):
        api = api or os.environ.get("PEERBATCH_API")
        token = token or os.environ.get("PEERBATCH_TOKEN")
        fingerprint = fingerprint or os.environ.get("PEERBATCH_API_FINGERPRINT")
        ca = ca or os.environ.get("PEERBATCH_CA")
        self._data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        # Like the CLI: a token read from the node's own file means this
        # process runs as the node's account, so the node may read and
        # write its files by path.
        self.shares_files = token is None
        if api is None:
            api = self._read("api", "no node is running on data dir {} (no {} file)")
        if token is None:
            token = self._read("token", "cannot read the node's token {1}")
        api = api.strip().rstrip("/")
        self.base = api if api.startswith("http") else "http://" + api
        self._token = token.strip()
        self.timeout = timeout
        self._opener = urllib.request.build_opener()
        if self.base.startswith("https://"):
            self._opener = urllib.request.build_opener(self._https(fingerprint, ca))

    def _https(self, fingerprint, ca):
        """The handler that checks the node's certificate."""
        if ca and not fingerprint:
            return urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca))
        if not fingerprint:
            fingerprint = self._read(
                "api-tls/fingerprint",
                "the node's API is HTTPS and {1} cannot be read: give fingerprint= "
                "(the node prints it at start; `peerbatch status` on its machine shows it) or ca=",
            )
        return _PinnedHTTPSHandler(_fingerprint_bytes(fingerprint))

    def _read(self, name, message):
        path = self._data_dir / name
        try:
            return path.read_text()
        except OSError:
            raise errors.Unreachable(message.format(self._data_dir, path)) from None

    # -- HTTP ---------------------------------------------------------------

    def _request(self, method, path, body=None, raw=None, timeout=None, stream=False):
        headers = {"Authorization": "Bearer " + self._token}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif raw is not None:
            data = raw
            headers["Content-Type"] = "application/octet-stream"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            response = self._opener.open(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                text = json.loads(text)["error"]
            except (ValueError, KeyError, TypeError):
                pass
            raise errors.for_status(e.code, text) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise errors.Unreachable("cannot reach the node at {}: {}".format(self.base, reason)) from None
        except http.client.HTTPException as e:
            raise errors.Unreachable(
                "the node at {} did not answer HTTP ({!r}); a node serving beyond loopback "
                "speaks HTTPS only: use https://".format(self.base, e)
            ) from None
        if stream:
            return response
        with response:
            return response.read()

    def _json(self, method, path, body=None, **kw):
        return json.loads(self._request(method, path, body=body, **kw))

    # -- reading ------------------------------------------------------------

    def status(self):
        """This node's own state: slots, load, peers, ledger and store figures."""
        return self._json("GET", "/v1/status")

    def nodes(self):
        """Every node of the mesh this node has heard of."""
        return self._json("GET", "/v1/nodes")

    def jobs(self):
        """Every job this node knows, oldest first."""
        return self._json("GET", "/v1/jobs")

    def job(self, job):
        """One job (by id, id prefix or name)."""
        return self._json("GET", "/v1/jobs/" + _segment(job))

    def tasks(self, job):
        """A job's tasks with their state, node, attempt and exit code."""
        return self._json("GET", "/v1/jobs/{}/tasks".format(_segment(job)))

    def openapi(self):
        """The node's OpenAPI 3 document."""
        return self._json("GET", "/v1/openapi.json")

    # -- jobs ---------------------------------------------------------------

    def submit(self, job, wait=False, dir=None):
        """Submits a job; returns its id.

        ``job`` is a job file's path (TOML, as ``peerbatch submit`` takes
        it), or a dict with the same keys (``{"name": ..., "tasks": [...]}``).
        Relative ``source`` inputs are read from the file's directory, or
        from ``dir`` (default: the current directory) for a dict; the node
        reads them by path. With ``wait``, returns once the job ended (see
        :meth:`wait`).
        """
        if isinstance(job, dict):
            body = {"job": job, "dir": str(Path(dir or os.getcwd()).resolve())}
        else:
            path = Path(job).resolve()
            try:
                text = path.read_text()
            except OSError as e:
                raise errors.BadRequest("{}: cannot read the job file: {}".format(job, e)) from None
            body = {"toml": text, "name": path.name, "dir": str(path.parent)}
        job_id = self._json("POST", "/v1/jobs/file", body)["job_id"]
        if wait:
            self.wait(job_id)
        return job_id

    def wait(self, job, timeout=None, check=True, poll=0.2):
        """Waits until every task of ``job`` ended; returns the job.

        Raises ``JobFailed`` if it did not succeed (unless ``check`` is
        false) and ``WaitTimeout`` after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            j = self.job(job)
            if j["state"] in ENDED:
                if check and j["state"] != "succeeded":
                    raise errors.JobFailed(j)
                return j
            if deadline is not None and time.monotonic() > deadline:
                raise errors.WaitTimeout(
                    "job {} is still {} after {} s".format(j["id"], j["state"], timeout)
                )
            time.sleep(poll)

    def cancel(self, job):
        """Cancels a job everywhere (from the node that submitted it or an admin node)."""
        return self._json("POST", "/v1/jobs/{}/cancel".format(_segment(job)))

    def logs(self, job, task, stderr=False, rank=0, follow=False):
        """A task's captured stdout (or stderr), wherever it runs or ran.

        Without ``follow``, the output of a finished task as bytes. With
        ``follow``, a generator of its lines (bytes, each ending in a
        newline but perhaps the last) as the task writes them, from its
        first, that ends when the followed attempt ends (a task not started
        yet is waited for; only rank 0 of a multi-instance task is
        followed).
        """
        stream = "stderr" if stderr else "stdout"
        query = "?stream={}&rank={}".format(stream, int(rank))
        path = "/v1/jobs/{}/tasks/{}/log".format(_segment(job), _segment(task))
        if not follow:
            return self._request("GET", path + query)
        return self._follow(path + query + "&follow=true")

    def _follow(self, path):
        response = self._request("GET", path, stream=True, timeout=FOLLOW_IDLE)
        with response:
            while True:
                line = response.readline()
                if not line:
                    return
                yield line

    # -- files --------------------------------------------------------------

    def put(self, path):
        """Stores a local file (or, with the node's own token, a directory
        tree) in the node's store; returns its blob id (64 hex digits)."""
        path = Path(path).resolve()
        if self.shares_files:
            stored = self._json("POST", "/v1/blobs", {"path": str(path)}, timeout=365 * 86400)
            return stored["id"]
        if not path.is_file():
            raise errors.BadRequest(
                "{}: only a regular file can be sent with PEERBATCH_TOKEN".format(path)
            )
        stored = self._json("PUT", "/v1/blobs/stream", raw=path.read_bytes(), timeout=365 * 86400)
        return stored["id"]

    def get(self, what, out, store=True, poll=0.05):
        """Writes a blob (by id) or every output of a job (as
        ``out/TASK/...``) at ``out``, which must not exist; fetched from
        wherever it is in the mesh. Returns the finished export (or, for
        a blob read as bytes, ``{"blob", "out", "bytes_written"}``)."""
        out = Path(out).resolve()
        if _is_blob_id(what) and not self.shares_files:
            data = self._request("GET", "/v1/blobs/{}/bytes".format(what), timeout=365 * 86400)
            with open(out, "xb") as f:
                f.write(data)
            return {"blob": what, "out": str(out), "bytes_written": len(data)}
        if _is_blob_id(what):
            body = {"out": str(out), "store": store}
            started = self._json("POST", "/v1/blobs/{}/export".format(what), body)
        else:
            route = "/v1/jobs/{}/outputs/export".format(_segment(what))
            started = self._json("POST", route, {"out": str(out)})
        return self._export(started["export"], poll)

    def _export(self, number, poll):
        while True:
            e = self._json("GET", "/v1/exports/{}".format(number))
            if e["state"] == "done":
                return e
            if e["state"] == "failed":
                raise errors.PeerbatchError("get {} failed: {}".format(e["blob"], e["error"]))
            time.sleep(poll)

    # -- functions ----------------------------------------------------------

    def function_keys(self, name):
        """A function's keys, revoked ones too, oldest first: label,
        creator, when made and revoked (never a secret)."""
        return self._json("GET", "/v1/functions/{}/keys".format(_segment(name)))

    def create_function_key(self, name, label=None):
        """Makes a key that opens function ``name`` on every node's
        functions listener (``label``: ``default`` if not given); answers
        ``name``, ``label`` and ``key``, its secret, shown only this once."""
        body = {} if label is None else {"label": label}
        return self._json("POST", "/v1/functions/{}/keys".format(_segment(name)), body)

    def revoke_function_key(self, name, label):
        """Revokes a function's key: it opens nothing on any node once the
        revocation reaches it."""
        path = "/v1/functions/{}/keys/{}".format(_segment(name), _segment(label))
        return self._json("DELETE", path)

    def function_calls(self, name, limit=None):
        """The calls of function ``name`` every connected node ran: their
        figures summed and by node, the newest ``limit`` calls (default 50,
        at most 1,000) newest last, and the nodes that did not answer."""
        path = "/v1/functions/{}/calls".format(_segment(name))
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError("limit must be a whole number of calls, not {!r}".format(limit))
            path += "?limit={}".format(limit)
        return self._json("GET", path)

    def all_function_calls(self):
        """Every function's call figures over the nodes that answered, and
        the nodes that did not."""
        return self._json("GET", "/v1/function-calls")
