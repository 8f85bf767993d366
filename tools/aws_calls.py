"""What an AWS API request asks for, in IAM terms: the caller's key, the operation, and each authorisation.

AWS authorises a request as one or more (action, resource, condition keys)
triples, and the action is not always the operation: HeadObject is
``s3:GetObject``, CopyObject also needs ``s3:GetObject`` on its source,
DeleteObjects is ``s3:DeleteObject`` per key, TransactWriteItems is
PutItem/UpdateItem/ConditionCheckItem/DeleteItem per item, SQS batch calls are
their single-message actions. ``parse_call`` turns a WSGI request into those
triples for the services the pipeline uses (S3, DynamoDB, SQS, Glue, SNS,
CloudWatch); any other operation becomes ``<service>:<Operation>`` on ``*``.
"""

from __future__ import annotations

import gzip
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
# signing name -> IAM service prefix (they differ for CloudWatch only, among the services used here)
IAM_PREFIX = {"monitoring": "cloudwatch"}
S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"

# S3 bucket sub-resources: (method, query key) -> (operation, IAM action)
_BUCKET_SUBRESOURCES = {
    ("GET", "location"): ("GetBucketLocation", "GetBucketLocation"),
    ("GET", "versioning"): ("GetBucketVersioning", "GetBucketVersioning"),
    ("GET", "notification"): ("GetBucketNotificationConfiguration", "GetBucketNotification"),
    ("GET", "policy"): ("GetBucketPolicy", "GetBucketPolicy"),
    ("GET", "encryption"): ("GetBucketEncryption", "GetEncryptionConfiguration"),
    ("GET", "publicAccessBlock"): ("GetPublicAccessBlock", "GetBucketPublicAccessBlock"),
    ("GET", "acl"): ("GetBucketAcl", "GetBucketAcl"),
    ("GET", "tagging"): ("GetBucketTagging", "GetBucketTagging"),
    ("GET", "lifecycle"): ("GetBucketLifecycleConfiguration", "GetLifecycleConfiguration"),
    ("GET", "ownershipControls"): ("GetBucketOwnershipControls", "GetBucketOwnershipControls"),
    ("GET", "uploads"): ("ListMultipartUploads", "ListBucketMultipartUploads"),
    ("GET", "versions"): ("ListObjectVersions", "ListBucketVersions"),
    ("PUT", "notification"): ("PutBucketNotificationConfiguration", "PutBucketNotification"),
    ("PUT", "versioning"): ("PutBucketVersioning", "PutBucketVersioning"),
    ("PUT", "encryption"): ("PutBucketEncryption", "PutEncryptionConfiguration"),
    ("PUT", "policy"): ("PutBucketPolicy", "PutBucketPolicy"),
    ("PUT", "publicAccessBlock"): ("PutPublicAccessBlock", "PutBucketPublicAccessBlock"),
    ("PUT", "tagging"): ("PutBucketTagging", "PutBucketTagging"),
    ("PUT", "lifecycle"): ("PutBucketLifecycleConfiguration", "PutLifecycleConfiguration"),
    ("DELETE", "policy"): ("DeleteBucketPolicy", "DeleteBucketPolicy"),
    ("DELETE", "tagging"): ("DeleteBucketTagging", "PutBucketTagging"),
    ("DELETE", "lifecycle"): ("DeleteBucketLifecycle", "PutLifecycleConfiguration"),
}
# Parameters of plain bucket requests (ListObjects/ListObjectsV2), not sub-resources.
_LISTING_PARAMETERS = {
    "list-type",
    "prefix",
    "delimiter",
    "max-keys",
    "marker",
    "continuation-token",
    "start-after",
    "encoding-type",
    "fetch-owner",
    "x-id",
}
_OBJECT_SUBRESOURCES = {
    ("GET", "tagging"): ("GetObjectTagging", "GetObjectTagging"),
    ("GET", "acl"): ("GetObjectAcl", "GetObjectAcl"),
    ("GET", "uploadId"): ("ListParts", "ListMultipartUploadParts"),
    ("GET", "attributes"): ("GetObjectAttributes", "GetObjectAttributes"),
    ("PUT", "tagging"): ("PutObjectTagging", "PutObjectTagging"),
    ("PUT", "acl"): ("PutObjectAcl", "PutObjectAcl"),
    ("POST", "uploads"): ("CreateMultipartUpload", "PutObject"),
    ("POST", "uploadId"): ("CompleteMultipartUpload", "PutObject"),
    ("POST", "restore"): ("RestoreObject", "RestoreObject"),
    ("POST", "select"): ("SelectObjectContent", "GetObject"),
    ("DELETE", "uploadId"): ("AbortMultipartUpload", "AbortMultipartUpload"),
    ("DELETE", "tagging"): ("DeleteObjectTagging", "DeleteObjectTagging"),
}
_SQS_BATCH = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}
_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


