"""Errors with messages a finance analyst or an on-call engineer can act on.

Two families, so that no handler has to re-raise one before catching the other:

- :class:`ReconError` (a ``ValueError``): bad input, a missing or invalid configuration, a
  request a service refused — the same call fails again until someone changes something.
- :class:`DependencyUnavailableError` (a ``ConnectionError``): a database or a service the
  runbook calls did not answer in time — the same call may succeed later.
"""

from __future__ import annotations


class ReconError(ValueError):
    """Base class of every error on bad input, configuration or a refused request."""


class DependencyUnavailableError(ConnectionError):
    """Base class of every error where a dependency (a database, a PSP's API, billing-gateway
    -core, Kafka, PagerDuty, Airflow's REST API) did not answer: retrying later may help."""


class WindowError(ReconError):
    """A reconciliation window is malformed (order, timezone, size)."""


class UnknownPspError(ReconError):
    """The PSP is neither configured nor present in the gateway's payment intents."""


class MappingError(ReconError):
    """A configured table or column name is not a plain SQL identifier."""


class ConfigError(ReconError):
    """The reconciliation configuration is invalid."""


class DivergenceKindError(ReconError):
    """A requested divergence kind does not exist."""


class ConnectionMissingError(ReconError):
    """An Airflow connection the step needs is not defined."""


class DatabaseUnavailableError(DependencyUnavailableError):
    """The database could not be reached."""


class CorrectionConflictError(ReconError):
    """A correction would touch a row that changed since it was proposed."""


class ServiceUnavailableError(DependencyUnavailableError):
    """A service the runbook calls (PSP API, billing-gateway-core) did not answer in time:
    HTTP 5xx or 429, a timeout or a refused connection, after the bounded retries.

    :param retry_after: seconds the service asked to wait (HTTP 429/503 ``Retry-After``), if any.
    :param retryable: ``False`` when waiting as asked is longer than the task may wait.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.retryable = retryable


class ServiceRequestError(ReconError):
    """A service refused a request (HTTP 4xx other than 429): retrying the same request
    cannot help, so it is never retried.

    :param status_code: the HTTP status the service answered.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class BillingCoreUnavailableError(ServiceUnavailableError):
    """billing-gateway-core did not accept a request in time: HTTP 5xx or 429, a timeout or
    a refused connection, after the bounded retries."""


class BillingCoreRequestError(ServiceRequestError):
    """billing-gateway-core refused a request (HTTP 4xx other than 429): never retried."""


class ReprocessError(ReconError):
    """Reprocessing could not trigger or follow the reconciliation runs of a PSP's cycles."""


class ReleaseCommandError(ReconError):
    """The release script (rollback or tag of the worker) could not run or failed."""


class CorrectionPolicyError(ConfigError):
    """A data-correction policy is invalid (a kind that cannot be corrected, a bad status)."""


class RowCapExceededError(ReconError):
    """A correction set has more transactions than the run's row cap allows."""


class ApprovalRefusedError(ReconError):
    """A finance approval cannot be accepted; nothing was applied."""


class SelfApprovalError(ApprovalRefusedError):
    """The person who requested a correction (triggered the run) tried to approve it."""


class ApproverNotAssignedError(ApprovalRefusedError):
    """The approval came from someone who is not one of the assigned approvers."""


class CorrectionLockedError(ReconError):
    """Another correction or statement load of the same PSP holds its lock."""


class CorrectionSetNotFoundError(ReconError):
    """No stored dry run has this correction key."""


class CorrectionSetMismatchError(ReconError):
    """The proposals handed to an apply are not the dry run stored under the key finance
    approved (a hand-made or altered list): nothing is applied."""


class CorrectionIncidentError(ReconError):
    """The incident a correction names does not exist, belongs to another PSP, is closed, or
    is not the incident its dry run was made for."""


# -- the incident record's errors (reconciliation/incidents.py) -------------------------------


class IncidentError(ReconError):
    """Base class of the incident record's errors."""


class IncidentIdError(IncidentError):
    """An incident id is not of the form ``INCIDENT-<number>``."""


class IncidentNotFoundError(IncidentError):
    """No incident has this id."""


class IncidentAlreadyOpenError(IncidentError):
    """The PSP already has an incident that is not closed (one open incident per PSP).

    :param open_incident_id: the incident that is open.
    """

    def __init__(self, message: str, *, open_incident_id: str) -> None:
        super().__init__(message)
        self.open_incident_id = open_incident_id


class IncidentExistsError(IncidentError):
    """An incident with this id already exists."""


class IllegalTransitionError(IncidentError):
    """The incident cannot move from its state to the requested one."""


class IncidentStateError(IncidentError):
    """A state name that is not one of the incident states."""


class IncidentInputError(IncidentError):
    """A field of an incident, event or notice is missing or malformed."""


# -- states -------------------------------------------------------------------------------
