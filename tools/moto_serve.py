"""Entry point of the local AWS emulator: moto's server with IAM and injectable faults, DynamoDB Local behind it.

Every signed request is read as IAM reads it (tools/aws_calls.py), may meet an
injected fault (tools/fault_injection.py, controlled through ``/_faults``), and
is then authorised against its caller's identity policy (tools/iam_enforcement.py;
``/_iam/calls`` and ``/_iam/denials`` report what was allowed and refused) before
it is served, including the KMS permissions S3 and SQS would use on the
caller's behalf (tools/kms_requirements.py). Two S3 answers follow IAM as AWS
does: a missing key is a 403 unless the caller may list the bucket, and
DeleteObjects refuses key by key in its ``Errors``.

Glue's ``UpdateTable`` honours its ``VersionId`` as Glue does (moto ignores it):
an update made against a table version that is no longer the current one is
refused with ``ConcurrentModificationException``. Iceberg commits through the
catalog rely on that optimistic check, so concurrent commits really conflict here.

DynamoDB calls are served by Amazon's DynamoDB Local (tools/dynamodb_local.py),
which this process starts and stops: moto's DynamoDB applies transactions
neither atomically nor in isolation, and tests of concurrent writers must meet
DynamoDB's own semantics, concurrently. Everything else is moto, whose Glue job
runs keep the execution class they were started in, as Glue's do.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import signal
import threading
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

from tools import aws_errors
from tools.aws_calls import S3_XMLNS, Authorization, Call, bucket_arn, credential_scope, needs_body, parse_call
from tools.dynamodb_local import DynamoDbForwarder, dynamodb_local
from tools.fault_injection import FaultInjector, FaultRuleError
from tools.iam_enforcement import Identities, Identity, Recorder, authorise, denial_message
from tools.kms_requirements import kms_authorizations


class LocalAws:
    """The WSGI layer in front of moto: admin endpoints, faults, IAM, then moto itself."""

    def __init__(self, app, dynamodb: DynamoDbForwarder, account: str = DEFAULT_ACCOUNT_ID, seed: int = 0) -> None:
        self.app = app
        self.dynamodb = dynamodb
        self.account = account
        self.identities = Identities(account)
        self.recorder = Recorder()
        self.faults = FaultInjector(seed)
        self._glue_tables = threading.Lock()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/_faults" or path.startswith("/_iam/"):
            return self._admin(path, environ, start_response)
        body = _read_body(environ) if needs_body(environ) else b""
        try:
            call = parse_call(environ, body, self.account)
        except (ValueError, KeyError, TypeError, SyntaxError) as exc:
            return self._unreadable(environ, start_response, exc)
        if call is None:
            return self.app(environ, start_response)  # unsigned: moto's dashboard and API
        identity = self.identities.resolve(call.access_key)
        rule = self.faults.pick(call, identity)
        if rule is not None:
            answer = self.faults.respond(rule, call, environ, start_response)
            if answer is not None:
                return answer
        if identity is not None and not identity.root:
            call.authorizations += kms_authorizations(call, environ, self.account)
        if identity is None:
            status, code = aws_errors.error("invalid_key", call.service)
            message = f"The AWS access key id {call.access_key} does not exist in the local stack's records"
            return _answer(start_response, aws_errors.render(call.service, call.protocol, status, code, message))
        decisions = []
        for auth in call.authorizations:
            decision = authorise(identity, call, auth)
            message = "" if decision.allowed else denial_message(identity, call, auth, decision)
            self.recorder.record(identity, call, auth, decision, message)
            decisions.append((auth, decision, message))
        denied = [(auth, message) for auth, decision, message in decisions if not decision.allowed]
        if call.operation == "DeleteObjects" and denied:
            return self._delete_allowed_keys(environ, start_response, call, decisions)
        if denied:
            status, code = aws_errors.error("access_denied", call.service)
            head = environ["REQUEST_METHOD"] == "HEAD"
            return _answer(
                start_response, aws_errors.render(call.service, call.protocol, status, code, denied[0][1], head=head)
            )
        if call.operation in ("GetObject", "HeadObject") and not identity.root:
            return self._missing_key_needs_list(environ, start_response, call, identity)
        return self._serve(environ, start_response, call.service, body)

    def _serve(self, environ, start_response, service: str | None, body: bytes):
        if service == "dynamodb":
            return self.dynamodb(environ, start_response, body)
        if service == "glue" and environ.get("HTTP_X_AMZ_TARGET", "").endswith(".UpdateTable"):
            return self._update_table_at_version(environ, start_response, body)
        return self.app(environ, start_response)

    def _update_table_at_version(self, environ, start_response, body: bytes):
        """UpdateTable as Glue serves it: refused when its ``VersionId`` is not the table's current version.

        The check and the update happen under one lock, so of two updates made against the same version
        exactly one succeeds.
        """
        request = json.loads(body or b"{}")
        version = request.get("VersionId")
        with self._glue_tables:
            current = _glue_table_version(self.account, credential_scope(environ)[1], request)
            if version is not None and current is not None and str(version) != current:
                message = (
                    f"Update table failed due to concurrent modifications: table version {version} is not the "
                    f"current version {current}"
                )
                rendered = aws_errors.render("glue", "json", 400, "ConcurrentModificationException", message)
                return _answer(start_response, rendered)
            return self.app(environ, start_response)

    def _unreadable(self, environ, start_response, exc: Exception):
        """A request this checker cannot read: root's goes on to moto's own validation, anyone else's is refused."""
        access_key, _, service = credential_scope(environ)
        identity = self.identities.resolve(access_key)
        if identity is not None and identity.root:
            return self._serve(environ, start_response, service, _read_body(environ))
        protocol = "rest-xml" if service == "s3" else "json" if "HTTP_X_AMZ_TARGET" in environ else "query"
        message = f"the local IAM checker could not read this request ({exc!r}), so it refuses it"
        log.warning("DENIED %s %s: %s", environ["REQUEST_METHOD"], environ.get("PATH_INFO"), message)
        status, code = aws_errors.error("access_denied", service)
        return _answer(start_response, aws_errors.render(service, protocol, status, code, message))

    def _missing_key_needs_list(self, environ, start_response, call: Call, identity: Identity):
        """S3 tells "no such key" (404) only to callers allowed s3:ListBucket; others get 403."""
        status, headers, body = _run(self.app, environ)
        if not status.startswith("404"):
            start_response(status, headers)
            return [body]
        auth = Authorization("s3:ListBucket", bucket_arn(call.bucket))
        decision = authorise(identity, call, auth)
        message = (
            ""
            if decision.allowed
            else denial_message(identity, call, auth, decision)
            + (f" (S3 answers 403, not 404, for the missing key {call.key} to a caller without s3:ListBucket)")
        )
        self.recorder.record(identity, call, auth, decision, message)
        if decision.allowed:
            start_response(status, headers)
            return [body]
        status_code, code = aws_errors.error("access_denied", "s3")
        head = environ["REQUEST_METHOD"] == "HEAD"
        return _answer(start_response, aws_errors.render("s3", "rest-xml", status_code, code, message, head=head))

    def _delete_allowed_keys(self, environ, start_response, call: Call, decisions):
        """DeleteObjects as S3 authorises it: each key on its own, refusals reported in the result's Errors."""
        allowed, errors = [], []
        for (key, version), (_, decision, message) in zip(call.delete_objects, decisions, strict=True):
            if decision.allowed:
                allowed.append((key, version))
            else:
                version_xml = f"<VersionId>{escape(version)}</VersionId>" if version else ""
                errors.append(
                    f"<Error><Key>{escape(key)}</Key>{version_xml}<Code>AccessDenied</Code>"
                    f"<Message>{escape(message)}</Message></Error>"
                )
        if allowed:
            objects = "".join(
                f"<Object><Key>{escape(k)}</Key>{f'<VersionId>{escape(v)}</VersionId>' if v else ''}</Object>"
                for k, v in allowed
            )
            body = f'<Delete xmlns="{S3_XMLNS}">{objects}<Quiet>{str(call.quiet).lower()}</Quiet></Delete>'.encode()
            for header in [k for k in environ if k.startswith(("HTTP_X_AMZ_CHECKSUM", "HTTP_X_AMZ_SDK_CHECKSUM"))]:
                del environ[header]
            environ.pop("HTTP_CONTENT_MD5", None)
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
            status, headers, result = _run(self.app, environ)
            if not status.startswith("200"):
                start_response(status, headers)
                return [result]
        else:
            status, headers = "200 OK", [("Content-Type", "application/xml")]
            result = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult xmlns="{S3_XMLNS}"></DeleteResult>'.encode()
            )
        result = result.replace(b"</DeleteResult>", "".join(errors).encode() + b"</DeleteResult>")
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"] + [("Content-Length", str(len(result)))]
        start_response(status, headers)
        return [result]

    def _admin(self, path: str, environ, start_response):
        method = environ["REQUEST_METHOD"]
        query = parse_qs(environ.get("QUERY_STRING", ""))
        identity = query.get("identity", [None])[0]
        try:
            if path == "/_faults" and method == "GET":
                payload = self.faults.state()
            elif path == "/_faults" and method == "POST":
                request = json.loads(_read_body(environ) or b"{}")
                payload = {"ids": self.faults.add(request.get("rules", []), request.get("seed"))}
            elif path == "/_faults" and method == "DELETE":
                self.faults.clear()
                payload = {"cleared": True}
            elif path == "/_iam/calls" and method == "GET":
                payload = {"calls": self.recorder.calls(identity)}
            elif path == "/_iam/denials" and method == "GET":
                payload = {"denials": self.recorder.denials(identity, int(query.get("since", ["0"])[0]))}
            elif path in ("/_iam/calls", "/_iam/denials") and method == "DELETE":
                self.recorder.reset()
                payload = {"cleared": True}
            else:
                return _json_answer(start_response, "404 Not Found", {"error": f"no admin endpoint {method} {path}"})
        except (FaultRuleError, ValueError, TypeError) as exc:
            return _json_answer(start_response, "400 Bad Request", {"error": str(exc)})
        return _json_answer(start_response, "200 OK", payload)


