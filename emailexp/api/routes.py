"""Route modules of the API; each one adds its views to `bp`."""
from emailexp.api import analysis  # noqa: F401
from emailexp.api import ingest  # noqa: F401
from emailexp.api import experiments, openapi  # noqa: F401
from emailexp.api import kpis  # noqa: F401
