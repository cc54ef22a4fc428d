"""Running the API server: as an async context manager, or in a background thread.

    async with EmbeddedAPIServer(state_dir) as api:
        ... api.url, api.token, api.kubeconfig_path ...

    handle = EmbeddedAPIServer.run_in_thread(state_dir)
    try: ... handle.kubeconfig_path ...
    finally: handle.stop()

The state directory holds ``state.db`` (SQLite), ``token`` (kept across restarts, mode
0600), ``sa-signing.key`` (the key of ServiceAccount tokens, mode 0600) and ``kubeconfig``.
``authorization_mode="RBAC"`` enforces the stored RBAC objects (default ``AlwaysAllow``).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from infergate.api import yamlload
from infergate.apiserver import builtin_schemas
from infergate.apiserver.authn import SIGNING_KEY_NAME, load_or_create_signing_key
from infergate.apiserver.server import APIServer, SubresourceHandler
from infergate.apiserver.store import Store
from infergate.apiserver.tls import KEY_NAME, ensure_certificate, server_context
from infergate.apiserver.validation import Admission
from infergate.util.files import private_dir, private_file, write_private

DB_NAME = "state.db"
TOKEN_NAME = "token"
KUBECONFIG_NAME = "kubeconfig"
HTTP_LINE_BYTES = 64 * 1024  # what aiohttp parses; the API server refuses more than 8 KiB with a Status


def _documents(objects: Iterable[dict[str, Any]] | str) -> list[dict[str, Any]]:
    if isinstance(objects, str):
        return [doc for doc in yamlload.load_all(objects) if isinstance(doc, dict)]
    return list(objects)


def load_or_create_token(state_dir: Path) -> str:
    path = state_dir / TOKEN_NAME
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    write_private(path, token + "\n")
    return token


def kubeconfig_text(url: str, token: str, ca_pem: bytes, name: str = "infergate") -> str:
    ca_data = base64.b64encode(ca_pem).decode()
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: {name}\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca_data}\n"
        f"users:\n- name: {name}\n  user:\n    token: {token}\n"
        f"contexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: default\n"
        f"current-context: {name}\n"
    )


def write_kubeconfig(path: Path, url: str, token: str, ca_pem: bytes) -> None:
    write_private(path, kubeconfig_text(url, token, ca_pem))


class EmbeddedAPIServer:
    """The SQLite-backed API server listening on ``host:port`` (a free port when 0)."""

    def __init__(self, state_dir: Path | str, host: str = "127.0.0.1", port: int = 0,
                 admission: Admission | None = None, authorization_mode: str = "AlwaysAllow") -> None:
        self.state_dir = Path(state_dir)
        self.authorization_mode = authorization_mode
        self.host = host
        self.port = port  # 0: bound to a free port by the OS at start()
        self.admission = admission
        self.token = ""
        self.server: APIServer | None = None
        self._store: Store | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def ca_path(self) -> Path:
        """The self-signed certificate to trust (also in the kubeconfig)."""
        return self.state_dir / "tls.crt"

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / KUBECONFIG_NAME

    async def start(self) -> None:
        private_dir(self.state_dir)
        for secret in (TOKEN_NAME, SIGNING_KEY_NAME, KEY_NAME):  # tightened when written by an older version
            if (self.state_dir / secret).exists():
                private_file(self.state_dir / secret)
        self.token = load_or_create_token(self.state_dir)
        # read before serving (off the loop): the first write of a built-in kind needs them, and a
        # missing package fails here, clearly, not in a request
        await asyncio.to_thread(builtin_schemas.definitions)
        self._store = Store(self.state_dir / DB_NAME)
        self.server = APIServer(self._store, self.token, self.admission, authorization_mode=self.authorization_mode,
                                signing_key=load_or_create_signing_key(self.state_dir))
        self._runner = web.AppRunner(self.server.app(), access_log=None, shutdown_timeout=1.0,
                                     handler_cancellation=True,  # ends watches of gone clients
                                     # parsed up to 64 KiB, so that longer than 8 KiB is a Status
                                     max_line_size=HTTP_LINE_BYTES, max_field_size=HTTP_LINE_BYTES)
        await self._runner.setup()
        cert, key = ensure_certificate(self.state_dir, self.host)
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True,
                           ssl_context=server_context(cert, key))
        await site.start()
        if not self.port:
            self.port = int(self._runner.addresses[0][1])
        write_kubeconfig(self.kubeconfig_path, self.url, self.token, cert.read_bytes())

    async def stop(self) -> None:
        if self.server is not None:
            self.server.hub.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._store is not None:
            self._store.close()
            self._store = None

    async def apply(self, objects: Iterable[dict[str, Any]] | str, field_manager: str = "infergate"
                    ) -> list[dict[str, Any]]:
        """Server-side apply objects (dicts, or a multi-document YAML string), in order."""
        if self.server is None:
            raise RuntimeError("the API server is not running")
        return [self.server.apply_object(obj, field_manager) for obj in _documents(objects)]

    async def __aenter__(self) -> EmbeddedAPIServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @classmethod
    def run_in_thread(cls, state_dir: Path | str, host: str = "127.0.0.1", port: int = 0,
                      admission: Admission | None = None, timeout: float = 15.0,
                      authorization_mode: str = "AlwaysAllow") -> ThreadedAPIServer:
        """Start a server on its own event loop in a daemon thread (for synchronous code)."""
        handle = ThreadedAPIServer(cls(state_dir, host, port, admission, authorization_mode))
        handle.start(timeout)
        return handle


class ThreadedAPIServer:
    """An :class:`EmbeddedAPIServer` running in a background thread; ``stop()`` ends it."""

    def __init__(self, server: EmbeddedAPIServer) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="infergate-apiserver", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token(self) -> str:
        return self.server.token

    @property
    def kubeconfig_path(self) -> Path:
        return self.server.kubeconfig_path

    @property
    def ca_path(self) -> Path:
        return self.server.ca_path

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.server.start())
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.server.stop())
        self._close_loop()

    def _close_loop(self) -> None:
        """Cancel what is left on the loop (e.g. the accept task of a client that never finished its
        TLS handshake), then close it, as ``asyncio.run`` does: a task left pending is reported as
        destroyed when it is garbage-collected."""
        left = asyncio.all_tasks(self._loop)
        for task in left:
            task.cancel()
        if left:
            self._loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    def start(self, timeout: float) -> None:
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError(f"the API server did not start within {timeout}s")
        if self._error is not None:
            raise RuntimeError(f"the API server failed to start: {self._error}") from self._error

    def apply(self, objects: Iterable[dict[str, Any]] | str, field_manager: str = "infergate",
              timeout: float = 30.0) -> list[dict[str, Any]]:
        """Server-side apply objects (dicts or multi-document YAML) on the server's thread."""
        future = asyncio.run_coroutine_threadsafe(self.server.apply(objects, field_manager), self._loop)
        return future.result(timeout)

    def add_subresource_handler(self, group: str, resource: str, name: str, handler: SubresourceHandler,
                                timeout: float = 10.0) -> None:
        """:meth:`APIServer.add_subresource_handler`, run on the server's thread."""
        async def register() -> None:
            assert self.server.server is not None
            self.server.server.add_subresource_handler(group, resource, name, handler)

        asyncio.run_coroutine_threadsafe(register(), self._loop).result(timeout)

    def apply_files(self, *paths: Path | str, field_manager: str = "infergate") -> list[dict[str, Any]]:
        return self.apply("\n---\n".join(Path(p).read_text() for p in paths), field_manager)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    def __enter__(self) -> ThreadedAPIServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
