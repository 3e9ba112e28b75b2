"""Typed SQLAlchemy models. No Flask here: the models are usable from any Session."""
from .auth import ApiKey, Role, User
from .base import Base, UTCDateTime, utcnow
from .directory import Owner, Recipient, Segment, Team
from .events import Attribution, ClickEvent, Conversion, ConversionKind, OpenEvent, Send, SendLink, Verdict
from .experiments import Experiment, ExperimentStatus, PrimaryMetric, Variant
from .kpi import KpiDefinition, KpiRefreshState, KpiTarget, KpiValue

__all__ = [
    "ApiKey", "Attribution", "Base", "ClickEvent", "Conversion", "ConversionKind", "Experiment",
    "ExperimentStatus", "OpenEvent", "Owner", "PrimaryMetric", "Recipient", "Role", "Segment", "Send",
    "SendLink", "Team", "User", "UTCDateTime", "Variant", "Verdict", "utcnow",
    "KpiDefinition", "KpiRefreshState", "KpiTarget", "KpiValue",
]
