"""CRM targets (issue 11): each turns an outbox row into the calls of one external system.

- ``base``: the ``Target`` protocol the delivery worker speaks, and the three answers a delivery
  may give (delivered, try again later, refused for good);
- ``secrets``: scrubbing a target's secrets out of every text that may be logged or shown;
- ``recording_links``: the signed, expiring ``/r/<token>`` links a CRM fetches a recording from;
- ``webhook``: a signed JSON POST per event (``webhook.schema.json`` is its contract);
- ``bitrix24``: telephony.externalcall.register / finish / attachRecord through an incoming webhook,
  and orders as deals (crm.deal.add / update, crm.deal.productrows.set);
- ``amocrm``: amoCRM / Kommo with a long-lived token: the call log (POST /api/v4/calls) and orders
  as leads with notes.

A new target is one more module that implements ``Target``, one more ``TargetKind`` and one more
branch in ``ivr.app.build_targets``.
"""
