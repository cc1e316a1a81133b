"""A fake Hugging Face Hub on 127.0.0.1 for the publishing tests: what `HfApi.create_repo` and
`HfApi.upload_folder` call, storing what it receives into a folder per repo; and for the tests of
whose token a download carries: the files `hf_hub_download` / `from_pretrained` fetch, with every
request's Authorization header logged (`requests`, `requests_for`).

huggingface_hub 2.x talks through httpx2 (respx cannot intercept it), so pushes are tested against
a real server on a loopback port: the library's own request building, NDJSON commits, retries,
large-file uploads and error mapping all run for real. Standard library only
(`ThreadingHTTPServer`, port 0).

    with FakeHubServer(tmp_path / "hub") as hub:
        api = HfApi(endpoint=hub.url, token=hub.token)
        api.create_repo("tester/student", private=True)
        api.upload_folder(repo_id="tester/student", folder_path=folder)
        hub.folder("model", "tester/student")      # the files as they arrived
        hub.repo("model", "tester/student").lfs   # path -> how its large file arrived
        hub.fail("create", "server_error")         # the next create answers 500

Users and visibility. The fake knows several users, each by its token (`add_user`); `token`/`user`
are the first one ("tester"), and "someone" (`OTHER_TOKEN`) exists too. A user writes in its own
namespace and in its `orgs`; a private repo is visible only to the users who may write in its
namespace. As on the real Hub: info, tree, preupload, commit and the large-file endpoints answer
404 "Repository not found" for a repo the user cannot see (a private repo of someone else looks
exactly like no repo), and 403 for a repo it can see but not write; create answers 403 outside
the user's namespaces (whether or not the name exists there) and 409 when the name exists in a
namespace it may write (e.g. an org repo another member made, private or not).

Large files: which way they travel. The Hub's preupload answers "lfs" for what its default
.gitattributes sends to large-file storage (`LFS_PATTERNS`: *.safetensors, *.bin, *.pt, *.parquet,
...), for files over 10 MB and for binary files (a NUL byte in the sample); "regular" (base64 in
the commit) otherwise. What the client then does depends on the client, not on the server:
huggingface_hub 2.4 asks nothing of the server about xet. `upload_folder` uses Xet whenever the
package `hf_xet` imports (a dependency of huggingface_hub on x86_64/arm64, installed here) unless
`HF_HUB_DISABLE_XET` is set; only then does it use classic git-LFS. So the fake implements both:

- Xet (what a push from this project actually uses): `GET /api/{type}s/{repo}/xet-write-token/{rev}`
  (Hub token with write access → a short-lived xet token scoped to that repo, a CAS URL
  `<url>/cas` and its expiry, in the JSON body and in X-Xet-* headers); then, with the xet token
  only (a Hub token is refused there), the CAS API hf_xet 1.8 calls: `GET /cas/v1/chunks/...`
  (global dedup: always 404), `POST /cas/v1/xorb-grants/default/{hash}` (201 and a grant: a
  presigned PUT URL on this server, `/xet-uploads/{grant}?X-Amz-Signature=...`, which must be
  called without any Authorization header, like S3, and must deliver the granted length and
  CRC-64/NVME), `POST /cas/v1/xorb-commits/default/{hash}/grant/{grant}` (404 if nothing arrived),
  `POST /cas/v1/xorbs/default/{hash}` (the direct upload, hf_xet's fallback), and
  `POST /cas/v2/shards` (and v1): the shard is parsed, every file it declares is rebuilt from the
  stored xorbs' chunks (uncompressed, LZ4 or byte-grouped LZ4), its SHA-256 is computed and must
  equal the one the shard declares, and the file is then an object of that repo (answered with the
  NDJSON progress frames and a terminal `result`, or an `error` frame).
- Classic LFS (`HF_HUB_DISABLE_XET=1`, or no hf_xet):
  `POST /{prefix}{repo}.git/info/lfs/objects/batch` (Hub token, write access; per object an
  upload and a verify action, or none if the repo already holds it), then
  `PUT /lfs-uploads/{ticket}?X-Amz-Signature=...` (presigned: the signature is checked and an
  Authorization header is refused, as S3 does; the body's SHA-256 and size must be the granted
  ones) and `POST .../info/lfs/objects/verify` (Hub token; 404 if the object is missing).

Either way the commit then names the file by an `lfsFile` line (sha256 oid and size) instead of
base64 content, and is refused (400) unless that repo holds an object of that oid and size. What
arrived is in `Repo.lfs` (path → `LfsFile(oid, size, via="xet"|"lfs")`), `uploads` (every large
object in arrival order) and, like every file, in `Repo.files` and `folder()`.

Other endpoints (Hub token; 401 for an unknown one):

- `POST /api/repos/create`; `POST /api/validate-yaml` (the README's YAML header must parse to a
  mapping and to a valid card, 400 otherwise);
- `POST /api/{type}s/{owner}/{name}/preupload/{rev}` — upload mode, and the oid of the stored file
  of that path (git blob id, or sha256 for an LFS file) so unchanged files are not committed again;
- `POST /api/{type}s/{owner}/{name}/commit/{rev}` — NDJSON: a header line, then one line per file
  (`file`: base64 content, `lfsFile`: oid + size) or `deletedFile`;
- `GET /api/{type}s/{owner}/{name}[/revision/{rev}]` (info: id, sha, private, siblings; with
  `?blobs=true`, what `model_info(files_metadata=True)` asks, each sibling also has its `size`,
  `blobId` and, for a large file (`lfs_wanted`), `lfs` {sha256, size, pointerSize}; a size a test
  declared with `add_repo(sizes=...)` replaces the stored file's length there and in the tree),
  `GET .../tree/{rev}` (every file, one page), `GET /api/whoami-v2`.

Downloads: `HEAD` and `GET /{owner}/{name}/resolve/{rev}/{path}` (model repos; dataset and Space
repos under `/datasets/` and `/spaces/`) answer a file of the repo with its `X-Repo-Commit` and
`ETag` (no CDN redirect, no xet headers), so `from_pretrained` of a Hub id and `snapshot_download`
of a repo (info, then tree, then each file) work against this fake (`add_folder` puts a model
folder in a repo); the revision in the path is ignored (the head is served). As on the real
Hub, info, tree and resolve also answer a request without any token (anonymous: public repos
only; a private or missing repo is 401 "Repository not found" then, and 404 for a signed-in user
who cannot see it); an unknown token is 401 everywhere.

Faults (`hub.fail(endpoint, fault, times=1, repo_type=None)`) apply to the next matching
requests: "unauthorized" (401), "forbidden" (403), "taken" (409), "server_error" (500), "drop"
(the connection closes without an answer). `endpoint` is one of `ENDPOINTS`.

Not emulated (a test that needs one of these needs more than this fake):

- git itself: one branch, no revisions, refs, tags, pull requests, `parent_commit` checks,
  `.gitattributes`/`.gitignore` files of the repo (preupload always uses the default rules), commit
  history beyond a list; `create_pr`, `revision` and the `/revision/` of info are ignored;
- LFS multipart uploads (objects over the part size get a single PUT here), LFS file copies
  between repos, real presigned-URL expiry, object storage shared between repos;
- Xet: global deduplication (every chunk query answers 404), chunk/xorb/file merkle hashes (blake3:
  the xorb hash in the URL and the shard's file hash are not recomputed), the shard footer and
  verification entries (read past, not checked), xorb size limits, xet downloads (no
  reconstruction API: files are served whole, by `resolve`), token refresh on expiry;
- accounts: token scopes (every token may write where its user may), fine-grained tokens, org
  roles (every member reads and writes every org repo), gated repos, rate limits (429), quotas,
  repo renames/moves, visibility changes after creation, Spaces' hardware and builds;
- validation beyond the card's YAML: file size limits, the 10 MB / binary rule for regular files
  (a regular file is accepted whatever it holds).
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import hmac
import json
import re
import secrets
import socket
import struct
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

TOKEN = "hf_" + "fakeTokenForTheLoopbackHub0123456789"
USER = "tester"
OTHER_TOKEN = "hf_" + "fakeTokenOfSomeoneElse0123456789abcd"
OTHER_USER = "someone"
HUB_ENDPOINTS = (
    "create", "validate", "preupload", "commit", "tree", "info", "whoami", "xet_token",
    "lfs_batch", "lfs_verify", "resolve",
)  # fmt: skip
ANONYMOUS_READS = ("info", "tree", "resolve")  # answered without a token too (public repos)
CAS_ENDPOINTS = ("chunk", "xorb_grant", "xorb_commit", "xorb", "shard")  # the xet token's
PRESIGNED_ENDPOINTS = ("xorb_upload", "lfs_upload")  # no Authorization: a signed URL
ENDPOINTS = HUB_ENDPOINTS + CAS_ENDPOINTS + PRESIGNED_ENDPOINTS
FAULTS = {"unauthorized": 401, "forbidden": 403, "taken": 409, "server_error": 500, "drop": 0}
# The Hub's default .gitattributes (what it stores in large-file storage), model and dataset repos.
LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
    "*.lz4", "*.mds", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot",
    "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors",
    "*.tar", "*.tar.*", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
    "*.mp3", "*.ogg", "*.wav", "*.flac", "*.jpg", "*.jpeg", "*.png", "*.webp", "*.gif", "*.mp4",
)  # fmt: skip
LFS_SIZE = 10 * 1000 * 1000  # larger files go to large-file storage whatever their name
_SECRET = secrets.token_bytes(16)  # signs the presigned URLs

_REPO = r"/api/(?P<type>model|dataset|space)s/(?P<repo>[^/]+/[^/]+)"
_GIT = r"/(?:(?P<type>dataset|space)s/)?(?P<repo>[^/]+/[^/]+?)\.git/info/lfs/objects"
_HASH = r"(?P<hash>[0-9a-f]{64})"
_PREFIXED = r"/(?P<type>dataset|space)s/(?P<repo>[^/]+/[^/]+)"
ROUTES = [
    ("POST", re.compile(r"/api/repos/create"), "create"),
    ("POST", re.compile(r"/api/validate-yaml"), "validate"),
    ("POST", re.compile(_REPO + r"/preupload/(?P<rev>[^/]+)"), "preupload"),
    ("POST", re.compile(_REPO + r"/commit/(?P<rev>[^/]+)"), "commit"),
    ("GET", re.compile(_REPO + r"/xet-write-token/(?P<rev>[^/]+)"), "xet_token"),
    ("GET", re.compile(_REPO + r"/tree/(?P<rev>[^/]+)"), "tree"),
    ("GET", re.compile(_REPO + r"(?:/revision/(?P<rev>[^/]+))?"), "info"),
    ("GET", re.compile(r"/api/whoami-v2"), "whoami"),
    ("POST", re.compile(_GIT + r"/batch"), "lfs_batch"),
    ("POST", re.compile(_GIT + r"/verify"), "lfs_verify"),
    ("PUT", re.compile(r"/lfs-uploads/(?P<ticket>[0-9a-f]+)"), "lfs_upload"),
    ("GET", re.compile(r"/cas/v1/chunks/(?P<prefix>[^/]+)/" + _HASH), "chunk"),
    ("POST", re.compile(r"/cas/v1/xorb-grants/(?P<prefix>[^/]+)/" + _HASH), "xorb_grant"),
    ("PUT", re.compile(r"/xet-uploads/(?P<grant>[0-9a-f]+)"), "xorb_upload"),
    (
        "POST",
        re.compile(r"/cas/v1/xorb-commits/(?P<prefix>[^/]+)/" + _HASH + r"/grant/(?P<grant>\w+)"),
        "xorb_commit",
    ),
    ("POST", re.compile(r"/cas/v1/xorbs/(?P<prefix>[^/]+)/" + _HASH), "xorb"),
    ("POST", re.compile(r"/cas/v(?P<version>[12])/shards"), "shard"),
    ("POST", re.compile(r"(?:/cas)?/v1/telemetry"), "telemetry"),  # hf_xet's; accepted, dropped
    # Downloads (`hf_hub_download`, `from_pretrained`, `snapshot_download`): dataset and Space
    # repos under their prefix, model repos without one.
    ("HEAD", re.compile(_PREFIXED + r"/resolve/(?P<rev>[^/]+)/(?P<file>.+)"), "resolve"),
    ("GET", re.compile(_PREFIXED + r"/resolve/(?P<rev>[^/]+)/(?P<file>.+)"), "resolve"),
    ("HEAD", re.compile(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)"), "resolve"),
    ("GET", re.compile(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)"), "resolve"),
]


def git_oid(data: bytes) -> str:
    """Git's blob id of `data` (what the Hub reports as a regular file's oid)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def lfs_wanted(path: str, size: int, sample: bytes) -> bool:
    """Whether the Hub's preupload answers "lfs" for this file."""
    name = path.rsplit("/", 1)[-1]
    patterns = any(fnmatch.fnmatchcase(name, p) for p in LFS_PATTERNS)
    return patterns or size > LFS_SIZE or b"\0" in sample


