"""Airflow's REST API and CLI where the metadata database is: the two implementations of ``AirflowAdmin``.

A task in Airflow 3 cannot reach the metadata database itself. On MWAA the web
server can: its REST API through MWAA's ``InvokeRestApi`` (the provider's
``MwaaHook``) and its CLI through MWAA's CLI endpoint (a ``CreateCliToken`` token,
then ``POST https://<web server>/aws_mwaa/cli``), both as the execution role. The
local stack has no MWAA: its API server is called over HTTP and the ``airflow``
command runs here with the local database (connection ``ndjson_local_airflow``).
"""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import requests
from airflow.providers.amazon.aws.hooks.mwaa import MwaaHook
from airflow.sdk import BaseHook

from ndjson_pipeline.metadata_cleanup import LOCAL_AIRFLOW_CONNECTION, CliOutput, MetadataCleanupError
from ndjson_pipeline_airflow.hooks import RecordsRequests

if TYPE_CHECKING:
    from mypy_boto3_mwaa import MWAAClient

# MWAA sets it in every container of an environment (and refuses to let it be overridden).
MWAA_ENVIRONMENT_VARIABLE = "AIRFLOW_ENV_NAME"
_HTTP_TIMEOUT_SECONDS = 30


class MwaaAirflowHook(RecordsRequests, MwaaHook):
    """The REST API and CLI of the MWAA environment, as the connection's identity (the execution role on MWAA).

    :param environment_name: the MWAA environment, by default the one this task runs in.
    :param cli_timeout_seconds: how long one CLI command may run on the web server before the request gives up.

    Additional arguments (such as ``aws_conn_id``) are passed down to ``MwaaHook``.
    """

    def __init__(self, *, environment_name: str | None = None, cli_timeout_seconds: int = 900, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        name = environment_name or os.environ.get(MWAA_ENVIRONMENT_VARIABLE)
        if not name:
            raise MetadataCleanupError(
                f"no MWAA environment name: MWAA sets {MWAA_ENVIRONMENT_VARIABLE} in its containers; outside MWAA set "
                "the setting 'metadata_cleanup_runner' to 'local'"
            )
        self.environment_name = name
        self.cli_timeout_seconds = cli_timeout_seconds

    def get(self, path: str, params: Mapping[str, str | int]) -> dict[str, Any]:
        """GET ``path`` of the environment's Airflow REST API through ``InvokeRestApi``.

        .. seealso::
            - :external+boto3:py:meth:`MWAA.Client.invoke_rest_api`
        """
        query = {key: str(value) for key, value in params.items()}
        response = self.invoke_rest_api(
            env_name=self.environment_name, path=path, method="GET", query_params=query, airflow_version=3
        )
        status = response.get("RestApiStatusCode", 0)
        if not 200 <= status < 300:
            raise MetadataCleanupError(f"GET {path} on MWAA {self.environment_name} answered {status}: {response}")
        return dict(response["RestApiResponse"])

    def run_cli(self, args: Sequence[str]) -> CliOutput:
        """Run ``airflow <args>`` on the environment's web server through MWAA's CLI endpoint.

        .. seealso::
            - :external+boto3:py:meth:`MWAA.Client.create_cli_token`
        """
        mwaa: MWAAClient = self.conn  # the provider's hook leaves its client untyped
        token = mwaa.create_cli_token(Name=self.environment_name)
        response = requests.post(
            f"https://{token['WebServerHostname']}/aws_mwaa/cli",
            headers={"Authorization": f"Bearer {token['CliToken']}", "Content-Type": "text/plain"},
            data=shlex.join(args),
            timeout=self.cli_timeout_seconds,
        )
        if not response.ok:
            raise MetadataCleanupError(
                f"MWAA's CLI endpoint of {self.environment_name} answered {response.status_code} to "
                f"'airflow {shlex.join(args)}': {response.text[:1000]}"
            )
        body = response.json()
        return CliOutput(
            stdout=base64.b64decode(body.get("stdout", "")).decode(errors="replace"),
            stderr=base64.b64decode(body.get("stderr", "")).decode(errors="replace"),
            exit_code=None,  # the endpoint reports the command's output only
        )


class LocalAirflowAdmin:
    """The local stack's Airflow: its API server over HTTP and the ``airflow`` command with the local database.

    The connection holds the API server's URL (host), a user of its SimpleAuthManager (login, password) and the
    metadata database's SQLAlchemy URL (extra ``sql_alchemy_conn``), which this task's own process is denied.

    :param conn_id: the Airflow connection.
    :param cli_timeout_seconds: how long one CLI command may run.
    """

    def __init__(self, conn_id: str = LOCAL_AIRFLOW_CONNECTION, cli_timeout_seconds: int = 900) -> None:
        connection = BaseHook.get_connection(conn_id)
        self.url = str(connection.host).rstrip("/")
        self.credentials = {"username": connection.login, "password": connection.password}
        self.database = connection.extra_dejson["sql_alchemy_conn"]
        self.cli_timeout_seconds = cli_timeout_seconds

    def get(self, path: str, params: Mapping[str, str | int]) -> dict[str, Any]:
        token = requests.post(f"{self.url}/auth/token", json=self.credentials, timeout=_HTTP_TIMEOUT_SECONDS)
        token.raise_for_status()
        response = requests.get(
            f"{self.url}/api/v2{path}",
            params=dict(params),
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=_HTTP_TIMEOUT_SECONDS,
        )
        if not response.ok:
            raise MetadataCleanupError(f"GET {path} on {self.url} answered {response.status_code}: {response.text}")
        return dict(response.json())

    def run_cli(self, args: Sequence[str]) -> CliOutput:
        # The task runner put a placeholder in this process's database settings; the command gets the real one.
        env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__CORE__SQL_ALCHEMY_CONN"}
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self.database
        done = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=self.cli_timeout_seconds,
        )
        return CliOutput(done.stdout, done.stderr, done.returncode)
