"""Run a command inside a running billing-gateway pod: ``kubectl exec`` through the
cncf-kubernetes provider's :class:`KubernetesHook` (connection ``kubernetes_billing``) and
the official client's exec stream (``kubernetes.stream``).

Runbook, Investigação 4: the PSP health check is run from inside the billing gateway, so
it sees the network, DNS and egress rules the gateway sees. No pod is created, restarted
or deleted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.hooks._connections import is_missing_connection
from airflow_recon_provider.reconciliation.errors import ConnectionMissingError, ReconError
from airflow_recon_provider.reconciliation.health import PodExecTarget

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

#: seconds the exec may take beyond the command's own time limit (API round trips)
EXEC_GRACE_SECONDS = 15.0


class PodExecError(ReconError):
    """The command could not be run in the pod (no ready pod, API refused the exec, ...)."""


@dataclass(frozen=True)
class ExecResult:
    """What a command run in a pod left: exit code (``None`` if it did not finish in time),
    standard output and standard error."""

    pod: str
    container: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float


_NEVER = datetime.max.replace(tzinfo=UTC)


def _ready_since(pod: Any) -> datetime | None:
    """When the pod became ready (``None`` if it is not ready)."""
    for condition in (pod.status.conditions or []) if pod.status else []:
        if condition.type == "Ready" and condition.status == "True":
            return condition.last_transition_time or _NEVER
    return None


def select_exec_pod(pods: Sequence[Any]) -> Any | None:
    """The pod ``kubectl exec deploy/<name>`` would pick: running and ready, not being
    deleted, ready for the longest time (then by name, for a stable choice)."""
    candidates = [
        pod
        for pod in pods
        if pod.status is not None
        and pod.status.phase == "Running"
        and pod.metadata.deletion_timestamp is None
        and _ready_since(pod) is not None
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda pod: (_ready_since(pod), pod.metadata.name))


def select_container(pod: Any, wanted: str | None) -> str:
    """``wanted``, else the pod's ``kubectl.kubernetes.io/default-container``, else its first."""
    names = [container.name for container in (pod.spec.containers or [])]
    if not names:
        raise PodExecError(f"pod {pod.metadata.name} has no containers")
    if wanted:
        if wanted not in names:
            raise PodExecError(
                f"pod {pod.metadata.name} has no container {wanted!r} (containers: {', '.join(names)})"
            )
        return wanted
    default = (pod.metadata.annotations or {}).get("kubectl.kubernetes.io/default-container")
    return default if default in names else names[0]


def label_selector(match_labels: dict[str, str] | None) -> str:
    if not match_labels:
        raise PodExecError("the deployment's selector has no matchLabels; name a pod instead (pod/<name>)")
    return ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))


class PodExec:
    """Run commands in the pod a :class:`PodExecTarget` names.

    :param target: connection, namespace, workload (``deploy/<name>`` or ``pod/<name>``)
        and container.
    """

    def __init__(self, target: PodExecTarget) -> None:
        self.target = target

    @cached_property
    def hook(self) -> KubernetesHook:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(conn_id=self.target.kubernetes_conn_id)

    def _api(self, call: Any, what: str, **kwargs: Any) -> Any:
        from kubernetes.client.rest import ApiException

        try:
            return call(**kwargs)
        except ApiException as exc:
            raise PodExecError(
                f"{what} in namespace {self.target.namespace}: HTTP {exc.status} {exc.reason}"
            ) from None

    def resolve(self) -> tuple[str, str]:
        """``(pod name, container)`` to exec into."""
        namespace = self.target.namespace
        try:
            core = self.hook.core_v1_client
        except Exception as exc:
            if is_missing_connection(exc):
                raise ConnectionMissingError(
                    f"Airflow connection {self.target.kubernetes_conn_id!r} is not defined; create it "
                    f"(type kubernetes) or set AIRFLOW_CONN_{self.target.kubernetes_conn_id.upper()}"
                ) from None
            raise PodExecError(f"cannot reach the Kubernetes API: {type(exc).__name__}: {exc}") from None
        if self.target.kind == "pod":
            pod = self._api(
                core.read_namespaced_pod,
                f"cannot read pod {self.target.name}",
                name=self.target.name,
                namespace=namespace,
            )
        else:
            deployment = self._api(
                self.hook.apps_v1_client.read_namespaced_deployment,
                f"cannot read deployment {self.target.name}",
                name=self.target.name,
                namespace=namespace,
            )
            selector = label_selector(deployment.spec.selector.match_labels)
            pods = self._api(
                core.list_namespaced_pod,
                f"cannot list the pods of deployment {self.target.name}",
                namespace=namespace,
                label_selector=selector,
            ).items
            pod = select_exec_pod(pods)
            if pod is None:
                raise PodExecError(
                    f"deployment {self.target.name} in namespace {namespace} has no running, ready pod "
                    f"({len(pods)} pod(s) match {selector})"
                )
        return pod.metadata.name, select_container(pod, self.target.container)

    def run(self, argv: Sequence[str], *, stdin: str | None = None, timeout: float) -> ExecResult:
        """Run ``argv`` (no shell unless ``argv`` starts one) and wait at most ``timeout``
        seconds; ``stdin``, when given, is written to the command's standard input."""
        from kubernetes.client.rest import ApiException
        from kubernetes.stream import stream

        pod, container = self.resolve()
        started = time.monotonic()
        try:
            client = stream(
                self.hook.core_v1_client.connect_get_namespaced_pod_exec,
                name=pod,
                namespace=self.target.namespace,
                container=container,
                command=list(argv),
                stdin=stdin is not None,
                stdout=True,
                stderr=True,
                tty=False,
                _preload_content=False,
            )
        except ApiException as exc:
            raise PodExecError(
                f"cannot exec into pod {self.target.namespace}/{pod}: HTTP {exc.status} {exc.reason}"
            ) from None
        stdout: list[str] = []
        stderr: list[str] = []
        try:
            if stdin is not None:
                client.write_stdin(stdin)
                client.close_channel(0)  # EOF on the v5 exec protocol; the script needs none
            deadline = started + timeout
            while client.is_open() and time.monotonic() < deadline:
                client.update(timeout=min(1.0, max(deadline - time.monotonic(), 0.0)))
                if client.peek_stdout():
                    stdout.append(client.read_stdout())
                if client.peek_stderr():
                    stderr.append(client.read_stderr())
            finished = not client.is_open()
            if client.peek_stdout():
                stdout.append(client.read_stdout())
            if client.peek_stderr():
                stderr.append(client.read_stderr())
            try:
                returncode = client.returncode if finished else None
            except Exception as exc:  # an exec closed without its status frame
                raise PodExecError(
                    f"the command in pod {self.target.namespace}/{pod} ended without an exit status ({exc})"
                ) from None
        finally:
            client.close()
        return ExecResult(
            pod=pod,
            container=container,
            returncode=returncode,
            stdout="".join(stdout),
            stderr="".join(stderr),
            seconds=time.monotonic() - started,
        )


__all__ = [
    "EXEC_GRACE_SECONDS",
    "ExecResult",
    "PodExec",
    "PodExecError",
    "select_container",
    "select_exec_pod",
]
