"""An OCSF-shaped rendering of audit events, for SIEMs that ingest OCSF.

The shape follows OCSF 1.x conventions: ``class_uid``, ``activity_id``,
``category_uid = class_uid // 1000``, ``type_uid = class_uid * 100 + activity_id``,
``severity_id`` (1 informational, 3 medium, 4 high, 5 critical) and ``status_id``
(1 success, 2 failure, 0 unknown). Classes used: Authentication (3002) for
``authn_*``, Web Resource Access Activity (6004: 1 access grant, 2 access deny,
4 access error) for request decisions, Application Lifecycle (6002: 3 start,
4 stop, 6 enable, 7 disable) for ``sys_*`` lifecycle events, and API Activity
(6003, activity 99 other) for the rest. Fields without an OCSF home go under
``unmapped``. It is a shape, not a validated OCSF document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from secmw.audit.format import EventDict

OCSF_VERSION = "1.1.0"

_SEVERITY_ID = {"info": 1, "warning": 3, "error": 4, "critical": 5}
_STATUS_ID = {"success": 1, "failure": 2}
_LIFECYCLE = {
    "sys_startup": 3,
    "sys_shutdown": 4,
    "sys_monitor_enabled": 6,
    "sys_monitor_disabled": 7,
}
_ACCESS_ERROR = {"sys_error", "sys_unavailable"}
_MAPPED = {
    "time",
    "event",
    "outcome",
    "severity",
    "request_id",
    "transport",
    "method",
    "path",
    "client",
    "subject",
    "tenant",
    "auth_method",
    "rpc_method",
    "tool",
    "reason",
    "status",
    "latency_ms",
}


def ocsf_class(name: str, outcome: str, status: int | None) -> tuple[int, int]:
    """The ``(class_uid, activity_id)`` an event name maps to."""
    if name.startswith("authn_"):
        return 3002, 1  # Authentication: logon
    if name in _LIFECYCLE and not (name == "sys_monitor_disabled" and status is not None):
        return 6002, _LIFECYCLE[name]
    if name in _ACCESS_ERROR or (isinstance(status, int) and 500 <= status < 600):
        return 6004, 4
    if name == "authz_allow":
        return 6004, 1
    if outcome == "failure" and status is not None:
        return 6004, 2
    return 6003, 99


def ocsf_shape(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: reshape a secmw event dict into an OCSF-shaped one."""
    name = str(event_dict.get("event", ""))
    outcome = str(event_dict.get("outcome", "unknown"))
    status = event_dict.get("status")
    class_uid, activity_id = ocsf_class(name, outcome, status)
    shaped: dict[str, Any] = {
        "class_uid": class_uid,
        "category_uid": class_uid // 1000,
        "activity_id": activity_id,
        "type_uid": class_uid * 100 + activity_id,
        "severity_id": _SEVERITY_ID.get(str(event_dict.get("severity")), 0),
        "status_id": _STATUS_ID.get(outcome, 0),
        "time": _epoch_ms(event_dict.get("time")),
        "message": name,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "secmw", "vendor_name": "secmw"},
            "log_name": "audit",
            "event_code": name,
        },
    }
    if "request_id" in event_dict:
        shaped["metadata"]["correlation_uid"] = event_dict["request_id"]
    if "reason" in event_dict:
        shaped["status_detail"] = event_dict["reason"]
    user = {
        key: event_dict[source]
        for key, source in (("uid", "subject"), ("org_uid", "tenant"))
        if source in event_dict
    }
    if user:
        shaped["actor"] = {"user": user}
    if "auth_method" in event_dict:
        shaped["auth_protocol"] = event_dict["auth_method"]
    if "client" in event_dict:
        shaped["src_endpoint"] = {"ip": event_dict["client"]}
    request = {
        key: event_dict[source]
        for key, source in (("http_method", "method"), ("uid", "request_id"))
        if source in event_dict
    }
    if "path" in event_dict:
        request["url"] = {"path": event_dict["path"]}
    if request:
        shaped["http_request"] = request
    close_code = None
    if isinstance(status, int) and status >= 1000:
        close_code = status  # a websocket close code (1008, 1009, ...), not an HTTP status
    elif status is not None:
        shaped["http_response"] = {"code": status}
    if "rpc_method" in event_dict or "tool" in event_dict:
        shaped["api"] = {
            key: event_dict[source]
            for key, source in (("operation", "rpc_method"), ("service", "tool"))
            if source in event_dict
        }
    if "latency_ms" in event_dict:
        shaped["duration"] = round(float(event_dict["latency_ms"]))
    unmapped = {key: value for key, value in event_dict.items() if key not in _MAPPED}
    if "transport" in event_dict:
        unmapped["transport"] = event_dict["transport"]
    if close_code is not None:
        unmapped["close_code"] = close_code
    if unmapped:
        shaped["unmapped"] = unmapped
    return shaped


def _epoch_ms(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except ValueError:
        return None


__all__ = ["OCSF_VERSION", "ocsf_class", "ocsf_shape"]
