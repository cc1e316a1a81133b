"""A fake Hugging Face Hub on 127.0.0.1 for the publishing tests: what `HfApi.create_repo` and
`HfApi.upload_folder` call, storing what it receives into a folder per repo.

huggingface_hub 2.x talks through httpx2 (respx cannot intercept it), so pushes are tested against
a real server on a loopback port: the library's own request building, NDJSON commits, retries and
error mapping all run for real. Standard library only (`ThreadingHTTPServer`, port 0).

    with FakeHubServer(tmp_path / "hub") as hub:
        api = HfApi(endpoint=hub.url, token=hub.token)
        api.create_repo("tester/student", private=True)
        api.upload_folder(repo_id="tester/student", folder_path=folder)
        hub.folder("model", "tester/student")      # the files as they arrived
        hub.fail("create", "server_error")         # the next create answers 500

Endpoints (every one checks `Authorization: Bearer <token>`, else 401):

- `POST /api/repos/create` — 409 if the repo exists (whoever made it), 403 outside the user's
  own namespace and `orgs`;
- `POST /api/validate-yaml` — the README's YAML header must parse to a mapping (400 otherwise);
- `POST /api/{type}s/{owner}/{name}/preupload/{rev}` — every file "regular", with the git oid of
  the stored file of that path (so unchanged files are not committed again);
- `POST /api/{type}s/{owner}/{name}/commit/{rev}` — NDJSON: a header line, then one line per file
  (base64 content) or deleted file; written to `<root>/<type>s/<owner>/<name>/`;
- `GET /api/{type}s/{owner}/{name}[/revision/{rev}]` — repo info (id, sha, private, siblings);
- `GET /api/{type}s/{owner}/{name}/tree/{rev}` — every file (one page; what `list_repo_files`
  and `upload_folder(delete_patterns=...)` read);
- `GET /api/whoami-v2` — the user.

Faults (`hub.fail(endpoint, fault, times=1, repo_type=None)`) apply to the next matching
requests: "unauthorized" (401), "forbidden" (403), "taken" (409), "server_error" (500), "drop"
(the connection closes without an answer). `endpoint` is one of `ENDPOINTS`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

TOKEN = "hf_" + "fakeTokenForTheLoopbackHub0123456789"
USER = "tester"
ENDPOINTS = ("create", "validate", "preupload", "commit", "tree", "info", "whoami")
FAULTS = {"unauthorized": 401, "forbidden": 403, "taken": 409, "server_error": 500, "drop": 0}
_REPO = r"/api/(?P<type>model|dataset|space)s/(?P<repo>[^/]+/[^/]+)"
ROUTES = [
    ("POST", re.compile(r"/api/repos/create"), "create"),
    ("POST", re.compile(r"/api/validate-yaml"), "validate"),
    ("POST", re.compile(_REPO + r"/preupload/(?P<rev>[^/]+)"), "preupload"),
    ("POST", re.compile(_REPO + r"/commit/(?P<rev>[^/]+)"), "commit"),
    ("GET", re.compile(_REPO + r"/tree/(?P<rev>[^/]+)"), "tree"),
    ("GET", re.compile(_REPO + r"(?:/revision/(?P<rev>[^/]+))?"), "info"),
    ("GET", re.compile(r"/api/whoami-v2"), "whoami"),
]


def git_oid(data: bytes) -> str:
    """Git's blob id of `data` (what the Hub reports as a regular file's oid)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    """One repository as stored: files by path, and every commit it received."""

    repo_type: str
    repo_id: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sha(self) -> str:
        return self.commits[-1]["oid"] if self.commits else "0" * 40


@dataclass
class Request:
    """One request as the server saw it and how it answered (status 0: dropped)."""

    method: str
    path: str
    endpoint: str | None
    repo_type: str | None
    status: int = 0
    authorization: str | None = None


