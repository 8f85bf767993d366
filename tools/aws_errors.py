"""Error responses in each service's wire format, the way botocore parses (and retries) them.

S3 answers REST-XML ``<Error><Code>``; DynamoDB, SQS, Glue and CloudWatch answer
JSON with ``__type`` (SQS and CloudWatch also send ``x-amzn-query-error``, which
botocore turns back into their historical query error code); SNS answers
query-protocol XML. botocore retries by status and code (``_retry.json`` and
botocore.retries.standard): 5xx, ``SlowDown`` (503), ``ProvisionedThroughputExceededException``,
``ThrottlingException``/``Throttling`` (400) and, for SQS, ``RequestThrottled`` (403).
"""

from __future__ import annotations

import json
import uuid
from xml.sax.saxutils import escape

# kind -> service -> (HTTP status, error code); "*" is the default for services not listed.
ERRORS: dict[str, dict[str, tuple[int, str]]] = {
    "access_denied": {
        "s3": (403, "AccessDenied"),
        "sqs": (403, "AccessDenied"),
        "sns": (403, "AuthorizationError"),
        "monitoring": (403, "AccessDenied"),
        "*": (400, "AccessDeniedException"),
    },
    "invalid_key": {
        "s3": (403, "InvalidAccessKeyId"),
        "sqs": (403, "InvalidClientTokenId"),
        "sns": (403, "InvalidClientTokenId"),
        "monitoring": (403, "InvalidClientTokenId"),
        "*": (400, "UnrecognizedClientException"),
    },
    "throttle": {
        "s3": (503, "SlowDown"),
        "dynamodb": (400, "ProvisionedThroughputExceededException"),
        "sqs": (403, "RequestThrottled"),
        "sns": (400, "Throttling"),
        "monitoring": (400, "Throttling"),
        "*": (400, "ThrottlingException"),
    },
    "internal_error": {
        "s3": (500, "InternalError"),
        "dynamodb": (500, "InternalServerError"),
        "glue": (500, "InternalServiceException"),
        "monitoring": (500, "InternalServiceError"),
        "*": (500, "InternalFailure"),
    },
    "unavailable": {"*": (503, "ServiceUnavailable")},
}
_MESSAGES = {
    "throttle": "Rate exceeded",
    "internal_error": "We encountered an internal error. Please try again.",
    "unavailable": "Service is unavailable. Please try again.",
}
# JSON protocol: the __type namespace botocore strips at '#'.
_JSON_TYPE_PREFIX = {"dynamodb": "com.amazonaws.dynamodb.v20120810#", "sqs": "com.amazonaws.sqs#"}
_JSON_VERSION = {"glue": "1.1", "logs": "1.1", "kms": "1.1"}
_QUERY_COMPATIBLE = {"sqs", "monitoring"}  # awsQueryCompatible services: botocore reads x-amzn-query-error


def error(kind: str, service: str) -> tuple[int, str]:
    table = ERRORS[kind]
    return table.get(service, table["*"])


def default_message(kind: str) -> str:
    return _MESSAGES.get(kind, "")


def render(
    service: str, protocol: str, status: int, code: str, message: str, *, head: bool = False, fields: dict | None = None
) -> tuple[str, list[tuple[str, str]], bytes]:
    """(status line, headers, body) of an error answer in the protocol of ``service``.

    :param head: a HEAD request (S3): the answer has no body, as S3's.
    :param fields: extra members of a JSON error body (DynamoDB's CancellationReasons).
    """
    request_id = uuid.uuid4().hex.upper()[:16]
    headers = [("x-amzn-RequestId", request_id), ("x-amz-request-id", request_id)]
    if protocol == "rest-xml":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
        ).encode()
        headers.append(("Content-Type", "application/xml"))
    elif protocol == "json":
        document = {"__type": _JSON_TYPE_PREFIX.get(service, "") + code, "message": message, **(fields or {})}
        body = json.dumps(document).encode()
        headers.append(("Content-Type", f"application/x-amz-json-{_JSON_VERSION.get(service, '1.0')}"))
        if service in _QUERY_COMPATIBLE:
            headers.append(("x-amzn-query-error", f"{code};{'Receiver' if status >= 500 else 'Sender'}"))
    else:
        fault = "Receiver" if status >= 500 else "Sender"
        body = (
            f"<ErrorResponse><Error><Type>{fault}</Type><Code>{escape(code)}</Code>"
            f"<Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers.append(("Content-Type", "text/xml"))
    if head:
        body = b""
    headers.append(("Content-Length", str(len(body))))
    return f"{status} {_REASONS.get(status, 'Error')}", headers, body


_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
