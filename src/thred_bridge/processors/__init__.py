"""Payment processors: one subpackage per processor (webhook, translate, api), each turning that
processor's webhooks and API objects into the bridge's movements."""