def _sign(*parts: str) -> str:
    return hmac.new(_SECRET, "|".join(parts).encode(), hashlib.sha256).hexdigest()


# -- Xet's formats: LZ4, byte grouping, xorbs, shards, CRC-64/NVME --------------------------------


def lz4_block(src: bytes, out: bytearray) -> None:
    """Decode one LZ4 block onto `out` (matches may reach back into what `out` holds)."""
    i, n = 0, len(src)
    while i < n:
        token = src[i]
        i += 1
        length = token >> 4
        if length == 15:
            while True:
                extra = src[i]
                i += 1
                length += extra
                if extra != 255:
                    break
        out += src[i : i + length]
        i += length
        if i >= n:
            return
        offset = src[i] | src[i + 1] << 8
        i += 2
        if offset == 0 or offset > len(out):
            raise ValueError("LZ4: bad match offset")
        length = (token & 15) + 4
        if length == 19:
            while True:
                extra = src[i]
                i += 1
                length += extra
                if extra != 255:
                    break
        start = len(out) - offset
        if length <= offset:
            out += out[start : start + length]
        else:
            for k in range(length):
                out.append(out[start + k])


def lz4_decompress(data: bytes) -> bytes:
    """An LZ4 frame (as lz4_flex writes it), else one raw LZ4 block."""
    out = bytearray()
    if data[:4] != b"\x04\x22\x4d\x18":
        lz4_block(data, out)
        return bytes(out)
    flags = data[4]
    i = 6 + (8 if flags & 0x08 else 0) + (4 if flags & 0x01 else 0) + 1  # header + its checksum
    block_checksum = bool(flags & 0x10)
    while True:
        (size,) = struct.unpack_from("<I", data, i)
        i += 4
        if size == 0:
            break
        raw, size = bool(size & 0x80000000), size & 0x7FFFFFFF
        block = data[i : i + size]
        i += size + (4 if block_checksum else 0)
        if raw:
            out += block
        else:
            lz4_block(block, out)
    return bytes(out)


