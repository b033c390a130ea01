"""airflow-recon-provider: the billing gateway reconciliation runbook as an Airflow 3 provider."""

__version__ = "0.1.0"
