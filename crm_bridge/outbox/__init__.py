"""The CRM outbox (issue 11): call events promised to external targets, delivered in the background.

- ``routing``: which targets want which event kinds; turns a batch's timeline records into outbox
  rows (``CallLog`` writes them in the batch's own transaction: the event and its promise commit
  together, or neither does).
- ``store``: the table's unit-of-work operations (claim what is due in per-call order, mark
  delivered / failed / dead, dead letters and their retry).
- ``backoff``: exponential backoff with jitter, and the per-target token bucket.
- ``worker``: the delivery loop, one task per target.

The targets themselves live in ``crm_bridge.connectors``.
"""
