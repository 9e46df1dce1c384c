"""Webhooks to the customer: events written to an outbox (`outbox`) in the transaction
that caused them, signed (`signing`) and delivered with retries (`delivery`)."""
