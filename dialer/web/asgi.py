"""The ASGI app for uvicorn: `uvicorn dialer.web.asgi:app`."""

from dialer.web.app import create_app

app = create_app()
