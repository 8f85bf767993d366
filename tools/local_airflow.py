"""Airflow on the local stack: the environment its processes run with, the one wiring ``make ui`` and Docker share.

``airflow_stack_environment`` creates the pipeline's resources and its two
identities on the local AWS (``tools.moto_serve``: IAM enforced, faults through
``/_faults``) and returns what every Airflow process needs, as on MWAA:

- ``aws_default`` with the MWAA execution role's access key (the DAGs' AWS calls
  are held to ``infra/policies/mwaa-execution.json.tftpl``), and the Glue job role's
  key as the process's default credentials, which the local Glue runner hands to
  spark-submit (``LocalIdentities.airflow_env``);
- the settings Variable (``local_pipeline_settings``: Glue runs on local Spark, the
  metadata cleanup runs the ``airflow`` command here);
- the connection the metadata cleanup uses instead of MWAA's web server
  (``ndjson_local_airflow``: API server, a user, the metadata database);
- SimpleAuthManager's one user and the password file it reads.

``make ui`` (tools/ui_stack.py) calls it in-process. ``docker-compose.yaml``'s
one-shot ``aws-bootstrap`` service runs ``python -m tools.local_airflow ...``,
which writes the same environment as a shell file that every Airflow container
sources before it starts Airflow (the access keys exist only once the bootstrap
created them).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from pathlib import Path
from typing import Any

from ndjson_pipeline.metadata_cleanup import LOCAL_AIRFLOW_CONNECTION
from ndjson_pipeline.resources import ResourceNames
from ndjson_pipeline.settings import SETTINGS_VARIABLE, PipelineSettings
from tools.local_stack import bootstrap_identities, bootstrap_resources, local_pipeline_settings

USERNAME = "admin"
DEFAULT_PASSWORD = "admin"  # noqa: S105 - a local, loopback-only UI; --password sets another
# For a stack someone watches (`make ui`, Docker): a day shows several mapped conversions, and a small day is
# converted a minute after it lands.
UI_SETTINGS = {"max_files_per_manifest": 10, "max_wait_seconds": 60, "sensor_timeout_seconds": 90}


def login_environment(home: Path, password: str) -> dict[str, str]:
    """SimpleAuthManager with one admin user whose password is in a file written here (it keeps existing ones)."""
    passwords = home / "passwords.json"
    home.mkdir(parents=True, exist_ok=True)
    passwords.write_text(json.dumps({USERNAME: password}) + "\n")
    return {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
    }


def local_airflow_connection_env(api_url: str, password: str, database_url: str) -> dict[str, str]:
    """The connection the metadata cleanup uses on the local stack: the API server, the user, the database."""
    connection = {
        "conn_type": "http",
        "host": api_url,
        "login": USERNAME,
        "password": password,
        "extra": {"sql_alchemy_conn": database_url},
    }
    return {f"AIRFLOW_CONN_{LOCAL_AIRFLOW_CONNECTION.upper()}": json.dumps(connection)}


def airflow_stack_environment(
    endpoint: str,
    names: ResourceNames,
    *,
    home: Path,
    api_url: str,
    database_url: str,
    password: str = DEFAULT_PASSWORD,
    **setting_overrides: Any,
) -> tuple[dict[str, str], PipelineSettings]:
    """Bootstrap the local AWS for ``names``; return the Airflow processes' environment and the settings in it.

    :param endpoint: the local AWS as the Airflow processes reach it.
    :param home: where the password file goes (a folder every Airflow process can read).
    :param api_url: the API server as the Airflow processes reach it.
    :param database_url: the metadata database's SQLAlchemy URL.
    :param setting_overrides: pipeline settings on top of ``local_pipeline_settings``.
    """
    raw_settings = local_pipeline_settings(names, **setting_overrides)
    settings = PipelineSettings.from_mapping(raw_settings)
    bootstrap_resources(endpoint, names)
    identities = bootstrap_identities(endpoint, names, settings.dataset)
    env = {
        **identities.airflow_env(endpoint),
        f"AIRFLOW_VAR_{SETTINGS_VARIABLE.upper()}": json.dumps(raw_settings),
        **local_airflow_connection_env(api_url, password, database_url),
        **login_environment(home, password),
    }
    return env, settings


def write_env_file(env: dict[str, str], path: Path) -> None:
    """``export NAME=value`` lines a shell sources (``set -a`` not needed); values quoted for the shell."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"export {name}={shlex.quote(value)}\n" for name, value in sorted(env.items())))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="the local AWS (tools.moto_serve) as Airflow reaches it")
    parser.add_argument("--api-url", required=True, help="the Airflow API server as the Airflow processes reach it")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"),
        help="the metadata database (default: this process's AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)",
    )
    parser.add_argument("--home", type=Path, required=True, help="a folder every Airflow container mounts")
    parser.add_argument("--env-file", type=Path, required=True, help="the shell file Airflow containers source")
    parser.add_argument("--password", default=DEFAULT_PASSWORD, help="the admin user's password")
    parser.add_argument("--name-prefix", help="the resources' name prefix (default: the settings' default)")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url is required when AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is not set")
    names = PipelineSettings(**({"name_prefix": args.name_prefix} if args.name_prefix else {})).names
    env, settings = airflow_stack_environment(
        args.endpoint,
        names,
        home=args.home,
        api_url=args.api_url,
        database_url=args.database_url,
        password=args.password,
        **UI_SETTINGS,
    )
    write_env_file(env, args.env_file)
    print(f"bootstrapped {settings.names.name_prefix}-* at {args.endpoint}; Airflow's environment: {args.env_file}")


if __name__ == "__main__":
    main()
