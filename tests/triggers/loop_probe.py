"""Run one trigger the way Airflow's triggerer does, in a fresh process, and report what
blocked its event loop.

Usage: ``python loop_probe.py SPEC.json REPORT.json``. The spec names the trigger
(``classpath`` and ``kwargs``, i.e. its ``serialize()``), how long to run it
(``min_events``, ``min_seconds``, ``timeout``), the slow-callback threshold
(``slow_callback``) and whether to give it a Task SDK supervisor (``supervisor``:
``"in_process"`` = the in-process execution API over the session's metadata DB, as
``dag.test()`` uses). The report lists the events, asyncio's slow-callback warnings and
the blocking calls seen on the loop thread.

Why a fresh process: the triggerer's runner is one; a trigger's first poll there is the
process's first (modules not imported yet, secrets backends not loaded, no TLS context
cached), and that poll is where the production warning came from. The probe imports what
the triggerer's runner has imported (``airflow.jobs.triggerer_job_runner``), then the
trigger class, like the triggerer, before the loop.

Two detectors, both limited to the event loop thread while the trigger runs:

- asyncio debug mode with ``loop.slow_callback_duration``: asyncio logs "Executing
  <Handle ...> took N seconds" for any callback (one step of a coroutine) that ran longer.
  Catches CPU-heavy work and any blocking call, whatever it is, but only when it is slow.
- blocking calls, timing-free: an audit hook (``sys.addaudithook``) flags a connect on a
  blocking socket, DNS resolution, ``open``, a module import (the ``import``
  event fires only for a module not yet loaded), subprocesses and SQLite; a profile hook
  (``sys.setprofile``, this thread only) flags calls of the synchronous entry points the
  triggers must not use on the loop: ``time.sleep`` (audited only from Python 3.12), the
  Task SDK's sync connection and variable lookups,
  psycopg's sync ``connect``, requests' ``Session.send`` and ``ReconConfig.load``. A sync
  lookup of a connection from an environment variable takes microseconds, and a sync
  connect to a local PostgreSQL a few milliseconds: no timing threshold that stays quiet
  on a busy machine sees them, these hooks do.
"""

from __future__ import annotations

import asyncio
import json
import linecache
import logging
import os
import re
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

#: audit events that mean "this thread waits on I/O, a clock or a lock it does not own"
AUDIT_EVENTS = {
    "socket.connect",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyaddr",
    "socket.getnameinfo",
    "open",
    "import",
    "subprocess.Popen",
    "os.system",
    "os.posix_spawn",
    "os.fork",
    "sqlite3.connect",
    "urllib.Request",
}