log = logging.getLogger("local_aws")


def _glue_table_version(account: str, region: str, request: dict) -> str | None:
    """The current ``VersionId`` of the table an UpdateTable names, from moto's backend; None if there is none."""
    from moto.glue.models import glue_backends

    table_input = request.get("TableInput") or {}
    try:
        table = glue_backends[account][region].get_table(request.get("DatabaseName"), table_input.get("Name"))
    except Exception:  # no such database or table: moto answers that itself
        return None
    return str(table._current_version)


def _read_body(environ) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _run(app, environ) -> tuple[str, list, bytes]:
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, list(headers)
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return captured["status"], captured["headers"], body


def _answer(start_response, rendered):
    status, headers, body = rendered
    start_response(status, headers)
    return [body]


def _json_answer(start_response, status: str, payload: dict):
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def keep_glue_execution_classes() -> None:
    """moto drops StartJobRun's ``ExecutionClass``: Glue keeps it on the run and reports it (GetJobRun, GetJobRuns),
    and the day report prices each run at its class's rate. Here a run takes its class from the request, else its
    job's, as on Glue."""
    from moto.glue.models import FakeJobRun
    from moto.glue.responses import GlueResponse

    start_job_run, as_dict = GlueResponse.start_job_run, FakeJobRun.as_dict

    def start_with_class(self):
        result = start_job_run(self)
        job = self.glue_backend.get_job(self._get_param("JobName"))
        run = next(r for r in job.job_runs if r.job_run_id == result.result["JobRunId"])
        run.execution_class = self._get_param("ExecutionClass") or job.execution_class
        return result

    def with_class(self):
        return {**as_dict(self), "ExecutionClass": getattr(self, "execution_class", "STANDARD")}

    GlueResponse.start_job_run = start_with_class
    FakeJobRun.as_dict = with_class


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dynamodb-port", type=int, required=True, help="port of the DynamoDB Local it starts")
    parser.add_argument("--dynamodb-log", help="file DynamoDB Local's output goes to")
    parser.add_argument("--fault-seed", type=int, default=0, help="seed of the fault rules' random draws")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # A terminated emulator stops its DynamoDB Local on the way out.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    keep_glue_execution_classes()
    with dynamodb_local(args.dynamodb_port, args.dynamodb_log) as dynamodb_endpoint:
        app = DomainDispatcherApplication(create_backend_app)
        local_aws = LocalAws(app, DynamoDbForwarder(dynamodb_endpoint), seed=args.fault_seed)
        try:
            run_simple(args.host, args.port, local_aws, threaded=True, request_handler=MotoRequestHandler)
        except KeyboardInterrupt:
            log.info("stopping")


if __name__ == "__main__":
    main()
