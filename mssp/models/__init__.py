"""Tortoise models: persistence only. Split by noun; every module is listed in MODEL_MODULES."""

MODEL_MODULES = [
    "mssp.models.inventory",
    "mssp.models.runs",
    "mssp.models.audit",
    "mssp.models.notify",
    "mssp.models.backups",
    "mssp.models.sessions",
    "mssp.models.relay",
]
