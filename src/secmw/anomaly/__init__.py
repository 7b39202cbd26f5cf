"""Anomaly detection: detectors fed by the pipeline's decisions, responses and alerts."""

from secmw.anomaly.alerts import (
    AlertDeduplicator,
    CallbackAlertSink,
    MemoryAlertSink,
    StructlogAlertSink,
)
from secmw.anomaly.base import Alert, AlertSink, Anomaly, Detector
from secmw.anomaly.baseline import RateSpike
from secmw.anomaly.build import build_monitor, pipeline_hooks
from secmw.anomaly.detectors import AuthFailureBurst, RepeatedDenials, TokenReuse
from secmw.anomaly.monitor import AnomalyAuditSink, AnomalyMonitor
from secmw.anomaly.profile import NewTarget, OffHours
from secmw.anomaly.shared import AnomalyStorageUnavailable, SharedState
from secmw.anomaly.state import EventWindow, KeyedState

__all__ = [
    "Alert",
    "AlertDeduplicator",
    "AlertSink",
    "Anomaly",
    "AnomalyAuditSink",
    "AnomalyMonitor",
    "AnomalyStorageUnavailable",
    "AuthFailureBurst",
    "CallbackAlertSink",
    "Detector",
    "EventWindow",
    "KeyedState",
    "MemoryAlertSink",
    "NewTarget",
    "OffHours",
    "RateSpike",
    "RepeatedDenials",
    "SharedState",
    "StructlogAlertSink",
    "TokenReuse",
    "build_monitor",
    "pipeline_hooks",
]
