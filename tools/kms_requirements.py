"""The KMS permissions a call needs because what it touches is encrypted with a customer-managed key.

S3 (SSE-KMS) and SQS call KMS on the caller's behalf, and AWS authorises the
caller for it: ``kms:GenerateDataKey`` where data is written, ``kms:Decrypt``
where it is read, on the resource's key, with ``kms:ViaService`` =
``<service>.<region>.amazonaws.com`` and ``kms:CallerAccount`` in the context (the
keys the roles' ``*ViaService*`` conditions test). moto stores the keys of
buckets, objects and queues but never calls KMS, so these checks are added here
from moto's state (read in-process).
"""

from __future__ import annotations

from tools.aws_calls import Authorization, Call

_S3_WRITES = {"PutObject", "CopyObject", "CreateMultipartUpload"}
_S3_PART_WRITES = {"UploadPart", "UploadPartCopy", "CompleteMultipartUpload"}
_SQS_WRITES = {"SendMessage", "SendMessageBatch"}


def kms_authorizations(call: Call, environ: dict, account: str) -> list[Authorization]:
    if call.service == "s3" and call.bucket:
        return _s3(call, environ, account)
    if call.service == "sqs" and call.operation in (*_SQS_WRITES, "ReceiveMessage") and call.authorizations:
        queue = _queue_key(call, account)
        if queue:
            action = "kms:GenerateDataKey" if call.operation in _SQS_WRITES else "kms:Decrypt"
            return [_kms(action, queue, call, account)]
    return []


def _key_arn(key_id: str, region: str, account: str) -> str:
    if key_id.startswith("arn:"):
        return key_id
    return f"arn:aws:kms:{region}:{account}:{key_id if key_id.startswith('alias/') else f'key/{key_id}'}"


def _kms(action: str, key_id: str, call: Call, account: str) -> Authorization:
    context = (("kms:ViaService", f"{call.service}.{call.region}.amazonaws.com"), ("kms:CallerAccount", account))
    return Authorization(action, _key_arn(key_id, call.region, account), context)


def _s3(call: Call, environ: dict, account: str) -> list[Authorization]:
    from moto.s3.models import s3_backends

    backend = s3_backends[account]["aws"]
    needed = []
    if call.operation in _S3_WRITES | _S3_PART_WRITES:
        key_id = environ.get("HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION_AWS_KMS_KEY_ID") or _bucket_key(backend, call.bucket)
        if key_id:
            needed.append(
                _kms("kms:GenerateDataKey" if call.operation in _S3_WRITES else "kms:Decrypt", key_id, call, account)
            )
    reads = [(call.bucket, call.key)] if call.operation == "GetObject" else []
    reads += [_source(a.resource) for a in call.authorizations[1:] if a.action.startswith("s3:GetObject")]
    for bucket, key in reads:
        key_id = _object_key(backend, bucket, key)
        if key_id:
            needed.append(_kms("kms:Decrypt", key_id, call, account))
    return needed


def _source(resource: str) -> tuple[str, str]:
    bucket, _, key = resource.removeprefix("arn:aws:s3:::").partition("/")
    return bucket, key


def _bucket_key(backend, bucket: str) -> str | None:
    found = backend.buckets.get(bucket)
    rule = ((found.encryption if found else None) or {}).get("Rule", {})
    default = rule.get("ApplyServerSideEncryptionByDefault", {}) if isinstance(rule, dict) else {}
    return default.get("KMSMasterKeyID") if default.get("SSEAlgorithm") == "aws:kms" else None


def _object_key(backend, bucket: str, key: str) -> str | None:
    found = backend.buckets.get(bucket)
    stored = found.keys.get(key) if found else None
    if stored is None or getattr(stored, "encryption", None) != "aws:kms":
        return None
    return stored.kms_key_id


def _queue_key(call: Call, account: str) -> str | None:
    from moto.sqs.models import sqs_backends

    name = call.authorizations[0].resource.rsplit(":", 1)[-1]
    queue = sqs_backends[account][call.region].queues.get(name)
    return getattr(queue, "kms_master_key_id", None) or None
