"""The ASGI app for uvicorn: `uvicorn dialer.asgi:app`."""

from dialer.api import create_app

app = create_app()