def bg4_ungroup(grouped: bytes) -> bytes:
    """Undo Xet's 4-way byte grouping."""
    n = len(grouped)
    out, start = bytearray(n), 0
    for g in range(4):
        size = n // 4 + (1 if g < n % 4 else 0)
        out[g::4] = grouped[start : start + size]
        start += size
    return bytes(out)


def xorb_chunks(data: bytes, count: int | None = None) -> list[bytes]:
    """The uncompressed chunks of a serialized xorb (the first `count`, else until its footer)."""
    chunks, i = [], 0
    while i + 8 <= len(data) and (count is None or len(chunks) < count):
        version, compressed, scheme, size = (
            data[i],
            data[i + 1 : i + 4],
            data[i + 4],
            data[i + 5 : i + 8],
        )
        compressed, size = int.from_bytes(compressed, "little"), int.from_bytes(size, "little")
        if version != 0 or scheme > 2:
            if count is None:
                break  # the footer
            raise ValueError(f"xorb chunk {len(chunks)}: version {version}, scheme {scheme}")
        body = data[i + 8 : i + 8 + compressed]
        i += 8 + compressed
        if scheme == 0:
            chunk = body
        elif scheme == 1:
            chunk = lz4_decompress(body)
        else:
            chunk = bg4_ungroup(lz4_decompress(body))
        if len(chunk) != size:
            raise ValueError(f"xorb chunk {len(chunks)}: {len(chunk)} bytes, header says {size}")
        chunks.append(chunk)
    return chunks