@dataclass
class _Rule:
    endpoint: str
    fault: str
    times: int
    repo_type: str | None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self, method: str) -> None:
        hub = self.server.hub
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?", 1)[0]
        endpoint, params = None, {}
        for verb, pattern, name in ROUTES:
            match = pattern.fullmatch(path)
            if verb == method and match:
                endpoint, params = name, match.groupdict()
                break
        repo_type = params.get("type")
        if endpoint == "create":
            with contextlib.suppress(ValueError):
                repo_type = json.loads(raw or b"{}").get("type") or "model"
        record = Request(method, path, endpoint, repo_type, 0, self.headers.get("Authorization"))
        hub._record(record)
        fault = hub._fault(endpoint, repo_type)
        if fault == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault:
            return self._error(record, FAULTS[fault], f"injected fault: {fault}")
        if endpoint is None:
            return self._error(record, 404, f"Unknown route {method} {path}")
        if record.authorization != f"Bearer {hub.token}":
            return self._error(record, 401, "Invalid credentials in Authorization header")
        handler = getattr(self, f"_{endpoint}")
        handler(record, raw, params)

    def _send(self, record: Request, status: int, body: Any, **headers: str) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        record.status = status
        self.wfile.write(data)

    def _error(self, record: Request, status: int, message: str, **headers: str) -> None:
        self._send(record, status, {"error": message}, **headers)

    def _repo(self, record: Request, params: dict) -> Repo | None:
        repo = self.server.hub.repos.get((params["type"], params["repo"]))
        if repo is None:
            self._error(record, 404, "Repository not found", X_Error_Code="RepoNotFound")
        return repo

    def _create(self, record: Request, raw: bytes, params: dict) -> None:
        hub, body = self.server.hub, json.loads(raw or b"{}")
        repo_type = body.get("type") or "model"
        owner = body.get("organization") or hub.user
        repo_id = f"{owner}/{body['name']}"
        if owner not in (hub.user, *hub.orgs):
            message = f'You cannot create a {repo_type} under the namespace "{owner}"'
            return self._error(record, 403, message)
        with hub._lock:
            if (repo_type, repo_id) in hub.repos:
                message = f"You already created this {repo_type} repo"
                return self._error(record, 409, message)
            private = body.get("visibility", "private" if body.get("private") else "public")
            hub.repos[(repo_type, repo_id)] = Repo(repo_type, repo_id, private == "private")
        self._send(record, 200, {"url": hub.repo_url(repo_type, repo_id), "name": repo_id})

    def _validate(self, record: Request, raw: bytes, params: dict) -> None:
        content = json.loads(raw or b"{}").get("content", "")
        match = re.match(r"---\n(.*?)\n---\n", content, re.DOTALL)
        try:
            header = yaml.safe_load(match.group(1)) if match else {}
            ok = isinstance(header, dict)
        except yaml.YAMLError:
            ok = False
        problem = None if ok else "the YAML header is not a mapping"
        if ok:  # what the Hub checks too: the metadata parses as a model or dataset card's
            from huggingface_hub import DatasetCard, ModelCard

            card = DatasetCard if json.loads(raw)["repoType"] == "dataset" else ModelCard
            try:
                card(content)
            except ValueError as err:
                problem = str(err)
        if problem:
            errors = [{"message": problem}]
            return self._send(record, 400, {"errors": errors, "warnings": []})
        self.server.hub.validated.append(header)
        self._send(record, 200, {"errors": [], "warnings": []})

    def _preupload(self, record: Request, raw: bytes, params: dict) -> None:
        repo = self._repo(record, params)
        if repo is None:
            return
        files = []
        for entry in json.loads(raw)["files"]:
            stored = repo.files.get(entry["path"])
            oid = git_oid(stored) if stored is not None else None
            files.append(
                {"path": entry["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": oid}
            )
        self._send(record, 200, {"files": files, "commitOid": repo.sha})

    def _commit(self, record: Request, raw: bytes, params: dict) -> None:
        hub, repo = self.server.hub, self._repo(record, params)
        if repo is None:
            return
        lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        added, deleted = {}, []
        for line in lines:
            value = line["value"]
            if line["key"] == "file":
                added[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "deletedFile":
                deleted.append(value["path"])
            elif line["key"] != "header":
                return self._error(record, 400, f"unsupported commit line {line['key']!r}")
        with hub._lock:
            repo.files.update(added)
            for path in deleted:
                repo.files.pop(path, None)
            oid = hashlib.sha1(f"{repo.repo_id}:{len(repo.commits)}".encode()).hexdigest()
            repo.commits.append({"oid": oid, "summary": header.get("summary"), "files": [*added]})
            hub._write(repo, added, deleted)
        url = f"{hub.repo_url(repo.repo_type, repo.repo_id)}/commit/{oid}"
        self._send(record, 200, {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None})

    def _info(self, record: Request, raw: bytes, params: dict) -> None:
        repo = self._repo(record, params)
        if repo is None:
            return
        siblings = [{"rfilename": path} for path in sorted(repo.files)]
        body = {"id": repo.repo_id, "sha": repo.sha, "private": repo.private}
        self._send(record, 200, {**body, "siblings": siblings})

    def _tree(self, record: Request, raw: bytes, params: dict) -> None:
        repo = self._repo(record, params)
        if repo is None:
            return
        files = [
            {"type": "file", "path": path, "size": len(data), "oid": git_oid(data)}
            for path, data in sorted(repo.files.items())
        ]
        self._send(record, 200, files)

    def _whoami(self, record: Request, raw: bytes, params: dict) -> None:
        hub = self.server.hub
        orgs = [{"name": org} for org in hub.orgs]
        body = {"type": "user", "name": hub.user, "orgs": orgs, "auth": {"type": "access_token"}}
        self._send(record, 200, body)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    hub: FakeHubServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            self.hub.handler_errors.append(repr(error))


class FakeHubServer:
    """A Hub-compatible server on 127.0.0.1:<free port> storing repos under `root`."""

    def __init__(
        self, root: Path, *, token: str = TOKEN, user: str = USER, orgs: tuple[str, ...] = ()
    ) -> None:
        self.root = Path(root)
        self.token, self.user, self.orgs = token, user, tuple(orgs)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[Request] = []
        self.validated: list[dict] = []  # the YAML headers validate-yaml accepted
        self.handler_errors: list[str] = []
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None

    def start(self) -> FakeHubServer:
        """Bind a free loopback port and serve from a daemon thread."""
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.hub = self
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeHubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The endpoint: "http://127.0.0.1:PORT"."""
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def repo_url(self, repo_type: str, repo_id: str) -> str:
        """The repo's page, as the Hub's create answer gives it."""
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.url}/{prefix}{repo_id}"

    # -- what a test sets up and reads ------------------------------------------------------

    def fail(self, endpoint: str, fault: str, times: int = 1, repo_type: str | None = None) -> None:
        """Answer the next `times` requests to `endpoint` (of `repo_type`, if given) with
        `fault`."""
        if endpoint not in ENDPOINTS or fault not in FAULTS:
            raise ValueError(f"endpoint in {ENDPOINTS}, fault in {list(FAULTS)}")
        with self._lock:
            self._rules.append(_Rule(endpoint, fault, times, repo_type))

    def add_repo(self, repo_type: str, repo_id: str, files: dict[str, bytes] | None = None) -> Repo:
        """A repo made by someone else before the test (its name is taken)."""
        repo = Repo(repo_type, repo_id, private=False, files=dict(files or {}))
        self.repos[(repo_type, repo_id)] = repo
        self._write(repo, repo.files, [])
        return repo

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        """The stored repo (KeyError if it was never created)."""
        return self.repos[(repo_type, repo_id)]

    def folder(self, repo_type: str, repo_id: str) -> Path:
        """Where the repo's files are written: `<root>/<type>s/<owner>/<name>`."""
        return self.root / f"{repo_type}s" / repo_id

    def count(self, endpoint: str, repo_type: str | None = None) -> int:
        """Requests received for `endpoint` (of `repo_type`, if given)."""
        return sum(
            1 for r in self.requests if r.endpoint == endpoint and repo_type in (None, r.repo_type)
        )

    # -- used by the handler ----------------------------------------------------------------

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _fault(self, endpoint: str | None, repo_type: str | None) -> str | None:
        with self._lock:
            for rule in self._rules:
                if rule.endpoint == endpoint and rule.repo_type in (None, repo_type):
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rules.remove(rule)
                    return rule.fault
        return None

    def _write(self, repo: Repo, added: dict[str, bytes], deleted: list[str]) -> None:
        folder = self.folder(repo.repo_type, repo.repo_id)
        folder.mkdir(parents=True, exist_ok=True)
        for path, data in added.items():
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        for path in deleted:
            (folder / path).unlink(missing_ok=True)