def _from_linecache(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename == linecache.__file__:
            return True
        frame = frame.f_back
    return False


class Watch:
    """The detectors, armed for the event loop thread only."""

    def __init__(self) -> None:
        self.armed = False
        self.loop_thread: int | None = None
        self.findings: list[dict[str, Any]] = []
        self.sync_codes: dict[Any, str] = {}
        self._inside = False

    def _record(self, kind: str, detail: str, frame: Any) -> None:
        # no source lines: reading them would open files from inside the audit hook
        stack = traceback.StackSummary.extract(traceback.walk_stack(frame), limit=25, lookup_lines=False)
        self.findings.append(
            {
                "kind": kind,
                "detail": detail,
                "stack": [f"{f.filename}:{f.lineno} {f.name}" for f in reversed(stack)],
            }
        )

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.armed or event not in AUDIT_EVENTS or self._inside:
            return
        if threading.get_ident() != self.loop_thread:
            return
        if event == "socket.connect":
            sock = args[0]
            if sock.gettimeout() == 0.0:  # non-blocking: what asyncio's own connects use
                return
        if event == "open" and _from_linecache(sys._getframe(1)):
            return  # the instrument, not the trigger: debug mode quotes source lines of handles
        self._inside = True
        try:
            detail = repr(args[0])[:200] if args else ""
            if event == "socket.connect":
                detail = f"blocking connect to {args[1]!r}"
            self._record(event, detail, sys._getframe(1))
        finally:
            self._inside = False

    def profile(self, frame: Any, event: str, arg: Any) -> None:
        if not self.armed or self._inside:
            return
        if event == "call":
            name = self.sync_codes.get(frame.f_code)
        elif event == "c_call" and arg is time.sleep:  # no audit event for it before 3.12
            name = "time.sleep"
        else:
            return
        if name is not None:
            self._inside = True
            try:
                self._record("sync call", name, frame)
            finally:
                self._inside = False


def sync_entry_points() -> dict[Any, str]:
    """Code objects of the synchronous calls a trigger must keep off the loop."""
    import psycopg
    import requests
    from airflow.sdk.bases.hook import BaseHook
    from airflow.sdk.execution_time import context

    from airflow_recon_provider.reconciliation.config import ReconConfig

    functions = {
        "airflow.sdk BaseHook.get_connection (sync connection lookup)": BaseHook.get_connection,
        "airflow.sdk execution_time.context._get_connection (sync connection lookup)": (
            context._get_connection
        ),
        "airflow.sdk execution_time.context._get_variable (sync variable lookup)": context._get_variable,
        "psycopg.Connection.connect (sync database connect)": psycopg.Connection.connect,
        "requests.Session.send (sync HTTP)": requests.Session.send,
        "ReconConfig.load (configuration file and JSON parsing)": ReconConfig.load,
    }
    return {getattr(f, "__func__", f).__code__: name for name, f in functions.items()}


class SlowCallbacks(logging.Handler):
    """asyncio's debug-mode warnings about callbacks slower than the threshold."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing "):
            took = re.search(r" took [\d.]+ seconds$", message)
            tail = took.group(0) if took else ""
            self.messages.append(message[: 600 - len(tail)] + (" ..." if len(message) > 600 else "") + tail)


def in_process_supervisor() -> Any:
    """A Task SDK supervisor whose comms call the in-process execution API (what
    ``dag.test()`` gives its inline triggers), over the metadata DB of ``AIRFLOW_HOME``."""
    import psutil
    import structlog
    from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms, InProcessTestSupervisor

    supervisor = InProcessTestSupervisor(
        id=uuid.uuid4(),
        pid=os.getpid(),
        process=psutil.Process(),
        process_log=structlog.get_logger(logger_name="task").bind(),
        client=InProcessTestSupervisor._api_client(),
    )
    supervisor.comms = InProcessSupervisorComms(supervisor=supervisor)
    return supervisor.comms


async def consume(trigger: Any, spec: dict[str, Any], watch: Watch, events: list[Any]) -> str:
    """Run ``trigger.run()`` until it ends, or it yielded ``min_events`` and ran for
    ``min_seconds`` (more polls), or ``timeout``."""
    try:
        import greenback  # the triggerer gives each trigger a portal for sync SDK calls

        await greenback.ensure_portal()
    except ImportError:
        pass
    loop = asyncio.get_running_loop()
    started = loop.time()
    agen = trigger.run()
    sys.setprofile(watch.profile)
    watch.armed = True
    try:
        while True:
            remaining = spec["timeout"] - (loop.time() - started)
            if len(events) >= spec["min_events"]:
                remaining = min(remaining, spec["min_seconds"] - (loop.time() - started))
                if remaining <= 0:
                    return "ran long enough"
            try:
                event = await asyncio.wait_for(anext(agen), timeout=max(remaining, 0.001))
            except StopAsyncIteration:
                return "run() ended"
            except TimeoutError:
                return "ran long enough" if len(events) >= spec["min_events"] else "timeout"
            events.append(event.payload)
    finally:
        watch.armed = False
        sys.setprofile(None)
        await agen.aclose()


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    report_path = Path(sys.argv[2])

    # what the triggerer's runner process has imported before it loads a trigger class
    import airflow.jobs.triggerer_job_runner
    import airflow.sdk  # noqa: F401
    from airflow._shared.module_loading import import_string

    started = time.perf_counter()
    trigger_class = import_string(spec["classpath"])
    class_import = time.perf_counter() - started
    trigger = trigger_class(**spec["kwargs"])

    watch = Watch()
    watch.sync_codes = sync_entry_points()
    sys.addaudithook(watch.audit)  # for the rest of this process; inert unless armed
    slow = SlowCallbacks()
    logging.getLogger("asyncio").addHandler(slow)

    comms_context: Any = None
    if spec.get("supervisor") == "in_process":
        from airflow.sdk.execution_time.supervisor import set_supervisor_comms

        comms_context = set_supervisor_comms(in_process_supervisor())
        comms_context.__enter__()

    events: list[Any] = []

    async def probe() -> str:
        loop = asyncio.get_running_loop()
        loop.slow_callback_duration = spec["slow_callback"]
        watch.loop_thread = threading.get_ident()
        return await consume(trigger, spec, watch, events)

    started = time.perf_counter()
    try:
        outcome = asyncio.run(probe(), debug=True)
    finally:
        if comms_context is not None:
            comms_context.__exit__(None, None, None)
    report = {
        "outcome": outcome,
        "seconds": round(time.perf_counter() - started, 3),
        "class_import_seconds": round(class_import, 3),
        "events": events,
        "slow_callbacks": slow.messages,
        "blocking_calls": watch.findings,
    }
    report_path.write_text(json.dumps(report, default=str, indent=1))


if __name__ == "__main__":
    main()
