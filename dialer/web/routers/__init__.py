"""One `APIRouter` per domain: campaigns, DNC, provider webhooks, health."""