@dataclass(frozen=True)
class Authorization:
    """One IAM check: ``action`` on ``resource`` with the request's condition keys."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()


@dataclass
class Call:
    """An AWS API request as IAM sees it."""

    service: str  # the signing name: s3, dynamodb, sqs, glue, sns, monitoring, ...
    operation: str
    access_key: str | None
    region: str
    protocol: str  # rest-xml | json | query
    authorizations: list[Authorization] = field(default_factory=list)
    bucket: str | None = None
    key: str | None = None
    # DeleteObjects: (key, version id) per object, in request order
    delete_objects: list[tuple[str, str | None]] = field(default_factory=list)
    quiet: bool = False
    transact_items: int = 0

    @property
    def resources(self) -> list[str]:
        return [a.resource for a in self.authorizations]


def needs_body(environ: dict) -> bool:
    """Whether ``parse_call`` needs the request body: every service but S3, and S3's DeleteObjects."""
    service = credential_scope(environ)[2]
    if service != "s3":
        return True
    return environ.get("REQUEST_METHOD") == "POST" and "delete" in _query(environ)


def credential_scope(environ: dict) -> tuple[str | None, str, str | None]:
    """(access key id, region, signing name) from the SigV4 Authorization header."""
    match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    if not match:
        return None, "us-east-1", None
    return match.group(1), match.group(2), match.group(3)


def parse_call(environ: dict, body: bytes, account: str) -> Call | None:
    """The request as IAM authorises it; None for a request without SigV4 credentials."""
    access_key, region, service = credential_scope(environ)
    if service is None:
        return None
    if service == "s3":
        return _s3_call(environ, body, access_key, region)
    if environ.get("HTTP_CONTENT_ENCODING") == "gzip":  # CloudWatch compresses large PutMetricData bodies
        body = gzip.decompress(body)
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        operation, params, protocol = target.rsplit(".", 1)[-1], _json(body), "json"
    else:
        form = parse_qs(body.decode("utf-8", "replace")) if body else _query(environ)
        params = {k: v[0] for k, v in form.items()}
        operation, protocol = params.get("Action", ""), "query"
    call = Call(service=service, operation=operation, access_key=access_key, region=region, protocol=protocol)
    builder = _BUILDERS.get(service, _generic)
    call.authorizations = builder(call, params, environ, account)
    return call


def _json(body: bytes) -> dict:
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _query(environ: dict) -> dict[str, list[str]]:
    return parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)


def _action(call: Call, name: str) -> str:
    return f"{IAM_PREFIX.get(call.service, call.service)}:{name}"


def _generic(call: Call, params: dict, environ: dict, account: str) -> list[Authorization]:
    return [Authorization(_action(call, call.operation), "*")]


# --------------------------------------------------------------------------- S3


def _s3_call(environ: dict, body: bytes, access_key: str | None, region: str) -> Call:
    method = environ["REQUEST_METHOD"]
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
    path = unquote(raw.split("?", 1)[0])
    bucket, _, key = path.lstrip("/").partition("/")
    query = _query(environ)
    call = Call(service="s3", operation="", access_key=access_key, region=region, protocol="rest-xml")
    call.bucket, call.key = bucket or None, key or None
    if not bucket:
        call.operation = "ListBuckets"
        call.authorizations = [Authorization("s3:ListAllMyBuckets", "*")]
    elif not key:
        _s3_bucket_call(call, method, query, body)
    else:
        _s3_object_call(call, method, query, environ)
    return call


