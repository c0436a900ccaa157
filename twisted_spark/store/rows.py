# -*- test-case-name: tests.test_store_contract -*-
"""Columns and row conversion shared by the SQL stores (SQLite and PostgreSQL).

Both engines hold the same tables (:mod:`twisted_spark.store.schema`) and
return rows as tuples, so one conversion serves both: functions and
variables are JSON text, the public key bytes, ``is_admin`` 0 or 1.
"""

from __future__ import annotations

import json

from twisted_spark.models import AccessToken, DeviceRecord, DtlsSessionRecord, User, Webhook

DEVICE_COLUMNS = (
    "device_id",
    "owner",
    "name",
    "public_key",
    "product_id",
    "platform_id",
    "firmware_version",
    "last_heard",
    "last_ip",
    "last_app",
    "functions",
    "variables",
    "created_at",
)
SELECT_DEVICE = f"SELECT {', '.join(DEVICE_COLUMNS)} FROM devices"
USER_COLUMNS = "username, password_hash, is_admin, created_at"
TOKEN_COLUMNS = "token, username, client_id, created_at, expires_at"
DTLS_COLUMNS = "cid, state, expires_at, device_id, updated_at"
WEBHOOK_COLUMNS = (
    "hook_id, owner, event, url, request_type, created_at, device_id, no_defaults,"
    " reject_unauthorized, definition"
)
INSERT_WEBHOOK = f"INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES ({', '.join('?' * 10)})"


def user_row(row) -> User:
    username, password_hash, is_admin, created_at = row
    return User(username, password_hash, bool(is_admin), created_at)


def token_row(row) -> AccessToken:
    return AccessToken(*row)


def device_row(row) -> DeviceRecord:
    values = dict(zip(DEVICE_COLUMNS, row, strict=True))
    if values["public_key"] is not None:
        values["public_key"] = bytes(values["public_key"])
    values["functions"] = tuple(json.loads(values["functions"]))
    values["variables"] = json.loads(values["variables"])
    return DeviceRecord(**values)


def dtls_session_row(row) -> DtlsSessionRecord:
    cid, state, expires_at, device_id, updated_at = row
    return DtlsSessionRecord(bytes.fromhex(cid), state, expires_at, device_id, updated_at)


def device_params(record: DeviceRecord) -> tuple:
    return (
        record.device_id,
        record.owner,
        record.name,
        record.public_key,
        record.product_id,
        record.platform_id,
        record.firmware_version,
        record.last_heard,
        record.last_ip,
        record.last_app,
        json.dumps(list(record.functions)),
        json.dumps(dict(record.variables)),
        record.created_at,
    )


def webhook_row(row) -> Webhook:
    values = list(row)
    values[7], values[8] = bool(values[7]), bool(values[8])
    values[9] = json.loads(values[9])
    return Webhook(*values)


def webhook_params(hook: Webhook) -> tuple:
    return (hook.hook_id, hook.owner, hook.event, hook.url, hook.request_type,
            hook.created_at, hook.device_id, int(hook.no_defaults),
            int(hook.reject_unauthorized), json.dumps(hook.definition))
