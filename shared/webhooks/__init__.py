"""Webhooks to partner portals, by the Standard Webhooks spec.

Subscriptions (endpoints) are managed at registration and published as
``WebhookEndpointChanged``; every service follows them, writes a message to its outbox for each
of its own published events in the same transaction as the tracking position, and delivers its
own messages: signed, retried on a schedule, each attempt logged.
"""