def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def object_arn(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _subresource(table: dict, method: str, query: dict) -> tuple[str, str] | None:
    for name in query:
        if (method, name) in table:
            return table[(method, name)]
    return None


def _listing_context(query: dict) -> tuple[tuple[str, str], ...]:
    keys = {"prefix": "s3:prefix", "delimiter": "s3:delimiter", "max-keys": "s3:max-keys"}
    return tuple((condition, query[name][0]) for name, condition in keys.items() if name in query)


def _s3_bucket_call(call: Call, method: str, query: dict, body: bytes) -> None:
    arn = bucket_arn(call.bucket)
    if method == "POST" and "delete" in query:
        call.operation = "DeleteObjects"
        # The body comes from a client of this loopback-only emulator, not from the internet.
        root = ET.fromstring(body) if body else ET.Element("Delete")  # noqa: S314
        ns = {"s3": S3_XMLNS} if root.tag.startswith("{") else {}

        def find(node, name):
            return node.find(f"s3:{name}" if ns else name, ns)

        for obj in root.findall("s3:Object" if ns else "Object", ns):
            version = find(obj, "VersionId")
            call.delete_objects.append((find(obj, "Key").text or "", version.text if version is not None else None))
        quiet = find(root, "Quiet")
        call.quiet = quiet is not None and (quiet.text or "").strip().lower() == "true"
        call.authorizations = [
            Authorization("s3:DeleteObjectVersion" if version else "s3:DeleteObject", object_arn(call.bucket, key))
            for key, version in call.delete_objects
        ]
        return
    known = _subresource(_BUCKET_SUBRESOURCES, method, query)
    if known:
        call.operation, action = known
        context = _listing_context(query) if action == "ListBucketVersions" else ()
        call.authorizations = [Authorization(f"s3:{action}", arn, context)]
        return
    plain = {
        "GET": ("ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects", "ListBucket"),
        "HEAD": ("HeadBucket", "ListBucket"),
        "PUT": ("CreateBucket", "CreateBucket"),
        "DELETE": ("DeleteBucket", "DeleteBucket"),
    }
    subresources = sorted(set(query) - _LISTING_PARAMETERS)
    if method not in plain or subresources:
        call.operation = f"{method} bucket ?{'&'.join(subresources)}"
        call.authorizations = [Authorization(f"s3:Unrecognised({call.operation})", arn)]
        return
    call.operation, action = plain[method]
    context = _listing_context(query) if action == "ListBucket" and method == "GET" else ()
    call.authorizations = [Authorization(f"s3:{action}", arn, context)]


def _s3_object_call(call: Call, method: str, query: dict, environ: dict) -> None:
    arn = object_arn(call.bucket, call.key)
    versioned = "versionId" in query
    known = _subresource(_OBJECT_SUBRESOURCES, method, query)
    if method == "PUT" and "partNumber" in query and "uploadId" in query:
        known = ("UploadPartCopy" if "HTTP_X_AMZ_COPY_SOURCE" in environ else "UploadPart", "PutObject")
    if known:
        call.operation, action = known
    elif method in ("GET", "HEAD"):
        call.operation = "GetObject" if method == "GET" else "HeadObject"
        action = "GetObjectVersion" if versioned else "GetObject"
    elif method == "PUT":
        call.operation = "CopyObject" if "HTTP_X_AMZ_COPY_SOURCE" in environ else "PutObject"
        action = "PutObject"
    elif method == "DELETE":
        call.operation, action = "DeleteObject", "DeleteObjectVersion" if versioned else "DeleteObject"
    else:
        call.operation = f"{method} object ?{'&'.join(sorted(query))}"
        action = f"Unrecognised({call.operation})"
    call.authorizations = [Authorization(f"s3:{action}", arn)]
    source = environ.get("HTTP_X_AMZ_COPY_SOURCE")
    if source and method == "PUT":
        # The source is URL-encoded: its query (a version) starts at the first literal "?", a key's own "?" is %3F.
        source_path, _, source_query = source.partition("?")
        source_bucket, _, source_key = unquote(source_path).lstrip("/").partition("/")
        read = "GetObjectVersion" if "versionId=" in source_query else "GetObject"
        call.authorizations.append(Authorization(f"s3:{read}", object_arn(source_bucket, source_key)))


# --------------------------------------------------------------------------- JSON and query services


def _dynamodb(call: Call, params: dict, environ: dict, account: str) -> list[Authorization]:
    def table(name: str, index: str | None = None) -> str:
        arn = f"arn:aws:dynamodb:{call.region}:{account}:table/{name}"
        return f"{arn}/index/{index}" if index else arn

    operation = call.operation
    if operation in ("TransactWriteItems", "TransactGetItems"):
        authorizations = []
        for item in params.get("TransactItems", []):
            (kind, request), *_ = item.items()
            authorizations.append(Authorization(f"dynamodb:{_TRANSACT_ACTIONS[kind]}", table(request["TableName"])))
        call.transact_items = len(authorizations)
        return authorizations
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [Authorization(f"dynamodb:{operation}", table(name)) for name in params.get("RequestItems", {})]
    if "TableName" in params:
        return [Authorization(f"dynamodb:{operation}", table(params["TableName"], params.get("IndexName")))]
    return _generic(call, params, environ, account)


def _sqs(call: Call, params: dict, environ: dict, account: str) -> list[Authorization]:
    url = params.get("QueueUrl") or environ.get("PATH_INFO", "")
    parts = [p for p in url.split("/") if p]
    if "QueueName" in params:
        queue, owner = params["QueueName"], params.get("QueueOwnerAWSAccountId", account)
    elif len(parts) >= 2 and parts[-2].isdigit():
        queue, owner = parts[-1], parts[-2]
    else:
        return _generic(call, params, environ, account)
    action = _SQS_BATCH.get(call.operation, call.operation)
    return [Authorization(f"sqs:{action}", f"arn:aws:sqs:{call.region}:{owner}:{queue}")]


def _glue(call: Call, params: dict, environ: dict, account: str) -> list[Authorization]:
    base = f"arn:aws:glue:{call.region}:{account}"
    job = params.get("JobName") or (params.get("Name") if call.operation == "CreateJob" else None)
    if job:
        return [Authorization(f"glue:{call.operation}", f"{base}:job/{job}")]
    database = params.get("DatabaseName")
    if database:
        # Data Catalog calls are authorised on the catalog, the database and (when named) the table.
        resources = [f"{base}:catalog", f"{base}:database/{database}"]
        table = _glue_table(call.operation, params)
        if table:
            resources.append(f"{base}:table/{database}/{table}")
        return [Authorization(f"glue:{call.operation}", resource) for resource in resources]
    return _generic(call, params, environ, account)


def _glue_table(operation: str, params: dict) -> str | None:
    """The table a Data Catalog call names: ``TableName``, ``Name`` of GetTable, ``TableInput.Name`` of a write."""
    if params.get("TableName"):
        return str(params["TableName"])
    if operation in ("GetTable", "DeleteTable") and params.get("Name"):
        return str(params["Name"])
    table_input = params.get("TableInput")
    if operation in ("CreateTable", "UpdateTable") and isinstance(table_input, dict) and table_input.get("Name"):
        return str(table_input["Name"])
    return None


def _sns(call: Call, params: dict, environ: dict, account: str) -> list[Authorization]:
    topic = params.get("TopicArn") or params.get("TargetArn")
    if call.operation == "CreateTopic" and "Name" in params:
        topic = f"arn:aws:sns:{call.region}:{account}:{params['Name']}"
    return [Authorization(f"sns:{call.operation}", topic or "*")]


def _cloudwatch(call: Call, params: dict, environ: dict, account: str) -> list[Authorization]:
    context = (("cloudwatch:namespace", params["Namespace"]),) if "Namespace" in params else ()
    return [Authorization(_action(call, call.operation), "*", context)]


_BUILDERS = {"dynamodb": _dynamodb, "sqs": _sqs, "glue": _glue, "sns": _sns, "monitoring": _cloudwatch}
