"""Which outcome detectors can count which audit events, worked out once per monitor."""

from __future__ import annotations

from secmw.anomaly.base import Detector

Routes = tuple[tuple[Detector, ...], dict[str, tuple[Detector, ...]], tuple[Detector, ...]]


def route_outcomes(detectors: tuple[Detector, ...]) -> Routes:
    """Which outcome detectors can count which events, worked out once.

    A detector that declares ``failure_events`` (and ``count_app_401``) sees only
    failure events of those names (and admitted requests the app answered with
    401); one that declares nothing sees every event. Most requests succeed, so
    most run no outcome detector at all. Order is kept within each route.
    """
    always = tuple(d for d in detectors if getattr(d, "failure_events", None) is None)
    names = {name for d in detectors for name in getattr(d, "failure_events", None) or ()}
    on_failure = {
        name: tuple(
            d
            for d in detectors
            if name in (getattr(d, "failure_events", None) or ()) or d in always
        )
        for name in names
    }
    on_401 = tuple(d for d in detectors if getattr(d, "count_app_401", False) or d in always)
    return always, on_failure, on_401
