"""The ASGI app for uvicorn: `uvicorn dialer.web.asgi:app` (or `dialer api`).

Logging is configured here, once per uvicorn worker process (`dialer.logs`).
"""

from dialer.logs import configure_logging
from dialer.web.app import create_app

configure_logging()
app = create_app()
