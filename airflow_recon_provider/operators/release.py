"""RollbackDeployOperator and TagReleaseOperator — runbook, Mitigação 3 (Rollback de
Deploy) and Encerramento.

- "Se reconciliação quebrou após release, realizar rollback do worker:
  ``scripts/finops/rollback_and_tag.py rollback --service billing-gateway-worker --env prod``"
- "Executar ``scripts/finops/rollback_and_tag.py tag --service billing-gateway-worker
  --env prod --notes "reconciliation incident"``"

``mode="kubernetes"`` (default) runs the script of the release-tools image in a pod with
cncf-kubernetes' ``KubernetesPodOperator`` (connection ``kubernetes_billing``, namespace
``billing-gateway``), exactly the runbook's command line. ``mode="local"`` runs a script
of this machine as a subprocess, for development and the demo; the repository ships
``scripts/finops/rollback_and_tag.py`` as a demo stand-in that only records what it would
do (``RECON_RELEASE_RECORD``).

Either way the task's **release record** — what was run, where, with what outcome — is
written once to the artifact store as ``release_<action>_<service>.json`` (kind
``release_record`` in ``recon.artifacts``); XCom and the incident timeline carry its
dashboard link, never a worker path.

The Kubernetes provider is imported only when a pod is built, so DAG files that use these
operators parse fast.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_recon_provider.hooks._connections import is_missing_connection
from airflow_recon_provider.names import KUBERNETES_CONN_ID
from airflow_recon_provider.reconciliation.inputs import parse_bool

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk import Context

MODES = ("kubernetes", "local")
DEFAULT_SCRIPT = "scripts/finops/rollback_and_tag.py"
#: placeholder: set ``image`` to the site's image that carries the real release script
DEFAULT_IMAGE = "billing-gateway/finops-tools:latest"
RECORD_ENV = "RECON_RELEASE_RECORD"
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_REPO_ROOT = Path(__file__).resolve().parents[2]


class _ReleaseScriptOperator(BaseOperator):
    """Run ``rollback_and_tag.py <action>`` for a service, in a pod or locally.

    :param service: the service to act on (templated), a Kubernetes-style name.
    :param env: the environment (templated), e.g. ``prod``.
    :param mode: ``kubernetes`` (a pod) or ``local`` (a subprocess here) (templated).
    :param image: image with the release script, for the pod (templated).
    :param namespace: namespace of the pod (templated).
    :param kubernetes_conn_id: Airflow connection of the cluster.
    :param script_path: the script; in the pod, the path inside the image; locally, an
        absolute path or one relative to the working directory or to this repository.
    :param record_path: local mode: file where the demo stand-in script appends its action
        (``RECON_RELEASE_RECORD``; default ``$RECON_RELEASE_RECORD``, else none: the script
        only prints it). The task's release record goes to the artifact store either way
        (templated).
    :param psp: the PSP of the incident this release action belongs to (templated); empty:
        none.
    :param incident_id: the incident (templated); empty: none.
    :param artifacts_dir: another artifact store base (a directory or a URL) than
        ``[recon] artifacts_base_url`` for the release record (templated).
    :param script_timeout: local mode: seconds the script may run.
    :param pod_kwargs: extra ``KubernetesPodOperator`` arguments (service account,
        resources, secrets, ...).
    """

    action: ClassVar[str] = ""
    template_fields: Sequence[str] = (
        "service",
        "env",
        "mode",
        "image",
        "namespace",
        "script_path",
        "record_path",
        "psp",
        "incident_id",
        "artifacts_dir",
    )
    ui_color = "#ede7f6"

    def __init__(
        self,
        *,
        service: str = "billing-gateway-worker",
        env: str = "prod",
        mode: str = "kubernetes",
        image: str = DEFAULT_IMAGE,
        namespace: str = "billing-gateway",
        kubernetes_conn_id: str = KUBERNETES_CONN_ID,
        script_path: str = DEFAULT_SCRIPT,
        record_path: str | None = None,
        script_timeout: float = 600.0,
        pod_kwargs: dict[str, Any] | None = None,
        psp: str | None = None,
        incident_id: str | None = None,
        artifacts_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.psp = psp
        self.incident_id = incident_id
        self.artifacts_dir = artifacts_dir
        self.service = service
        self.env = env
        self.mode = mode
        self.image = image
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.script_path = script_path
        self.record_path = record_path
        self.script_timeout = script_timeout
        self.pod_kwargs = dict(pod_kwargs or {})
        self._pod_operator: KubernetesPodOperator | None = None
        self._process: subprocess.Popen[str] | None = None

    # -- the command ----------------------------------------------------------------------
    def script_args(self) -> list[str]:
        """Arguments after the script, as in the runbook."""
        for name in ("service", "env"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _NAME.fullmatch(value):
                raise ValueError(f"{name} {value!r} must be a lower-case name such as billing-gateway-worker")
        return [self.action, "--service", self.service, "--env", self.env]

    def script_argv(self) -> list[str]:
        return [self.script_path, *self.script_args()]

    def _mode(self) -> str:
        mode = str(self.mode).strip().lower()
        if mode not in MODES:
            raise ValueError(f"mode {self.mode!r} must be one of {', '.join(MODES)}")
        return mode

    # -- kubernetes -------------------------------------------------------------------------
    def build_pod_operator(self) -> KubernetesPodOperator:
        """The ``KubernetesPodOperator`` that runs the script (built, not run)."""
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

        if not self.image or not str(self.image).strip():
            raise ValueError("image must name the image that carries the release script")
        argv = self.script_argv()
        options: dict[str, Any] = {
            "task_id": self.task_id,
            "kubernetes_conn_id": self.kubernetes_conn_id,
            "namespace": self.namespace,
            "image": self.image,
            "name": f"{self.action}-{self.service}",
            "cmds": argv[:1],
            "arguments": argv[1:],
            "labels": {
                "app.kubernetes.io/managed-by": "airflow-recon-provider",
                "recon-action": self.action,
                "recon-service": self.service,
            },
            "get_logs": True,
            "on_finish_action": "delete_pod",
            "deferrable": False,  # the wait happens inside this task's execute
            "do_xcom_push": False,
        }
        options.update(self.pod_kwargs)
        return KubernetesPodOperator(**options)

    def _check_kubernetes_connection(self) -> None:
        from airflow.sdk import BaseHook

        from airflow_recon_provider.reconciliation.errors import ConnectionMissingError

        try:
            BaseHook.get_connection(self.kubernetes_conn_id)
        except Exception as exc:
            if is_missing_connection(exc):
                raise ConnectionMissingError(
                    f"Airflow connection {self.kubernetes_conn_id!r} is not defined: no Kubernetes "
                    f"cluster to run the {self.action} of {self.service} in; create it (type kubernetes, "
                    "in-cluster or a kubeconfig) or use mode='local' for development"
                ) from None
            raise

    def _run_in_pod(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.reconciliation.errors import ReleaseCommandError

        self._check_kubernetes_connection()
        pod_operator = self._pod_operator = self.build_pod_operator()
        self.log.info(
            "%s of %s in %s: running %s in image %s, namespace %s (connection %s)",
            self.action,
            self.service,
            self.env,
            " ".join(self.script_argv()),
            self.image,
            self.namespace,
            self.kubernetes_conn_id,
        )
        try:
            pod_operator.execute(context)
        except Exception as exc:
            raise ReleaseCommandError(
                f"{self.action} of {self.service} in {self.env} failed in its pod: {exc}"
            ) from exc
        pod = getattr(pod_operator, "pod", None)
        return {
            "pod": getattr(getattr(pod, "metadata", None), "name", None),
            "namespace": self.namespace,
            "image": self.image,
        }

    # -- local ------------------------------------------------------------------------------
    def _local_script(self) -> Path:
        from airflow_recon_provider.reconciliation.errors import ReleaseCommandError

        path = Path(str(self.script_path)).expanduser()
        candidates = [path] if path.is_absolute() else [Path.cwd() / path, _REPO_ROOT / path]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise ReleaseCommandError(
            f"release script {self.script_path} not found (looked in {', '.join(map(str, candidates))}); "
            "set script_path"
        )

    def _record_path(self) -> str | None:
        """The demo stand-in's own log of actions (``RECON_RELEASE_RECORD``), if any."""
        if self.record_path and str(self.record_path).strip() not in {"", "None"}:
            return str(self.record_path)
        return os.environ.get(RECORD_ENV) or None

    def _run_locally(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.reconciliation.errors import ReleaseCommandError

        script = self._local_script()
        record = self._record_path()
        argv = [sys.executable, str(script), *self.script_args()]
        self.log.info(
            "%s of %s in %s, local mode: %s", self.action, self.service, self.env, " ".join(argv[1:])
        )
        try:
            self._process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, **({RECORD_ENV: record} if record else {})},
            )
            out, err = self._process.communicate(timeout=self.script_timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            raise ReleaseCommandError(
                f"{script.name} {self.action} did not finish within {self.script_timeout:g} s"
            ) from None
        except OSError as exc:
            raise ReleaseCommandError(f"could not start {script}: {exc}") from None
        code = self._process.returncode
        for line in out.splitlines():
            self.log.info("%s: %s", script.name, line)
        if code != 0:
            detail = " ".join(err.split())[-500:] or "no error output"
            raise ReleaseCommandError(f"{script.name} {self.action} exited with status {code}: {detail}")
        output: Any = None
        lines = [line for line in out.splitlines() if line.strip()]
        if lines:
            try:
                output = json.loads(lines[-1])
            except ValueError:
                output = lines[-1]
        if isinstance(output, dict):
            # the stand-in's log is a file of this worker: not something to hand on
            output.pop("recorded_in", None)
        return {"script": script.name, "exit_code": code, "output": output}

    # -- execute ----------------------------------------------------------------------------
    def _check_preconditions(self, context: Context) -> None:
        """Raise ``AirflowSkipException`` when the step does not apply to this run."""

    def execute(self, context: Context) -> dict[str, Any]:
        mode = self._mode()
        argv = self.script_argv()
        self._check_preconditions(context)
        details = self._run_in_pod(context) if mode == "kubernetes" else self._run_locally(context)
        self.log.info("%s of %s in %s done (%s mode)", self.action, self.service, self.env, mode)
        result = {
            "action": self.action,
            "service": self.service,
            "env": self.env,
            "mode": mode,
            "argv": argv,
            **details,
        }
        try:
            record = self._publish_record(context, result)
        except Exception as exc:
            # the action is done and must not run again on a retry (a second rollback would
            # go one release further back): the step succeeds, the missing record is said
            self.log.exception("%s done, but its release record could not be stored", self.action)
            return {**result, "record": None, "record_error": f"{type(exc).__name__}: {exc}"}
        self.log.info("Release record: %s", record.describe())
        return {**result, "record": record.summary()}

    def _publish_record(self, context: Context, result: dict[str, Any]) -> Any:
        """The release record (what ran, where, its outcome) written once to the artifact store."""
        from datetime import UTC, datetime

        from airflow_recon_provider.operators._artifacts import publish_artifact
        from airflow_recon_provider.operators._context import blank, run_actor, run_id_of

        psp = None if blank(self.psp) else str(self.psp).strip()
        incident_id = None if blank(self.incident_id) else str(self.incident_id).strip()
        ti = context["ti"]
        document = {
            **result,
            "notes": getattr(self, "notes", None),
            "psp": psp,
            "incident_id": incident_id,
            "dag_id": getattr(ti, "dag_id", None),
            "run_id": run_id_of(context),
            "task_id": getattr(ti, "task_id", None),
            "requested_by": run_actor(context),
            "recorded_at": datetime.now(UTC).isoformat(),
        }
        data = (json.dumps(document, indent=2, sort_keys=True, default=str) + "\n").encode()
        return publish_artifact(
            context,
            kind="release_record",
            name=f"release_{self.action}_{self.service}.json",
            source=data,
            psp=psp,
            incident_id=incident_id,
            content_type="application/json",
            base_url=None if blank(self.artifacts_dir) else str(self.artifacts_dir).strip(),
            keep_retries=True,
        )

    def on_kill(self) -> None:
        if self._pod_operator is not None:
            self._pod_operator.on_kill()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()


class RollbackDeployOperator(_ReleaseScriptOperator):
    """Roll the worker back to its previous release — only when the run says the
    reconciliation broke after a release (runbook, Mitigação 3); otherwise the task is
    skipped with a log line saying why.

    :param after_release: whether the break followed a release (templated; ``true`` /
        ``false``, e.g. ``"{{ params.after_release }}"``). Default false: no rollback.
    """

    action = "rollback"
    template_fields: Sequence[str] = (*_ReleaseScriptOperator.template_fields, "after_release")

    def __init__(self, *, after_release: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.after_release = after_release

    def _check_preconditions(self, context: Context) -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        if not parse_bool(self.after_release, name="after_release"):
            message = (
                f"Rollback of {self.service} in {self.env} skipped: the run does not say the reconciliation "
                "broke after a release (after_release=false); runbook Mitigação 3 applies only then"
            )
            self.log.info(message)
            raise AirflowSkipException(message)


class TagReleaseOperator(_ReleaseScriptOperator):
    """Tag the worker's release at the end of the incident (runbook, Encerramento).

    :param notes: the tag's notes (templated), default ``reconciliation incident``.
    """

    action = "tag"
    template_fields: Sequence[str] = (*_ReleaseScriptOperator.template_fields, "notes")

    def __init__(self, *, notes: str = "reconciliation incident", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.notes = notes

    def script_args(self) -> list[str]:
        notes = str(self.notes if self.notes is not None else "").strip()
        if not notes.isprintable() or len(notes) > 500:
            raise ValueError("notes must be one line of at most 500 printable characters")
        return [*super().script_args(), "--notes", notes]


__all__ = ["RollbackDeployOperator", "TagReleaseOperator", "parse_bool"]