@dataclass
class ShardFile:
    """One file a shard declares: its terms (xorb hash, first chunk, end chunk) and sha256."""

    file_hash: str
    terms: list[tuple[str, int, int, int]]  # xorb hash, chunk start, chunk end, unpacked bytes
    sha256: str | None


_BOOKEND = b"\xff" * 32


def merkle_hex(raw: bytes) -> str:
    """A xet hash as URLs spell it: four little-endian u64 words, each printed as 16 hex digits."""
    return "".join(f"{word:016x}" for word in struct.unpack("<4Q", raw))


def parse_shard(data: bytes) -> tuple[list[ShardFile], dict[str, int]]:
    """A shard's files, and its xorbs (hash → number of chunks)."""
    if len(data) < 48 or struct.unpack_from("<Q", data, 32)[0] != 2:
        raise ValueError("not a version-2 shard")
    i, files = 48, []
    while data[i : i + 32] != _BOOKEND:
        file_hash = merkle_hex(data[i : i + 32])
        flags, entries = struct.unpack_from("<II", data, i + 32)
        i += 48
        terms = []
        for _ in range(entries):
            xorb = merkle_hex(data[i : i + 32])
            _, unpacked, start, end = struct.unpack_from("<IIII", data, i + 32)
            terms.append((xorb, start, end, unpacked))
            i += 48
        if flags & 0x80000000:  # verification entries: read past
            i += 48 * entries
        digest = None
        if flags & 0x40000000:
            digest = merkle_hex(data[i : i + 32])  # stored like the xet hashes
            i += 48
        files.append(ShardFile(file_hash, terms, digest))
    i += 48
    xorbs = {}
    while i + 48 <= len(data) and data[i : i + 32] != _BOOKEND:
        (entries,) = struct.unpack_from("<I", data, i + 36)
        xorbs[merkle_hex(data[i : i + 32])] = entries
        i += 48 + 48 * entries
    return files, xorbs


def _crc64_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x9A6C9329AC4BC9B5 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC64 = _crc64_table()


def crc64nvme(data: bytes) -> int:
    """CRC-64/NVME (what hf_xet declares for a xorb, and S3 checks)."""
    crc, table = 0xFFFFFFFFFFFFFFFF, _CRC64
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


@dataclass
class LfsFile:
    """How a large file of a repo arrived: its sha256, size, and "xet" or "lfs"."""

    oid: str
    size: int
    via: str


@dataclass
class Repo:
    """One repository as stored: files by path, and every commit it received."""

    repo_type: str
    repo_id: str
    private: bool
    creator: str = USER
    files: dict[str, bytes] = field(default_factory=dict)
    lfs: dict[str, LfsFile] = field(default_factory=dict)  # the files committed by `lfsFile`
    objects: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # sha256 → (data, via)
    commits: list[dict[str, Any]] = field(default_factory=list)
    # Sizes that info and tree report instead of a stored file's length: a large file a test does
    # not store whole (resolve still serves the stored bytes).
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def sha(self) -> str:
        return self.commits[-1]["oid"] if self.commits else "0" * 40

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/", 1)[0]


@dataclass
class Request:
    """One request as the server saw it and how it answered (status 0: dropped); `user`: whose
    Hub token or xet token it carried."""

    method: str
    path: str
    endpoint: str | None
    repo_type: str | None
    status: int = 0
    authorization: str | None = None
    user: str | None = None
    repo: str | None = None  # the repo id the path names, if any
    query: str = ""  # the query string ("blobs=true": the info with each file's size)


@dataclass
class Upload:
    """A large object that arrived for a repo."""

    repo_type: str
    repo_id: str
    oid: str
    size: int
    via: str  # "xet" or "lfs"


@dataclass
class _XetToken:
    user: str
    repo_type: str
    repo_id: str
    expires: int


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

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = bytearray()
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                raw += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers, then the blank line
                pass
            return bytes(raw)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self, method: str) -> None:
        hub = self.server.hub
        raw = self._body()
        path, _, query = self.path.partition("?")
        endpoint, params = None, {}
        for verb, pattern, name in ROUTES:
            match = pattern.fullmatch(path)
            if verb == method and match:
                endpoint, params = name, {k: v for k, v in match.groupdict().items() if v}
                break
        if endpoint in ("lfs_batch", "lfs_verify", "resolve"):
            params.setdefault("type", "model")
        params["query"] = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        repo_type = params.get("type")
        if endpoint == "create":
            with contextlib.suppress(ValueError):
                repo_type = json.loads(raw or b"{}").get("type") or "model"
        authorization = self.headers.get("Authorization")
        record = Request(method, path, endpoint, repo_type, 0, authorization)
        record.repo = params.get("repo")
        record.query = query
        if endpoint == "telemetry":
            return self._send(record, 200, {})
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
        if endpoint in HUB_ENDPOINTS:
            token = (authorization or "").removeprefix("Bearer ")
            record.user = hub.users.get(token)
            anonymous = authorization is None and endpoint in ANONYMOUS_READS
            if record.user is None and not anonymous:
                return self._error(record, 401, "Invalid credentials in Authorization header")
        elif endpoint in CAS_ENDPOINTS:
            xet = hub._xet_tokens.get((authorization or "").removeprefix("Bearer "))
            if xet is None or xet.expires < time.time():
                return self._error(record, 401, "invalid or expired xet token")
            record.user, params["xet"] = xet.user, xet
        elif authorization is not None:  # S3 refuses a second way to authenticate
            message = "Only one auth mechanism allowed; only the X-Amz-Signature is accepted"
            return self._error(record, 400, message)
        getattr(self, f"_{endpoint}")(record, raw, params)

    def _send(self, record: Request, status: int, body: Any, **headers: str) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        if not isinstance(body, bytes):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        record.status = status
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, record: Request, status: int, message: str, **headers: str) -> None:
        self._send(record, status, {"error": message}, **headers)

    def _repo(self, record: Request, params: dict, write: bool = False) -> Repo | None:
        """The repo, if this user can see it (else 404, as for no repo) and, with `write`,
        write to it (else 403)."""
        hub = self.server.hub
        repo = hub.repos.get((params["type"], params["repo"]))
        if repo is None or not hub.can_read(record.user, repo):
            # The Hub answers an anonymous request 401, a signed-in one 404: the same either way.
            status = 401 if record.user is None else 404
            self._error(record, status, "Repository not found", X_Error_Code="RepoNotFound")
            return None
        if write and not hub.can_write(record.user, repo):
            message = f"You don't have the rights to write to {repo.repo_type}s/{repo.repo_id}"
            self._error(record, 403, message)
            return None
        return repo

    def _create(self, record: Request, raw: bytes, params: dict) -> None:
        hub, body = self.server.hub, json.loads(raw or b"{}")
        repo_type = body.get("type") or "model"
        owner = body.get("organization") or record.user
        repo_id = f"{owner}/{body['name']}"
        if owner not in hub.namespaces(record.user):
            message = (
                f'You don\'t have the rights to create a {repo_type} under the namespace "{owner}"'
            )
            return self._error(record, 403, message)
        url = hub.repo_url(repo_type, repo_id)
        with hub._lock:
            if (repo_type, repo_id) in hub.repos:
                message = f"You already created this {repo_type} repo"
                return self._send(record, 409, {"error": message, "url": url})
            private = body.get("visibility", "private" if body.get("private") else "public")
            repo = Repo(repo_type, repo_id, private == "private", creator=record.user)
            hub.repos[(repo_type, repo_id)] = repo
        self._send(record, 200, {"url": url, "name": repo_id})

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
        repo = self._repo(record, params, write=True)
        if repo is None:
            return
        files = []
        for entry in json.loads(raw)["files"]:
            sample = base64.b64decode(entry.get("sample") or "")
            mode = "lfs" if lfs_wanted(entry["path"], entry.get("size", 0), sample) else "regular"
            stored = repo.files.get(entry["path"])
            oid = None
            if stored is not None:
                oid = sha256(stored) if mode == "lfs" else git_oid(stored)
            files.append(
                {"path": entry["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid}
            )
        self._send(record, 200, {"files": files, "commitOid": repo.sha})

    def _commit(self, record: Request, raw: bytes, params: dict) -> None:
        hub, repo = self.server.hub, self._repo(record, params, write=True)
        if repo is None:
            return
        lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        added, large, deleted = {}, {}, []
        for line in lines:
            value = line["value"]
            if line["key"] == "file":
                added[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                stored = repo.objects.get(value["oid"])
                if value.get("algo", "sha256") != "sha256" or stored is None:
                    message = (
                        f"Your push was rejected because an LFS pointer pointed to a file that "
                        f"does not exist: {value['path']} ({value['oid']})"
                    )
                    return self._error(record, 400, message)
                data, via = stored
                if value.get("size", len(data)) != len(data):
                    return self._error(record, 400, f"{value['path']}: size mismatch")
                added[value["path"]] = data
                large[value["path"]] = LfsFile(value["oid"], len(data), via)
            elif line["key"] == "deletedFile":
                deleted.append(value["path"])
            elif line["key"] != "header":
                return self._error(record, 400, f"unsupported commit line {line['key']!r}")
        with hub._lock:
            repo.files.update(added)
            for path in added:
                repo.lfs.pop(path, None)
            repo.lfs.update(large)
            for path in deleted:
                repo.files.pop(path, None)
                repo.lfs.pop(path, None)
            oid = hashlib.sha1(f"{repo.repo_id}:{len(repo.commits)}".encode()).hexdigest()
            summary = header.get("summary")
            repo.commits.append(
                {"oid": oid, "summary": summary, "files": [*added], "user": record.user}
            )
            hub._write(repo, added, deleted)
        url = f"{hub.repo_url(repo.repo_type, repo.repo_id)}/commit/{oid}"
        self._send(record, 200, {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None})

    def _info(self, record: Request, raw: bytes, params: dict) -> None:
        repo = self._repo(record, params)
        if repo is None:
            return
        siblings = [{"rfilename": path} for path in sorted(repo.files)]
        if params["query"].get("blobs", "").lower() == "true":  # files_metadata=True
            for sibling in siblings:
                path = sibling["rfilename"]
                data = repo.files[path]
                size = repo.sizes.get(path, len(data))
                sibling.update(size=size, blobId=git_oid(data))
                if path in repo.lfs or lfs_wanted(path, size, data[:1024]):
                    oid = repo.lfs[path].oid if path in repo.lfs else sha256(data)
                    sibling["lfs"] = {"sha256": oid, "size": size, "pointerSize": 134}
        body = {"id": repo.repo_id, "sha": repo.sha, "private": repo.private}
        self._send(record, 200, {**body, "siblings": siblings})

    def _tree(self, record: Request, raw: bytes, params: dict) -> None:
        repo = self._repo(record, params)
        if repo is None:
            return
        files = []
        for path, data in sorted(repo.files.items()):
            size = repo.sizes.get(path, len(data))
            entry = {"type": "file", "path": path, "size": size, "oid": git_oid(data)}
            if path in repo.lfs:
                entry["lfs"] = {"oid": repo.lfs[path].oid, "size": size, "pointerSize": 134}
            files.append(entry)
        self._send(record, 200, files)

    def _resolve(self, record: Request, raw: bytes, params: dict) -> None:
        """A file of the repo's head (HEAD: its metadata only), as the Hub serves a small file:
        no redirect to a CDN and no xet headers, so the client downloads it from here."""
        repo = self._repo(record, params)
        if repo is None:
            return
        path = urllib.parse.unquote(params["file"])  # the client quotes the file's path
        data = repo.files.get(path)
        if data is None:
            return self._error(record, 404, "Entry not found", X_Error_Code="EntryNotFound")
        etag = repo.lfs[path].oid if path in repo.lfs else git_oid(data)
        self._send(record, 200, data, X_Repo_Commit=repo.sha, ETag=f'"{etag}"')

    def _whoami(self, record: Request, raw: bytes, params: dict) -> None:
        hub = self.server.hub
        orgs = [{"name": org} for org in hub.orgs_of.get(record.user, ())]
        body = {"type": "user", "name": record.user, "orgs": orgs, "auth": {"type": "access_token"}}
        self._send(record, 200, body)

    # -- classic LFS ------------------------------------------------------------------------

    def _lfs_batch(self, record: Request, raw: bytes, params: dict) -> None:
        hub, repo = self.server.hub, self._repo(record, params, write=True)
        if repo is None:
            return
        body = json.loads(raw or b"{}")
        if body.get("operation") != "upload" or body.get("hash_algo", "sha256") != "sha256":
            return self._error(record, 400, "only sha256 uploads are supported")
        base = hub.git_url(repo.repo_type, repo.repo_id)
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            answer = {"oid": oid, "size": size, "authenticated": True}
            if oid not in repo.objects:
                ticket = secrets.token_hex(8)
                with hub._lock:
                    hub._tickets[ticket] = (repo.repo_type, repo.repo_id, oid, size)
                signature = _sign("lfs", ticket)
                answer["actions"] = {
                    "upload": {
                        "href": f"{hub.url}/lfs-uploads/{ticket}?X-Amz-Signature={signature}"
                    },
                    "verify": {"href": f"{base}/info/lfs/objects/verify"},
                }
            objects.append(answer)
        self._send(record, 200, {"transfer": "basic", "objects": objects})

    def _lfs_upload(self, record: Request, raw: bytes, params: dict) -> None:
        hub = self.server.hub
        ticket = hub._tickets.get(params["ticket"])
        signature = params["query"].get("X-Amz-Signature", "")
        if ticket is None or not hmac.compare_digest(signature, _sign("lfs", params["ticket"])):
            return self._error(record, 403, "SignatureDoesNotMatch")
        repo_type, repo_id, oid, size = ticket
        record.repo_type = repo_type
        if len(raw) != size or sha256(raw) != oid:
            message = (
                f"BadDigest: got {len(raw)} bytes of sha256 {sha256(raw)}, not {size} of {oid}"
            )
            return self._error(record, 400, message)
        hub._store_object(repo_type, repo_id, raw, "lfs")
        self._send(record, 200, b"")

    def _lfs_verify(self, record: Request, raw: bytes, params: dict) -> None:
        repo = self._repo(record, params, write=True)
        if repo is None:
            return
        body = json.loads(raw or b"{}")
        stored = repo.objects.get(body.get("oid", ""))
        if stored is None or len(stored[0]) != body.get("size"):
            return self._error(record, 404, "Object not found")
        self._send(record, 200, {"success": True})

    # -- Xet -------------------------------------------------------------------------------

    def _xet_token(self, record: Request, raw: bytes, params: dict) -> None:
        hub, repo = self.server.hub, self._repo(record, params, write=True)
        if repo is None:
            return
        token, expires = "xet_" + secrets.token_hex(12), int(time.time()) + 3600
        with hub._lock:
            hub._xet_tokens[token] = _XetToken(record.user, repo.repo_type, repo.repo_id, expires)
        cas = f"{hub.url}/cas"
        body = {"accessToken": token, "exp": expires, "casUrl": cas}
        headers = {"X-Xet-Cas-Url": cas, "X-Xet-Access-Token": token}
        self._send(record, 200, body, **headers, X_Xet_Token_Expiration=str(expires))

    def _chunk(self, record: Request, raw: bytes, params: dict) -> None:
        self._error(record, 404, "chunk not tracked by global deduplication")

    def _xorb_grant(self, record: Request, raw: bytes, params: dict) -> None:
        hub, body = self.server.hub, json.loads(raw or b"{}")
        if params["hash"] in hub.xorbs:
            return self._send(record, 200, {})  # already stored: nothing to upload
        grant = secrets.token_hex(8)
        checksum = body.get("checksum") or {}
        if checksum.get("algo") != "crc64nvme":
            return self._error(record, 400, "a crc64nvme checksum is required")
        with hub._lock:
            hub._grants[grant] = {
                "hash": params["hash"], "length": int(body["length"]),
                "crc": int(checksum["value"]), "data": None,
            }  # fmt: skip
        signature = _sign("xet", grant)
        url = f"{hub.url}/xet-uploads/{grant}?X-Amz-Signature={signature}"
        headers = {"Content-Type": "application/octet-stream"}
        self._send(record, 201, {"id": grant, "method": "PUT", "url": url, "headers": headers})

    def _xorb_upload(self, record: Request, raw: bytes, params: dict) -> None:
        hub = self.server.hub
        grant = hub._grants.get(params["grant"])
        signature = params["query"].get("X-Amz-Signature", "")
        if grant is None or not hmac.compare_digest(signature, _sign("xet", params["grant"])):
            return self._error(record, 403, "SignatureDoesNotMatch")
        if len(raw) != grant["length"] or crc64nvme(raw) != grant["crc"]:
            return self._error(record, 400, "BadDigest: the xorb's length or CRC-64/NVME differs")
        grant["data"] = raw
        self._send(record, 200, b"")

    def _xorb_commit(self, record: Request, raw: bytes, params: dict) -> None:
        hub = self.server.hub
        grant = hub._grants.get(params["grant"])
        if grant is None or grant["hash"] != params["hash"] or grant["data"] is None:
            return self._error(record, 404, "no data was uploaded for this grant")
        self._store_xorb(record, params["hash"], grant["data"])

    def _xorb(self, record: Request, raw: bytes, params: dict) -> None:
        self._store_xorb(record, params["hash"], raw)

    def _store_xorb(self, record: Request, xorb_hash: str, data: bytes) -> None:
        hub = self.server.hub
        try:
            xorb_chunks(data)
        except (ValueError, IndexError, struct.error) as err:
            return self._error(record, 400, f"xorb is incorrectly serialized: {err}")
        with hub._lock:
            inserted = xorb_hash not in hub.xorbs
            hub.xorbs[xorb_hash] = data
        self._send(record, 200, {"was_inserted": inserted})

    def _shard(self, record: Request, raw: bytes, params: dict) -> None:
        hub, xet = self.server.hub, params["xet"]
        problem, rebuilt = None, []
        try:
            files, _ = parse_shard(raw)
            for declared in files:
                data = bytearray()
                for xorb_hash, start, end, unpacked in declared.terms:
                    if xorb_hash not in hub.xorbs:
                        raise ValueError(f"xorb {xorb_hash} was never uploaded")
                    chunks = xorb_chunks(hub.xorbs[xorb_hash], end)[start:end]
                    if sum(map(len, chunks)) != unpacked:
                        raise ValueError(f"xorb {xorb_hash}[{start}:{end}] is not {unpacked} bytes")
                    data += b"".join(chunks)
                if declared.sha256 is None:
                    raise ValueError(f"file {declared.file_hash} has no sha256 (metadata ext)")
                if sha256(data) != declared.sha256:
                    raise ValueError(f"file {declared.file_hash}: the sha256 of its bytes differs")
                rebuilt.append(bytes(data))
        except (ValueError, IndexError, struct.error) as err:
            problem = f"shard failed verification: {err}"
        if problem and params.get("version") == "1":
            return self._error(record, 400, problem)
        for data in rebuilt if not problem else []:
            hub._store_object(xet.repo_type, xet.repo_id, data, "xet")
        if params.get("version") == "1":
            return self._send(record, 200, {"result": 1})
        frames = [{"type": "validating", "verified": 0, "total": 1}]
        if problem:
            frames.append({"type": "error", "message": problem, "retryable": False})
        else:
            frames += [
                {"type": "validating", "verified": 1, "total": 1},
                {"type": "committing", "stage": "uploading"},
                {"type": "committing", "stage": "syncing"},
                {"type": "result"},
            ]
        body = b"".join(json.dumps(frame).encode() + b"\n" for frame in frames)
        self._send(record, 200, body, Content_Type="application/x-ndjson")


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
        self.users: dict[str, str] = {}  # token → user name
        self.orgs_of: dict[str, tuple[str, ...]] = {}
        self.add_user(user, token, orgs)
        if user != OTHER_USER and token != OTHER_TOKEN:
            self.add_user(OTHER_USER, OTHER_TOKEN)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[Request] = []
        self.validated: list[dict] = []  # the YAML headers validate-yaml accepted
        self.uploads: list[Upload] = []  # every large object, in arrival order
        self.xorbs: dict[str, bytes] = {}  # xet's content-addressed storage (all repos)
        self.handler_errors: list[str] = []
        self._rules: list[_Rule] = []
        self._tickets: dict[str, tuple[str, str, str, int]] = {}  # LFS upload URLs
        self._grants: dict[str, dict[str, Any]] = {}  # xorb upload grants
        self._xet_tokens: dict[str, _XetToken] = {}
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

    def git_url(self, repo_type: str, repo_id: str) -> str:
        """The repo's git remote (`.../OWNER/NAME.git`), where the LFS endpoints live."""
        return f"{self.repo_url(repo_type, repo_id)}.git"

    # -- users -------------------------------------------------------------------------------

    def add_user(self, name: str, token: str, orgs: tuple[str, ...] = ()) -> None:
        """Another account: `token` authenticates `name`, who writes in its namespace and `orgs`."""
        self.users[token] = name
        self.orgs_of[name] = tuple(orgs)

    def namespaces(self, user: str | None) -> tuple[str, ...]:
        """Where `user` may create and write repos."""
        return (user, *self.orgs_of.get(user, ())) if user else ()

    def can_read(self, user: str | None, repo: Repo) -> bool:
        return not repo.private or repo.namespace in self.namespaces(user)

    def can_write(self, user: str | None, repo: Repo) -> bool:
        return repo.namespace in self.namespaces(user)

    # -- what a test sets up and reads ------------------------------------------------------

    def fail(self, endpoint: str, fault: str, times: int = 1, repo_type: str | None = None) -> None:
        """Answer the next `times` requests to `endpoint` (of `repo_type`, if given) with
        `fault`."""
        if endpoint not in ENDPOINTS or fault not in FAULTS:
            raise ValueError(f"endpoint in {ENDPOINTS}, fault in {list(FAULTS)}")
        with self._lock:
            self._rules.append(_Rule(endpoint, fault, times, repo_type))

    def add_repo(
        self,
        repo_type: str,
        repo_id: str,
        files: dict[str, bytes] | None = None,
        *,
        private: bool = False,
        creator: str | None = None,
        sizes: dict[str, int] | None = None,
    ) -> Repo:
        """A repo made before the test (its name is taken), public unless `private`, by
        `creator` (default: the owner of its namespace); `sizes`: what info and tree report as
        the size of some of its files instead of their length (a 13 GB weight file, stored as a
        few bytes)."""
        creator = creator or repo_id.split("/", 1)[0]
        repo = Repo(repo_type, repo_id, private=private, creator=creator, files=dict(files or {}))
        repo.sizes = dict(sizes or {})
        self.repos[(repo_type, repo_id)] = repo
        self._write(repo, repo.files, [])
        return repo

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        """The stored repo (KeyError if it was never created)."""
        return self.repos[(repo_type, repo_id)]

    def folder(self, repo_type: str, repo_id: str) -> Path:
        """Where the repo's files are written: `<root>/<type>s/<owner>/<name>`."""
        return self.root / f"{repo_type}s" / repo_id

    def add_folder(
        self, repo_id: str, folder: Path, *, private: bool = False, repo_type: str = "model"
    ) -> Repo:
        """A repo made before the test holding every file of `folder` (a model folder that
        `from_pretrained(repo_id)` then downloads)."""
        root = Path(folder)
        paths = [p for p in root.rglob("*") if p.is_file()]
        files = {p.relative_to(root).as_posix(): p.read_bytes() for p in paths}
        return self.add_repo(repo_type, repo_id, files, private=private)

    def requests_for(self, repo_id: str) -> list[Request]:
        """The requests that named repo `repo_id` (its info, tree, files), in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.repo == repo_id]

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

    def _store_object(self, repo_type: str, repo_id: str, data: bytes, via: str) -> None:
        oid = sha256(data)
        with self._lock:
            self.repos[(repo_type, repo_id)].objects[oid] = (data, via)
            self.uploads.append(Upload(repo_type, repo_id, oid, len(data), via))

    def _write(self, repo: Repo, added: dict[str, bytes], deleted: list[str]) -> None:
        folder = self.folder(repo.repo_type, repo.repo_id)
        folder.mkdir(parents=True, exist_ok=True)
        for path, data in added.items():
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        for path in deleted:
            (folder / path).unlink(missing_ok=True)


def use_fake_hub(monkeypatch: Any, hub: FakeHubServer, hf_home: Path) -> None:
    """Make this process's huggingface_hub (and transformers) talk to `hub` as if it had started
    with `HF_ENDPOINT=hub.url`, online, its cache in `hf_home/hub` and no token file, for the
    rest of a test (`monkeypatch`, pytest's: everything is restored after it)."""
    from huggingface_hub import constants

    hf_home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)  # for the jobs a test starts
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    template = hub.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    import transformers.utils.hub as transformers_hub

    monkeypatch.setattr(transformers_hub, "_hf_api", None)  # made again, on the fake's endpoint
